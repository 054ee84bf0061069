import {
  constants,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  privateDecrypt,
} from 'node:crypto';
import { badParameter } from './errors.js';

/**
 * The Key Vault BYOK key transfer blob: JSON carried base64url-encoded in `key.key_hsm` of an
 * import request.
 *   { schema_version, header: { kid: <KEK id>, alg: "dir", enc: "CKM_RSA_AES_KEY_WRAP" },
 *     ciphertext: base64url(RSA-OAEP-SHA1(ephemeral AES key) || RFC 5649 wrap of the target),
 *     generator }
 * The target is the raw bytes of an AES key, or a PKCS#8 DER private key (RSA, EC).
 */
export interface TransferBlob {
  kid: string;
  ciphertext: Buffer;
}

/** Transfer-blob encryption schemes the emulator unwraps. */
export const TRANSFER_ENC = ['CKM_RSA_AES_KEY_WRAP'];
const KWP_IV = Buffer.from('A65959A6', 'hex');

export function parseTransferBlob(raw: Buffer): TransferBlob {
  let blob: unknown;
  try {
    blob = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badParameter(
      'Property key.key_hsm is not a key transfer blob: it must be base64url of a JSON document.',
    );
  }
  const b = (blob ?? {}) as Record<string, unknown>;
  if (typeof b.schema_version !== 'string' || b.schema_version === '')
    throw badParameter("The key transfer blob has no 'schema_version'.");
  const h = b.header as Record<string, unknown> | undefined;
  if (!h || typeof h !== 'object') throw badParameter("The key transfer blob has no 'header'.");
  if (typeof h.kid !== 'string' || h.kid === '')
    throw badParameter("The key transfer blob header has no 'kid' (the key exchange key's identifier).");
  if (h.alg !== 'dir')
    throw badParameter(`The key transfer blob header 'alg' must be 'dir' (got '${String(h.alg)}').`);
  if (typeof h.enc !== 'string' || !TRANSFER_ENC.includes(h.enc)) {
    throw badParameter(
      `The key transfer blob header 'enc' '${String(h.enc)}' is not supported (supported by this emulator: ${TRANSFER_ENC.join(', ')}).`,
    );
  }
  if (typeof b.ciphertext !== 'string' || !/^[A-Za-z0-9_-]+={0,2}$/.test(b.ciphertext))
    throw badParameter("The key transfer blob 'ciphertext' must be base64url.");
  return { kid: h.kid, ciphertext: Buffer.from(b.ciphertext, 'base64url') };
}

/**
 * CKM_RSA_AES_KEY_WRAP unwrapping: RSA-OAEP (SHA-1, MGF1-SHA-1) recovers the ephemeral AES
 * key from the first modulus-length bytes; RFC 5649 unwrapping of the rest gives the target.
 */
export function unwrapTransferCiphertext(
  kek: KeyObject,
  modulusBytes: number,
  ciphertext: Buffer,
  kid: string,
): Buffer {
  const body = ciphertext.length - modulusBytes;
  if (body < 16 || body % 8 !== 0) {
    throw badParameter(
      `The key transfer blob ciphertext has an invalid length (${ciphertext.length} bytes) for key exchange key ${kid}.`,
    );
  }
  const fail = () =>
    badParameter(
      `The key transfer blob could not be unwrapped with key exchange key ${kid}: it was wrapped for another key, with another scheme, or altered.`,
    );
  let ephemeral: Buffer;
  try {
    ephemeral = privateDecrypt(
      { key: kek, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
      ciphertext.subarray(0, modulusBytes),
    );
  } catch {
    throw fail();
  }
  try {
    const cipher = { 16: 'id-aes128-wrap-pad', 24: 'id-aes192-wrap-pad', 32: 'id-aes256-wrap-pad' }[
      ephemeral.length
    ];
    if (!cipher) throw fail();
    const d = createDecipheriv(cipher, ephemeral, KWP_IV);
    return Buffer.concat([d.update(ciphertext.subarray(modulusBytes)), d.final()]);
  } catch {
    throw fail();
  } finally {
    ephemeral.fill(0);
  }
}

/** What an imported target becomes, by key type. */
export type ImportedMaterial =
  | { kty: 'oct-HSM'; keySize: number; secret: Buffer }
  | { kty: 'RSA-HSM'; keySize: number; privateKey: KeyObject; publicKey: KeyObject }
  | { kty: 'EC-HSM'; crv: string; privateKey: KeyObject; publicKey: KeyObject };

const CURVES: Record<string, string> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
  secp256k1: 'P-256K',
};

/** Checks the unwrapped target against the requested key type. Zeroes `plain` unless kept. */
export function targetKey(kty: string, plain: Buffer): ImportedMaterial {
  if (kty === 'oct-HSM') {
    if (![16, 24, 32].includes(plain.length)) {
      plain.fill(0);
      throw badParameter(
        `An oct-HSM key must be 128, 192 or 256 bits; the transfer blob holds ${plain.length * 8}.`,
      );
    }
    return { kty, keySize: plain.length * 8, secret: plain };
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: plain, format: 'der', type: 'pkcs8' });
  } catch {
    throw badParameter(`The transfer blob target is not a PKCS#8 private key, as a ${kty} import requires.`);
  } finally {
    plain.fill(0);
  }
  const publicKey = createPublicKey(privateKey);
  if (kty === 'RSA-HSM') {
    const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (privateKey.asymmetricKeyType !== 'rsa' || ![2048, 3072, 4096].includes(bits))
      throw badParameter(`An RSA-HSM import takes a 2048, 3072 or 4096-bit RSA private key.`);
    return { kty, keySize: bits, privateKey, publicKey };
  }
  if (kty === 'EC-HSM') {
    const crv = CURVES[privateKey.asymmetricKeyDetails?.namedCurve ?? ''];
    if (privateKey.asymmetricKeyType !== 'ec' || !crv)
      throw badParameter('An EC-HSM import takes a P-256, P-384, P-521 or P-256K private key.');
    return { kty, crv, privateKey, publicKey };
  }
  throw badParameter(`A key transfer blob cannot be imported as kty '${kty}'.`);
}
