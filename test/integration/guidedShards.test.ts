import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import {
  guidedShardSizes,
  planKeyRewrap,
  prepareRewrapJob,
  settleRewrapJob,
  workJobs,
  workOnRewrapJob,
} from '../../shared/core/usecases/rewrap.js';
import { lostDeks, type TestWorkspace, testWorkspace } from '../support/workspace.js';

let w: TestWorkspace | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

describe('guided shard sizes', () => {
  it('use every part once, shrink as they go, and end on single parts', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 2, max: 64 }), (parts, workers) => {
        const sizes = guidedShardSizes(parts, workers);
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(parts);
        expect(sizes[0]).toBe(Math.ceil(parts / (2 * workers)));
        for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeLessThanOrEqual(sizes[i - 1]!);
        // Once no more than two parts per worker are left, every shard is one part: the last
        // step above that leaves at least 2 * workers - 1 of them.
        const tail = parts <= 2 * workers ? parts : 2 * workers - 1;
        expect(sizes.slice(-tail).every((s) => s === 1)).toBe(true);
      }),
    );
  });

  it('cut a job for workers into shards that cover every DEK once, large ones first', async () => {
    w = await testWorkspace();
    const ref = await w.seed('guided', 5000);
    await w.local.rotate(parseKeyRef(ref));
    const [spec] = await planKeyRewrap(w.ctx, { keyRef: ref });
    expect(spec!.pending).toBe(5000);
    const job = await prepareRewrapJob(w.ctx, spec!, { shards: 64, workers: 2 });
    // 5,000 DEKs make ten parts of 500 (no part is cut smaller), grouped 3, 2, 2, 1, 1, 1.
    const guided = guidedShardSizes(10, 2);
    expect(guided).toEqual([3, 2, 2, 1, 1, 1]);
    expect(job.pending).toBe(5000);
    expect(job.shardIds).toHaveLength(guided.length);
    const shards = await workJobs(w.ctx, job);
    const sizes: number[] = [];
    const seen: string[] = [];
    for (const s of shards) {
      const q = {
        keyRef: ref,
        notVersion: spec!.toVersion,
        ...(s.shard?.idFrom !== undefined ? { idFrom: s.shard.idFrom } : {}),
        ...(s.shard?.idTo !== undefined ? { idTo: s.shard.idTo } : {}),
      };
      const page = await w.store.scan(q, null, 10_000);
      sizes.push(page.items.length);
      seen.push(...page.items.map((d) => d.id));
    }
    expect(new Set(seen).size).toBe(5000);
    // A cut may fall one DEK either side of the exact rank.
    for (const [i, n] of sizes.entries()) expect(Math.abs(n - guided[i]! * 500)).toBeLessThanOrEqual(1);

    await workOnRewrapJob(w.ctx, job.id, 'local', { verify: 'none', batchSize: 400 });
    const done = await settleRewrapJob(w.ctx, job.id);
    expect(done.status).toBe('done');
    expect(done.counts.rewrapped).toBe(5000);
    expect(await lostDeks(w)).toEqual([]);
  });
});
