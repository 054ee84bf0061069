import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  KeyObject,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';

/** RFC 5649 alternative initial value (the 32-bit prefix of the integrity check). */
const KWP_IV = Buffer.from('A65959A6', 'hex');

function cipherFor(kek: Buffer): 'id-aes128-wrap-pad' | 'id-aes192-wrap-pad' | 'id-aes256-wrap-pad' {
  if (kek.length === 16) return 'id-aes128-wrap-pad';
  if (kek.length === 24) return 'id-aes192-wrap-pad';
  if (kek.length === 32) return 'id-aes256-wrap-pad';
  throw new RangeError(`AES key wrap keys are 16, 24 or 32 bytes (got ${kek.length})`);
}

/** AES key wrap with padding (RFC 5649) of `data` under `kek`. */
export function kwpWrap(kek: Buffer, data: Buffer): Buffer {
  const c = createCipheriv(cipherFor(kek), kek, KWP_IV);
  return Buffer.concat([c.update(data), c.final()]);
}

/** Inverse of kwpWrap; throws when the integrity check fails. */
export function kwpUnwrap(kek: Buffer, wrapped: Buffer): Buffer {
  const d = createDecipheriv(cipherFor(kek), kek, KWP_IV);
  return Buffer.concat([d.update(wrapped), d.final()]);
}

export type OaepHash = 'sha1' | 'sha256';

function publicKeyOf(spkiDer: Uint8Array | KeyObject): KeyObject {
  if (spkiDer instanceof KeyObject) return spkiDer;
  return createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' });
}

/** RSAES-OAEP (MGF1 with the same hash, empty label) of `data` under an SPKI DER public key. */
export function rsaOaepWrap(spkiDer: Uint8Array | KeyObject, data: Buffer, hash: OaepHash = 'sha1'): Buffer {
  return publicEncrypt(
    { key: publicKeyOf(spkiDer), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
    data,
  );
}

/**
 * CKM_RSA_AES_KEY_WRAP as the clouds take it: a fresh AES-256 key encrypted with RSA-OAEP,
 * followed by `material` wrapped under that key with RFC 5649. The ephemeral key is zeroed.
 */
export function rsaAesKeyWrap(
  spkiDer: Uint8Array | KeyObject,
  material: Buffer,
  hash: OaepHash = 'sha1',
): Buffer {
  const ephemeral = randomBytes(32);
  try {
    return Buffer.concat([rsaOaepWrap(spkiDer, ephemeral, hash), kwpWrap(ephemeral, material)]);
  } finally {
    ephemeral.fill(0);
  }
}
