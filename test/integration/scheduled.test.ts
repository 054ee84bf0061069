import { afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import type { RekeyEvent } from '../../shared/core/ports/EventBus.js';
import type { WorkMessage } from '../../shared/core/ports/WorkQueue.js';
import { applyPlan } from '../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { runRewrapShard, runScheduledCycle } from '../../shared/core/usecases/scheduled.js';
import { lostDeks, type TestWorkspace, testWorkspace } from '../support/workspace.js';

let w: TestWorkspace | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

/** A queue that keeps what was sent, serialised as a real queue would carry it. */
function memoryQueue() {
  const bodies: string[] = [];
  return {
    bodies,
    queue: {
      send: async (msgs: WorkMessage[]) => {
        for (const m of msgs) bodies.push(JSON.stringify(m));
      },
    },
  };
}

async function setup(deks: number) {
  w = await testWorkspace();
  const q = memoryQueue();
  const events: RekeyEvent[] = [];
  w.ctx.queue = q.queue;
  w.ctx.events = { publish: async (e) => void events.push(...e) };
  const ref = await w.seed('old', deks, { ageDays: 200 });
  return { w, q, events, ref };
}

describe('scheduled cycle with queued re-wraps', () => {
  it('rotates, queues shards, workers drain them, the next cycle retires the old version', async () => {
    const { w, q, events, ref } = await setup(300);
    const first = await runScheduledCycle(w.ctx, { shards: 3 });
    expect(first.status).toBe('applied');
    expect(first.queued).toBe(q.bodies.length);
    expect(q.bodies.length).toBeGreaterThanOrEqual(2);
    const byType = Object.fromEntries(first.apply!.outcomes.map((o) => [o.type, o.status]));
    expect(byType).toMatchObject({
      rotate: 'done',
      rewrap: 'awaiting_rewrap',
      disable_version: 'awaiting_rewrap',
    });
    const key = await w.local.getKey(parseKeyRef(ref));
    expect(key.primaryVersion).toBe('2');
    expect(key.versions.find((v) => v.id === '1')?.state).toBe('enabled');

    // Workers, in any order; exactly one of them completes the job.
    const reports = [];
    for (const body of [...q.bodies].reverse()) reports.push(await runRewrapShard(w.ctx, body));
    expect(reports.every((r) => r.status === 'done')).toBe(true);
    expect(reports.filter((r) => r.jobCompleted)).toHaveLength(1);
    expect(reports.reduce((n, r) => n + r.counts.rewrapped, 0)).toBe(300);
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 300 });

    // At-least-once delivery: a redelivered shard is a no-op and announces nothing again.
    const again = await runRewrapShard(w.ctx, q.bodies[0]);
    expect(again).toMatchObject({ status: 'done' });
    expect(again.jobCompleted).toBeUndefined();
    expect(events.filter((e) => e.type === 'RewrapCompleted')).toHaveLength(1);

    const second = await runScheduledCycle(w.ctx, { shards: 3 });
    expect(second.status).toBe('applied');
    expect(second.queued).toBe(0);
    const after = await w.local.getKey(parseKeyRef(ref));
    expect(after.versions.find((v) => v.id === '1')?.state).toBe('disabled');
    expect(await lostDeks(w)).toEqual([]);
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
  });

  it('a second cycle while the first still waits finds the same job instead of starting another', async () => {
    const { w, q } = await setup(120);
    await runScheduledCycle(w.ctx, { shards: 2 });
    const sent = q.bodies.length;
    const second = await runScheduledCycle(w.ctx, { shards: 2 });
    const jobIds = (bodies: string[]) => new Set(bodies.map((b) => JSON.parse(b).jobId));
    // Re-queued (the first batch may have been lost), but the same shard ids.
    expect(second.queued).toBe(sent);
    expect(jobIds(q.bodies.slice(sent))).toEqual(jobIds(q.bodies.slice(0, sent)));
  });

  it('refuses malformed and unknown messages with a clear error, changing nothing', async () => {
    const { w, ref } = await setup(20);
    await expect(runRewrapShard(w.ctx, '{not json')).rejects.toThrow(/not JSON/);
    await expect(runRewrapShard(w.ctx, { kind: 'rewrap-shard', jobId: 'x' })).rejects.toThrow(/providerId/);
    await expect(
      runRewrapShard(w.ctx, {
        kind: 'rewrap-shard',
        jobId: 'x',
        providerId: 'local-dev',
        verify: 'full',
        batchSize: 0,
      }),
    ).rejects.toThrow(/batchSize/);
    await expect(
      runRewrapShard(w.ctx, {
        kind: 'rewrap-shard',
        jobId: 'nope',
        providerId: 'local-dev',
        verify: 'full',
        batchSize: 10,
      }),
    ).rejects.toThrow(/nope.*not found/);
    expect(await w.store.countByVersion(ref)).toEqual({ '1': 20 });
  });

  it('queued re-wraps need a queue', async () => {
    w = await testWorkspace();
    await w.seed('k', 5, { ageDays: 200 });
    const { plan } = await makePlan(w.ctx);
    await expect(applyPlan(w.ctx, plan, { rewrap: 'queue' })).rejects.toThrow(/work queue/);
  });
});
