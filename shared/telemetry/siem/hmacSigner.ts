import { createHmac, timingSafeEqual } from 'node:crypto';
import { resolveSecret } from '../../config/secrets.js';
import type { ChainSignature, ChainSigner } from '../../core/audit/checkpoints.js';
import { ConfigError } from '../../core/errors.js';

export const HMAC_ALG = 'HMAC-SHA256';
/** Shorter keys are refused: an HMAC key guessable by brute force signs nothing. */
export const MIN_HMAC_KEY_BYTES = 32;

/** A key id derived from the key without revealing it: HMAC(key, label), first 16 hex chars. */
export function hmacKeyId(key: Uint8Array): string {
  return `hmac-sha256:${createHmac('sha256', key).update('rekey-audit-key-id').digest('hex').slice(0, 16)}`;
}

/**
 * Signs audit checkpoints with HMAC-SHA256. The first key signs; every key verifies, so the
 * checkpoint key can be rotated by putting the new key first and keeping the old one for as
 * long as checkpoints signed with it must verify. Keys are copied in; `destroy()` zeroes them.
 * Whoever verifies holds the same secret: keep it out of the database the log lives in.
 */
export class HmacChainSigner implements ChainSigner {
  private readonly keys: { keyId: string; key: Buffer }[];

  constructor(keys: Uint8Array | Uint8Array[]) {
    const list = Array.isArray(keys) ? keys : [keys];
    if (list.length === 0) throw new ConfigError('audit checkpoint signer: no HMAC key given');
    this.keys = list.map((k, i) => {
      if (k.length < MIN_HMAC_KEY_BYTES) {
        throw new ConfigError(
          `audit checkpoint signer: HMAC key ${i + 1} is ${k.length} bytes; at least ${MIN_HMAC_KEY_BYTES} are required`,
        );
      }
      const key = Buffer.from(k);
      return { keyId: hmacKeyId(key), key };
    });
  }

  get keyId(): string {
    return this.keys[0]!.keyId;
  }

  async sign(bytes: Uint8Array): Promise<ChainSignature> {
    const { keyId, key } = this.keys[0]!;
    return { alg: HMAC_ALG, keyId, signature: createHmac('sha256', key).update(bytes).digest('base64') };
  }

  async verify(bytes: Uint8Array, sig: ChainSignature): Promise<boolean> {
    if (sig.alg !== HMAC_ALG) return false;
    const k = this.keys.find((x) => x.keyId === sig.keyId);
    if (!k) return false;
    const expected = createHmac('sha256', k.key).update(bytes).digest();
    const given = Buffer.from(sig.signature, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Zeroes the key copies; the signer is unusable afterwards. */
  destroy(): void {
    for (const k of this.keys) k.key.fill(0);
    this.keys.length = 0;
  }
}

/**
 * Builds the signer from secret references (`env:NAME` / `file:PATH`, first one signs). The
 * resolved buffers are zeroed once copied into the signer.
 */
export function hmacSignerFromSecrets(refs: string[], baseDir: string): HmacChainSigner {
  const bufs: Buffer[] = [];
  try {
    for (const ref of refs) bufs.push(resolveSecret(ref, baseDir, 'audit checkpoint key'));
    return new HmacChainSigner(bufs);
  } finally {
    for (const b of bufs) b.fill(0);
  }
}
