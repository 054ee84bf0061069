import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ProviderError } from '../../../shared/core/errors.js';
import type { WrapContext } from '../../../shared/core/ports/KeyProvider.js';
import { Pkcs11Provider, type RewrapItem } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { Pkcs11WorkerPool } from '../../../shared/providers/pkcs11/workerPool.js';
import { type SoftHsm, startSoftHsm } from '../../support/softhsm.js';

// Workers are forked from the TypeScript sources; Node 20 needs a transpiling loader for that.
const execArgv = ['--import', new URL('./support/register-ts.mjs', import.meta.url).href];

let hsm: SoftHsm;
let provider: Pkcs11Provider;
let ref: KeyRef;
let items: RewrapItem[];
let deks: Buffer[];

beforeAll(async () => {
  hsm = await startSoftHsm({ label: 'pool' });
  provider = await Pkcs11Provider.open({ id: 'hsm', module: hsm.module, token: hsm.label, pin: hsm.pin });
  ref = parseKeyRef((await provider.createKey({ name: 'pool-key' })).ref);
  deks = Array.from({ length: 120 }, (_, i) => randomBytes(i % 2 ? 16 : 32));
  items = [];
  for (let i = 0; i < deks.length; i++) {
    const ctx: WrapContext = { row: String(i) };
    items.push({ wrapped: await provider.wrap(ref, deks[i]!, ctx), ctx });
  }
  // One bad item in the middle: wrong context.
  items[57] = { wrapped: items[57]!.wrapped, ctx: { row: 'not-57' } };
  await provider.rotate(ref);
});

afterAll(async () => {
  await provider?.close();
  await hsm?.cleanup();
});

describe('Pkcs11WorkerPool', () => {
  it('gives the same results as the single-process path, in item order', async () => {
    const single = await provider.rewrapMany(ref, items);
    const pool = await Pkcs11WorkerPool.start({
      workers: 2,
      batchSize: 25,
      execArgv,
      module: hsm.module,
      token: hsm.label,
      pin: hsm.pin,
      id: 'hsm',
    });
    try {
      const spread = await pool.rewrapMany(ref, items);
      expect(spread).toHaveLength(items.length);
      expect(spread.map((r) => r.ok)).toEqual(single.map((r) => r.ok));
      expect(spread.filter((r) => !r.ok)).toHaveLength(1);
      expect(spread[57]!.ok).toBe(false);
      for (let i = 0; i < items.length; i++) {
        const a = single[i]!;
        const b = spread[i]!;
        if (!a.ok || !b.ok) continue;
        // Rewrap of one payload is deterministic, so both paths give identical bytes.
        expect(b.wrapped.version).toBe(a.wrapped.version);
        expect(Buffer.from(b.wrapped.ciphertext).equals(Buffer.from(a.wrapped.ciphertext))).toBe(true);
      }
      const back = await provider.unwrap(ref, (spread[3] as { wrapped: RewrapItem['wrapped'] }).wrapped, {
        row: '3',
      });
      expect(Buffer.from(back).equals(deks[3]!)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('reports a wrong PIN from the workers as a ProviderError', async () => {
    const e = await Pkcs11WorkerPool.start({
      workers: 1,
      execArgv,
      module: hsm.module,
      token: hsm.label,
      pin: '000000',
      id: 'hsm',
    }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ProviderError);
    expect((e as ProviderError).providerCode).toBe('CKR_PIN_INCORRECT');
    expect((e as Error).message).not.toContain('000000');
  });
});
