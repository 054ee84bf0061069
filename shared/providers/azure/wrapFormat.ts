import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { IntegrityError, ValidationError } from '../../core/errors.js';
import type { WrapContext } from '../../core/ports/KeyProvider.js';

/**
 * Key Vault's wrapKey takes no additional authenticated data, so rekey binds the WrapContext
 * inside what it wraps:
 *
 *   payload = 0x01 | len(DEK) (1 byte) | salt (8 random bytes) | DEK
 *             | SHA-256(domain | canonical context) | zero padding
 *
 * padded to a multiple of 8 bytes (AES key wrap needs it). The whole payload is wrapped by
 * the vault (RSA-OAEP-256 or A256KW), so the digest is only visible after unwrap; unwrap
 * recomputes it from the caller's context and refuses a mismatch. Entries are sorted, so the
 * order of context keys does not matter; an empty context has a digest too, so a DEK wrapped
 * with a context does not unwrap without it. The salt makes AES key wrap (deterministic)
 * give a different ciphertext each time the same DEK is wrapped.
 */
export const FORMAT_VERSION = 0x01;
export const MAX_DEK_BYTES = 128;
const DIGEST_BYTES = 32;
const SALT_BYTES = 8;
const HEAD = 2 + SALT_BYTES;
const DOMAIN = 'rekey/azure-kv/wrap-context/v1\u0000';

export function contextDigest(ctx: WrapContext): Buffer {
  if (ctx === null || typeof ctx !== 'object' || Array.isArray(ctx))
    throw new ValidationError('wrap context must be an object of strings');
  const entries = Object.keys(ctx)
    .sort()
    .map((k) => {
      const v = ctx[k];
      if (typeof v !== 'string') throw new ValidationError(`wrap context entry "${k}" must be a string`);
      return [k, v];
    });
  return createHash('sha256').update(DOMAIN).update(JSON.stringify(entries)).digest();
}

/** The payload to wrap; the caller zeroes it once wrapped. */
export function encodePayload(dek: Uint8Array, ctx: WrapContext): Buffer {
  if (dek.length < 1 || dek.length > MAX_DEK_BYTES) {
    throw new ValidationError(`DEK must be 1-${MAX_DEK_BYTES} bytes (got ${dek.length})`);
  }
  const body = HEAD + dek.length + DIGEST_BYTES;
  const out = Buffer.alloc(Math.ceil(body / 8) * 8);
  out[0] = FORMAT_VERSION;
  out[1] = dek.length;
  randomBytes(SALT_BYTES).copy(out, 2);
  out.set(dek, HEAD);
  contextDigest(ctx).copy(out, HEAD + dek.length);
  return out;
}

export type Decoded = { ok: true; dek: Buffer } | { ok: false; reason: 'context' };

/**
 * Checks an unwrapped payload against the caller's context and returns a fresh DEK buffer.
 * Zeroes `payload` in every case. A malformed payload is an IntegrityError; a well-formed one
 * whose context digest differs is reported to the caller (a wrong context).
 */
export function decodePayload(payload: Buffer, ctx: WrapContext, where: string): Decoded {
  try {
    const len = payload[1] ?? 0;
    const body = HEAD + len + DIGEST_BYTES;
    if (
      payload.length < HEAD ||
      payload[0] !== FORMAT_VERSION ||
      len < 1 ||
      payload.length !== Math.ceil(body / 8) * 8 ||
      payload.subarray(body).some((b) => b !== 0)
    ) {
      throw new IntegrityError(`${where}: the unwrapped payload is not a rekey wrapped DEK`);
    }
    const expected = contextDigest(ctx);
    if (!timingSafeEqual(expected, payload.subarray(HEAD + len, body)))
      return { ok: false, reason: 'context' };
    return { ok: true, dek: Buffer.from(payload.subarray(HEAD, HEAD + len)) };
  } finally {
    payload.fill(0);
  }
}
