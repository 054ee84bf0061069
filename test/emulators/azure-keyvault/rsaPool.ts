import { generateKeyPair, generateKeyPairSync, type KeyObject } from 'node:crypto';

/**
 * RSA key generation is slow (tens to hundreds of ms for 2048 bits), and the emulator makes
 * one per key version. Pairs are generated ahead in the libuv thread pool and handed out once
 * each; when the pool is empty the caller generates synchronously. Every version still gets
 * its own key pair.
 */
const TARGET: Record<number, number> = { 2048: 4, 3072: 0, 4096: 0 };
const pools = new Map<number, { privateKey: KeyObject; publicKey: KeyObject }[]>();
const pending = new Map<number, number>();

function refill(bits: number): void {
  const have = (pools.get(bits)?.length ?? 0) + (pending.get(bits) ?? 0);
  for (let i = have; i < (TARGET[bits] ?? 0); i++) {
    pending.set(bits, (pending.get(bits) ?? 0) + 1);
    generateKeyPair('rsa', { modulusLength: bits }, (err, publicKey, privateKey) => {
      pending.set(bits, (pending.get(bits) ?? 1) - 1);
      if (err) return;
      const pool = pools.get(bits) ?? [];
      pool.push({ privateKey, publicKey });
      pools.set(bits, pool);
    });
  }
}

export function takeRsaKeyPair(bits: number): { privateKey: KeyObject; publicKey: KeyObject } {
  const pair = pools.get(bits)?.shift() ?? generateKeyPairSync('rsa', { modulusLength: bits });
  refill(bits);
  return pair;
}

/** Starts filling the pool (the emulator calls it at start-up). */
export function warmRsaPool(): void {
  refill(2048);
}
