import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import { ProviderError } from '../../shared/core/errors.js';
import type { KeyProvider } from '../../shared/core/ports/KeyProvider.js';
import { MemoryMetrics } from '../../shared/core/ports/MetricsSink.js';
import type { RewrapJob } from '../../shared/core/ports/StateStore.js';
import { AdaptiveRate } from '../../shared/core/rewrap/adaptiveRate.js';
import { newRewrapJob, runRewrapJob } from '../../shared/core/rewrap/rewrapJob.js';
import { lostDeks, type TestWorkspace, testWorkspace } from '../support/workspace.js';

let w: TestWorkspace | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

function newJob(keyRef: string, toVersion: string): RewrapJob {
  return newRewrapJob({
    id: `job-${randomBytes(4).toString('hex')}`,
    keyRef,
    storeId: 'app',
    toVersion,
    now: new Date(),
  });
}

/** A provider that throttles and fails some calls, like a KMS under a storm. */
function stormy(p: KeyProvider, throttle: number, fail: number): KeyProvider & { calls: number } {
  const out = Object.create(p) as KeyProvider & { calls: number };
  out.calls = 0;
  const wrap =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      out.calls++;
      const r = Math.random();
      if (r < throttle)
        throw new ProviderError('stormy', 'ThrottlingException', 'rate exceeded', {
          retryable: true,
          throttled: true,
        });
      if (r < throttle + fail)
        throw new ProviderError('stormy', 'InternalFailure', 'try again', { retryable: true });
      return fn(...a);
    };
  out.wrap = wrap(p.wrap.bind(p));
  out.unwrap = wrap(p.unwrap.bind(p));
  out.rewrap = wrap(p.rewrap!.bind(p));
  // The storm is per call: keep the engine on the per-item path (the local provider's batch call
  // would otherwise take every unverified item).
  out.rewrapMany = undefined;
  return out;
}

describe('re-wrap engine under failure', () => {
  it('a throttling storm (30% throttled, 5% failing) completes, loses nothing, retries stay bounded, the rate backs off', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 2000, { ageDays: 100 });
    const v2 = await w.local.rotate(parseKeyRef(ref));
    const provider = stormy(w.local, 0.3, 0.05);
    const limiter = new AdaptiveRate({ minPerSecond: 3000 });
    const metrics = new MemoryMetrics();
    const job = await runRewrapJob({
      job: newJob(ref, v2.id),
      ref: parseKeyRef(ref),
      provider,
      store: w.store,
      state: w.state,
      verify: 'full',
      batchSize: 250,
      limiter,
      metrics,
      now: () => new Date(),
      sleep: async () => {},
    });
    expect(job.status).toBe('done');
    expect(job.counts).toMatchObject({ rewrapped: 2000, failed: 0 });
    expect(job.counts.throttled).toBeGreaterThan(0);
    expect(job.counts.retried).toBeGreaterThan(0);
    // Every call succeeds within 8 attempts; 3 operations per verified DEK.
    expect(provider.calls).toBeLessThanOrEqual(2000 * 3 * 8);
    expect(limiter.current()).not.toBeNull();
    expect(metrics.total('rekey.rewrap.rewrapped')).toBe(2000);
    expect(metrics.total('rekey.rewrap.throttled')).toBe(job.counts.throttled);
    expect(await w.store.countByVersion(ref)).toEqual({ [v2.id]: 2000 });
    expect(await lostDeks(w)).toEqual([]);
  });

  it('errors that are not retryable are not retried: the DEK is reported, the job goes on', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 50, { ageDays: 100 });
    const v2 = await w.local.rotate(parseKeyRef(ref));
    const provider = Object.create(w.local) as KeyProvider;
    let calls = 0;
    provider.rewrapMany = undefined; // per-item path: one call per DEK
    provider.rewrap = async (...a) => {
      calls++;
      if (Buffer.from(a[1].ciphertext).equals((await w!.store.get('k-000010'))!.wrapped)) {
        throw new ProviderError('p', 'AccessDenied', 'not allowed', { retryable: false });
      }
      return w!.local.rewrap(...a);
    };
    const job = await runRewrapJob({
      job: newJob(ref, v2.id),
      ref: parseKeyRef(ref),
      provider,
      store: w.store,
      state: w.state,
      verify: 'none',
      batchSize: 20,
      now: () => new Date(),
    });
    expect(job.counts).toMatchObject({ rewrapped: 49, failed: 1, retried: 0 });
    expect(job.failures).toEqual([{ id: 'k-000010', error: expect.stringContaining('not allowed') }]);
    expect(calls).toBe(50);
  });

  it('the application rewrites 1,000 DEKs while the job runs: none of its writes is lost', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 5000, { ageDays: 100 });
    const kref = parseKeyRef(ref);
    const v2 = await w.local.rotate(kref);
    const ids = [...w.plaintexts.keys()].sort(() => Math.random() - 0.5).slice(0, 1000);
    let appDone = false;
    const app = (async () => {
      for (const id of ids) {
        // Read-modify-write as an application does: a new DEK under the current primary, CAS on what it read.
        for (;;) {
          const cur = (await w!.store.get(id))!;
          const pt = randomBytes(32);
          const next = await w!.local.wrap(kref, pt, cur.context);
          if (await w!.store.replace(id, next.ciphertext, next.version, cur.wrapped)) {
            w!.plaintexts.set(id, pt);
            break;
          }
        }
        await new Promise((r) => setImmediate(r));
      }
      appDone = true;
    })();
    const job = await runRewrapJob({
      job: newJob(ref, v2.id),
      ref: kref,
      provider: w.local,
      store: w.store,
      state: w.state,
      verify: 'full',
      batchSize: 100,
      concurrency: 4,
      now: () => new Date(),
    });
    await app;
    expect(appDone).toBe(true);
    expect(job.counts.failed).toBe(0);
    expect(job.counts.rewrapped).toBeLessThanOrEqual(5000);
    expect(await w.store.countByVersion(ref)).toEqual({ [v2.id]: 5000 });
    expect(await lostDeks(w)).toEqual([]);
  });

  it('a corrupted DEK and a DEK whose context does not match are reported per item; the job completes', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 200, { ageDays: 100 });
    const v2 = await w.local.rotate(parseKeyRef(ref));
    const a = (await w.store.get('k-000003'))!;
    const bad = Buffer.from(a.wrapped);
    bad[5]! ^= 0x40;
    await w.store.replace(a.id, bad, a.version, a.wrapped);
    // Context mismatch: the row's context was changed after wrapping.
    w.store.db
      .prepare('UPDATE data_keys SET aad = ? WHERE id = ?')
      .run(JSON.stringify({ id: 'someone-else' }), 'k-000150');
    const job = await runRewrapJob({
      job: newJob(ref, v2.id),
      ref: parseKeyRef(ref),
      provider: w.local,
      store: w.store,
      state: w.state,
      verify: 'full',
      batchSize: 64,
      now: () => new Date(),
    });
    expect(job.status).toBe('done');
    expect(job.counts).toMatchObject({ rewrapped: 198, failed: 2 });
    expect(job.failures.map((f) => f.id).sort()).toEqual(['k-000003', 'k-000150']);
    expect((await w.store.countByVersion(ref))['1']).toBe(2);
  });
});

describe('batched server-side re-wrap', () => {
  it('uses the provider batch call for unverified DEKs, reports bad items, retries transient ones', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 600, { ageDays: 100 });
    const v2 = await w.local.rotate(parseKeyRef(ref));
    const bad = (await w.store.get('k-000042'))!.wrapped;
    const flaky = (await w.store.get('k-000077'))!.wrapped;
    let flakyFailures = 0;
    let batchCalls = 0;
    let singleCalls = 0;
    const provider = Object.create(w.local) as KeyProvider;
    provider.rewrap = async (...a) => {
      singleCalls++;
      return w!.local.rewrap(...a);
    };
    // The bad and the flaky DEK fail on the per-item path too: which items are sampled (and so
    // unwrapped one by one) is random.
    provider.unwrap = async (r, wrapped, ctx) => {
      const c = Buffer.from(wrapped.ciphertext);
      if (c.equals(bad)) {
        throw new ProviderError('p', 'InvalidCiphertext', 'cannot unwrap', { retryable: false });
      }
      if (c.equals(flaky) && flakyFailures++ < 1) {
        throw new ProviderError('p', 'Busy', 'busy', { retryable: true });
      }
      return w!.local.unwrap(r, wrapped, ctx);
    };
    provider.rewrapMany = async (r, items, to) => {
      batchCalls++;
      return Promise.all(
        items.map(async (it) => {
          const c = Buffer.from(it.wrapped.ciphertext);
          if (c.equals(bad))
            return { ok: false as const, error: { code: 'X', message: 'cannot unwrap', retryable: false } };
          if (c.equals(flaky) && flakyFailures++ < 1) {
            return { ok: false as const, error: { code: 'X', message: 'busy', retryable: true } };
          }
          return { ok: true as const, wrapped: await w!.local.rewrap(r, it.wrapped, it.ctx, to) };
        }),
      );
    };
    const job = await runRewrapJob({
      job: newJob(ref, v2.id),
      ref: parseKeyRef(ref),
      provider,
      store: w.store,
      state: w.state,
      verify: { sample: 0.1 },
      batchSize: 300,
      now: () => new Date(),
    });
    expect(job.counts).toMatchObject({ rewrapped: 599, failed: 1 });
    expect(job.failures).toEqual([{ id: 'k-000042', error: expect.stringContaining('cannot unwrap') }]);
    // One call per batch, and the transient failure was retried on whichever path it took.
    expect(batchCalls).toBeGreaterThanOrEqual(2);
    expect(flakyFailures).toBeGreaterThanOrEqual(2);
    expect(job.counts.retried).toBeGreaterThanOrEqual(1);
    // Sampled items went one by one (unwrap + wrap), never through rewrap().
    expect(singleCalls).toBe(0);
    expect(job.counts.verified).toBeGreaterThan(0);
    expect(job.counts.verified).toBeLessThan(200);
    w.plaintexts.delete('k-000042');
    expect(await lostDeks(w)).toEqual([]);
  });
});

describe('adaptive rate', () => {
  it('backs off multiplicatively on throttling and climbs back additively up to the ceiling', () => {
    let t = 0;
    const r = new AdaptiveRate({ maxPerSecond: 1000, nowMs: () => t });
    expect(r.current()).toBe(1000);
    r.onThrottle();
    expect(r.current()).toBeCloseTo(700);
    t += 100;
    r.onThrottle(); // same burst: no second cut
    expect(r.current()).toBeCloseTo(700);
    for (let i = 0; i < 100; i++) {
      t += 100;
      r.onSuccess();
    }
    expect(r.current()).toBe(1000);
  });

  it('never goes below its floor', () => {
    let t = 0;
    const r = new AdaptiveRate({ maxPerSecond: 100, minPerSecond: 10, nowMs: () => t });
    for (let i = 0; i < 50; i++) {
      t += 1000;
      r.onThrottle();
    }
    expect(r.current()).toBe(10);
  });
});
