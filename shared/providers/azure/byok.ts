import { createHash, createPublicKey } from 'node:crypto';
import type { KeyVaultKey } from '@azure/keyvault-keys';
import { ProviderError } from '../../core/errors.js';

/** Key names are 1-127 letters, digits and dashes. */
const MAX_NAME = 127;
export const KEK_PREFIX = 'byok-kek-';

/**
 * The key exchange key (KEK) that receives imports into `target`: `byok-kek-<target>`, or
 * `byok-kek-<first 32 hex digits of SHA-256 of the target name>` when that would exceed
 * Key Vault's 127 characters. One KEK per target key keeps imports into different keys apart.
 */
export function kekNameFor(target: string): string {
  const plain = `${KEK_PREFIX}${target}`;
  if (plain.length <= MAX_NAME) return plain;
  return `${KEK_PREFIX}${createHash('sha256').update(target).digest('hex').slice(0, 32)}`;
}

/** Whether a key is a BYOK key exchange key: RSA-HSM whose only operation is import. */
export function isKeyExchangeKey(key: KeyVaultKey): boolean {
  const ops = key.keyOperations ?? key.key?.keyOps ?? [];
  return (key.keyType ?? key.key?.kty) === 'RSA-HSM' && ops.length === 1 && ops[0] === 'import';
}

/** The KEK's public key as SubjectPublicKeyInfo DER, from the n and e of its JSON web key. */
export function kekPublicKeyDer(providerId: string, kek: KeyVaultKey): Uint8Array {
  const n = kek.key?.n;
  const e = kek.key?.e;
  if (!n || !e) {
    throw new ProviderError(
      providerId,
      'MalformedResponse',
      `key exchange key ${kek.id}: no RSA public key in the response`,
    );
  }
  const jwk = {
    kty: 'RSA',
    n: Buffer.from(n).toString('base64url'),
    e: Buffer.from(e).toString('base64url'),
  };
  return new Uint8Array(createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' }));
}

/**
 * The key transfer blob Key Vault takes in key.key_hsm: a JSON document naming the KEK and
 * carrying the CKM_RSA_AES_KEY_WRAP ciphertext (rekey's `rsa-aes-kwp-sha1`), as UTF-8 bytes.
 */
export function transferBlob(kekId: string, ciphertext: Uint8Array): Buffer {
  return Buffer.from(
    JSON.stringify({
      schema_version: '1.0.0',
      header: { kid: kekId, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP' },
      ciphertext: Buffer.from(ciphertext).toString('base64url'),
      generator: 'rekey byok',
    }),
    'utf8',
  );
}

/** Splits a Key Vault key id (`https://host/keys/name/version`); null if it is not one. */
export function parseKeyId(id: string): { host: string; name: string; version: string } | null {
  let u: URL;
  try {
    u = new URL(id);
  } catch {
    return null;
  }
  const m = /^\/keys\/([0-9A-Za-z-]{1,127})\/([0-9A-Za-z]{1,64})$/.exec(u.pathname);
  if (u.protocol !== 'https:' || !m || u.search || u.hash) return null;
  return { host: u.host.toLowerCase(), name: m[1]!, version: m[2]! };
}
