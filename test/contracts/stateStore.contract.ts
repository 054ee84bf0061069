import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../shared/core/audit/auditLog.js';
import type { ManagedKey } from '../../shared/core/domain/key.js';
import type { ActionRecord, Plan } from '../../shared/core/plan/types.js';
import type {
  ApplyRun,
  AuditRecord,
  InventorySnapshot,
  RewrapJob,
  StateStore,
} from '../../shared/core/ports/StateStore.js';
import { backupLines, restoreBackup, verifyBackup } from '../../shared/core/usecases/stateBackup.js';

/** What every StateStore adapter must do. `setup` returns an empty store. */
export interface StateStoreFixture {
  store: StateStore;
  cleanup(): Promise<void>;
}

const KEY: ManagedKey = {
  ref: 'local://orders',
  providerType: 'local',
  providerId: 'local-dev',
  name: 'orders',
  tags: { 'data-class': 'pci' },
  protection: 'software',
  algorithm: 'AES_256',
  enabled: true,
  primaryVersion: '2',
  versions: [
    { id: '1', state: 'disabled', createdAt: '2026-01-01T00:00:00.000Z' },
    { id: '2', state: 'enabled', createdAt: '2026-04-01T00:00:00.000Z' },
  ],
  createdAt: '2026-01-01T00:00:00.000Z',
  autoRotation: { periodDays: 90, nextRotationAt: '2026-07-01T00:00:00.000Z' },
};

function snapshot(id: string, takenAt: string): InventorySnapshot {
  return { id, takenAt, keys: [KEY], errors: [{ providerId: 'aws-prod', message: 'throttled' }] };
}

function plan(id: string, createdAt: string): Plan {
  return {
    id,
    createdAt,
    configDigest: 'sha256:abc',
    inventoryId: 'inv-1',
    actions: [
      {
        type: 'rotate',
        keyRef: KEY.ref,
        provider: 'local-dev',
        policy: 'pci',
        reason: 'primary is 120 days old',
        expectPrimary: '2',
      },
      {
        type: 'rewrap',
        keyRef: KEY.ref,
        provider: 'local-dev',
        policy: 'pci',
        reason: 'DEKs under version 1',
        stores: ['orders'],
        fromVersions: [],
        estimatedDeks: 1200,
        verify: { sample: 0.01 },
        batchSize: 500,
        ratePerSecond: 200,
      },
    ],
    findings: [{ kind: 'rotation_due', severity: 'warning', keyRef: KEY.ref, policy: 'pci', message: 'due' }],
  };
}

function run(id: string, startedAt: string, status: ApplyRun['status'] = 'running'): ApplyRun {
  return { id, planId: 'plan-1', startedAt, status };
}

function action(planId: string, index: number, status: ActionRecord['status'], attempts = 1): ActionRecord {
  return {
    planId,
    index,
    status,
    attempts,
    updatedAt: '2026-05-01T00:00:00.000Z',
    result: { newVersion: '3', counts: { rewrapped: 10 } },
  };
}

function job(id: string, rewrapped: number): RewrapJob {
  return {
    id,
    keyRef: KEY.ref,
    storeId: 'orders',
    fromVersions: ['1'],
    toVersion: '2',
    status: 'running',
    cursor: null,
    counts: { scanned: rewrapped, rewrapped, verified: 0, conflicts: 0, failed: 0 },
    failures: [],
    updatedAt: '2026-05-01T00:00:00.000Z',
  };
}

function audit(seq: number, hash = `h${seq}`): AuditRecord {
  return {
    seq,
    ts: `2026-05-01T00:00:0${seq % 10}.000Z`,
    actor: 'svc:rotator',
    action: 'key.rotate',
    target: seq % 2 === 0 ? null : KEY.ref,
    details: { reason: 'due', nested: { n: seq, list: [1, 'two'] } },
    prevHash: seq === 1 ? '0'.repeat(64) : `h${seq - 1}`,
    hash,
  };
}

export function stateStoreContract(name: string, setup: () => Promise<StateStoreFixture>): void {
  describe(`StateStore contract: ${name}`, () => {
    let fx: StateStoreFixture;
    let store: StateStore;
    beforeEach(async () => {
      fx = await setup();
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    it('latestInventory is the snapshot taken last, whatever the save order', async () => {
      expect(await store.latestInventory()).toBeNull();
      const newer = snapshot('inv-2', '2026-05-02T00:00:00.000Z');
      await store.saveInventory(newer);
      await store.saveInventory(snapshot('inv-1', '2026-05-01T00:00:00.000Z'));
      expect(await store.latestInventory()).toEqual(newer);
      const newest = snapshot('inv-3', '2026-05-03T00:00:00.000Z');
      await store.saveInventory(newest);
      expect(await store.latestInventory()).toEqual(newest);
    });

    it('plans round-trip and latestPlan is the one created last', async () => {
      expect(await store.getPlan('plan-a')).toBeNull();
      expect(await store.latestPlan()).toBeNull();
      const b = plan('plan-b', '2026-05-02T10:00:00.000Z');
      const a = plan('plan-a', '2026-05-01T10:00:00.000Z');
      await store.savePlan(b);
      await store.savePlan(a);
      expect(await store.getPlan('plan-a')).toEqual(a);
      expect(await store.getPlan('plan-b')).toEqual(b);
      expect(await store.latestPlan()).toEqual(b);
    });

    it('runs round-trip, update in place and list newest first', async () => {
      expect(await store.getRun('run-1')).toBeNull();
      await store.saveRun(run('run-1', '2026-05-01T00:00:00.000Z'));
      await store.saveRun(run('run-3', '2026-05-03T00:00:00.000Z'));
      await store.saveRun(run('run-2', '2026-05-02T00:00:00.000Z'));
      const done: ApplyRun = {
        ...run('run-1', '2026-05-01T00:00:00.000Z', 'completed'),
        finishedAt: '2026-05-01T01:00:00.000Z',
      };
      await store.saveRun(done);
      expect(await store.getRun('run-1')).toEqual(done);
      expect((await store.listRuns(10)).map((r) => r.id)).toEqual(['run-3', 'run-2', 'run-1']);
      expect((await store.listRuns(2)).map((r) => r.id)).toEqual(['run-3', 'run-2']);
    });

    it('action records are kept per plan and index, in index order, and upserted', async () => {
      await store.putActionRecord(action('plan-1', 2, 'pending'));
      await store.putActionRecord(action('plan-1', 0, 'done'));
      await store.putActionRecord(action('plan-1', 1, 'running'));
      await store.putActionRecord(action('plan-2', 0, 'failed'));
      const updated: ActionRecord = { ...action('plan-1', 1, 'failed', 2), error: 'provider throttled' };
      await store.putActionRecord(updated);
      const recs = await store.getActionRecords('plan-1');
      expect(recs.map((r) => [r.index, r.status])).toEqual([
        [0, 'done'],
        [1, 'failed'],
        [2, 'pending'],
      ]);
      expect(recs[1]).toEqual(updated);
      expect(recs[0]).toEqual(action('plan-1', 0, 'done'));
      expect(await store.getActionRecords('plan-none')).toEqual([]);
    });

    it('a lease is exclusive until it expires, and re-entrant for its owner', async () => {
      const t0 = 1_700_000_000_000;
      expect(await store.acquireLease('key:orders', 'a', 1000, t0)).toBe(true);
      expect(await store.acquireLease('key:orders', 'b', 1000, t0 + 500)).toBe(false);
      // Other lease names are independent.
      expect(await store.acquireLease('key:other', 'b', 1000, t0 + 500)).toBe(true);
      // The owner extends it: now held until t0 + 1500.
      expect(await store.acquireLease('key:orders', 'a', 1000, t0 + 500)).toBe(true);
      expect(await store.acquireLease('key:orders', 'b', 1000, t0 + 1200)).toBe(false);
      // Expired: anyone may take it, and the previous owner has lost it.
      expect(await store.acquireLease('key:orders', 'b', 1000, t0 + 1600)).toBe(true);
      expect(await store.acquireLease('key:orders', 'a', 1000, t0 + 1700)).toBe(false);
    });

    it('leaseOwner names the holder until the lease expires', async () => {
      const t0 = 1_700_000_000_000;
      expect(await store.leaseOwner('key:who', t0)).toBeNull();
      expect(await store.acquireLease('key:who', 'a', 1000, t0)).toBe(true);
      expect(await store.leaseOwner('key:who', t0 + 10)).toEqual({ owner: 'a', expiresAtMs: t0 + 1000 });
      expect(await store.leaseOwner('key:who', t0 + 1000)).toBeNull();
    });

    it('only the owner can release a lease', async () => {
      const t0 = 1_700_000_000_000;
      expect(await store.acquireLease('key:rel', 'a', 60_000, t0)).toBe(true);
      await store.releaseLease('key:rel', 'b');
      expect(await store.acquireLease('key:rel', 'b', 60_000, t0 + 1)).toBe(false);
      await store.releaseLease('key:rel', 'a');
      expect(await store.acquireLease('key:rel', 'b', 60_000, t0 + 2)).toBe(true);
      // Releasing a lease nobody holds is not an error.
      await store.releaseLease('key:never', 'a');
    });

    it('concurrent lease attempts: exactly one owner wins', async () => {
      const t0 = 1_700_000_000_000;
      const owners = ['w1', 'w2', 'w3', 'w4', 'w5'];
      const won = await Promise.all(owners.map((o) => store.acquireLease('key:contended', o, 10_000, t0)));
      expect(won.filter(Boolean)).toHaveLength(1);
    });

    it('createRewrapJob: the first job wins, later creates return it', async () => {
      expect(await store.getRewrapJob('job-1')).toBeNull();
      const first = job('job-1', 0);
      expect(await store.createRewrapJob(first)).toEqual(first);
      const again = await store.createRewrapJob({ ...job('job-1', 99), toVersion: '9' });
      expect(again).toEqual(first);
      const progressed: RewrapJob = {
        ...first,
        cursor: 'c-1',
        counts: { ...first.counts, scanned: 500, rewrapped: 498, conflicts: 2 },
        failures: [{ id: 'd-7', error: 'context mismatch' }],
      };
      await store.saveRewrapJob(progressed);
      expect(await store.getRewrapJob('job-1')).toEqual(progressed);
      expect(await store.createRewrapJob(first)).toEqual(progressed);
    });

    it('concurrent createRewrapJob calls all return the same single job', async () => {
      const results = await Promise.all([1, 2, 3, 4].map((n) => store.createRewrapJob(job('job-race', n))));
      const stored = await store.getRewrapJob('job-race');
      expect(stored).not.toBeNull();
      for (const r of results) expect(r).toEqual(stored);
    });

    it('auditAppend accepts only the next sequence number and never overwrites', async () => {
      expect(await store.auditTail()).toBeNull();
      expect(await store.auditAppend(audit(2))).toBe(false);
      expect(await store.auditAppend(audit(0))).toBe(false);
      expect(await store.auditAppend(audit(1))).toBe(true);
      // Duplicate seq with different content: refused, the original stays.
      expect(await store.auditAppend(audit(1, 'forged'))).toBe(false);
      // A gap: refused.
      expect(await store.auditAppend(audit(3))).toBe(false);
      expect(await store.auditAppend(audit(2))).toBe(true);
      expect(await store.auditAppend(audit(3))).toBe(true);
      expect(await store.auditTail()).toEqual(audit(3));
      expect(await store.auditRead(1, 10)).toEqual([audit(1), audit(2), audit(3)]);
      expect(await store.auditRead(2, 1)).toEqual([audit(2)]);
      expect(await store.auditRead(4, 10)).toEqual([]);
    });

    it('concurrent appends of the same seq: exactly one wins', async () => {
      await store.auditAppend(audit(1));
      const results = await Promise.all(['x', 'y', 'z'].map((h) => store.auditAppend(audit(2, h))));
      expect(results.filter(Boolean)).toHaveLength(1);
      const [stored] = await store.auditRead(2, 1);
      expect(['x', 'y', 'z']).toContain(stored!.hash);
      expect((await store.auditTail())!.seq).toBe(2);
    });

    it('putRecord inserts once (rev 0), then updates only from the stored rev', async () => {
      const at = '2026-11-01T00:00:00.000Z';
      expect(await store.getRecord('approval', 'a1')).toBeNull();
      expect(await store.putRecord({ kind: 'approval', id: 'a1', body: { n: 1 }, updatedAt: at }, 0)).toBe(
        true,
      );
      // Already there: a second insert loses and changes nothing.
      expect(await store.putRecord({ kind: 'approval', id: 'a1', body: { n: 9 }, updatedAt: at }, 0)).toBe(
        false,
      );
      expect(await store.getRecord('approval', 'a1')).toEqual({
        kind: 'approval',
        id: 'a1',
        rev: 1,
        body: { n: 1 },
        updatedAt: at,
      });
      // A stale rev loses; the current one wins and bumps rev.
      expect(await store.putRecord({ kind: 'approval', id: 'a1', body: { n: 2 }, updatedAt: at }, 2)).toBe(
        false,
      );
      expect(await store.putRecord({ kind: 'approval', id: 'a1', body: { n: 2 }, updatedAt: at }, 1)).toBe(
        true,
      );
      expect((await store.getRecord('approval', 'a1'))!).toMatchObject({ rev: 2, body: { n: 2 } });
      // Updating a record that does not exist writes nothing.
      expect(await store.putRecord({ kind: 'approval', id: 'zz', body: {}, updatedAt: at }, 1)).toBe(false);
      expect(await store.getRecord('approval', 'zz')).toBeNull();
      // Kinds are separate namespaces.
      expect(await store.getRecord('event', 'a1')).toBeNull();
    });

    it('listRecords pages one kind in id order', async () => {
      const at = '2026-11-01T00:00:00.000Z';
      for (const id of ['c', 'a', 'b', 'd']) {
        await store.putRecord({ kind: 'event', id, body: { id }, updatedAt: at }, 0);
      }
      await store.putRecord({ kind: 'other', id: 'a0', body: {}, updatedAt: at }, 0);
      const first = await store.listRecords('event', { limit: 3 });
      expect(first.map((r) => r.id)).toEqual(['a', 'b', 'c']);
      const next = await store.listRecords('event', { afterId: 'c', limit: 3 });
      expect(next.map((r) => r.id)).toEqual(['d']);
      expect(await store.listRecords('none', { limit: 5 })).toEqual([]);
    });

    it('concurrent inserts of one record: exactly one wins', async () => {
      const at = '2026-11-01T00:00:00.000Z';
      const results = await Promise.all(
        ['x', 'y', 'z'].map((w) =>
          store.putRecord({ kind: 'event', id: 'evt-1', body: { w }, updatedAt: at }, 0),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const stored = await store.getRecord('event', 'evt-1');
      expect(stored!.rev).toBe(1);
    });

    it('putRecord refuses a malformed write with a clear error', async () => {
      const at = '2026-11-01T00:00:00.000Z';
      await expect(store.putRecord({ kind: '', id: 'x', body: {}, updatedAt: at }, 0)).rejects.toThrow(
        /kind/,
      );
      await expect(store.putRecord({ kind: 'k', id: 'x', body: {}, updatedAt: 'soon' }, 0)).rejects.toThrow(
        /updatedAt/,
      );
      await expect(store.putRecord({ kind: 'k', id: 'x', body: {}, updatedAt: at }, -1)).rejects.toThrow(
        /expectedRev/,
      );
      expect(await store.getRecord('k', 'x')).toBeNull();
    });

    it('a backup holds every entry and restores into an empty store; a changed byte is refused', async () => {
      // Optional in the port, but every shipped store backs up: a store without it fails here.
      expect(store.exportEntries).toBeTypeOf('function');
      const at = '2026-05-01T00:00:00.000Z';
      await store.saveInventory(snapshot('inv-1', at));
      await store.savePlan(plan('plan-1', at));
      await store.saveRun(run('run-1', at, 'completed'));
      await store.putActionRecord(action('plan-1', 0, 'done'));
      await store.putActionRecord(action('plan-1', 1, 'failed'));
      await store.createRewrapJob(job('job-1', 5));
      await store.putRecord({ kind: 'approval', id: 'a1', body: { quorum: 2 }, updatedAt: at }, 0);
      const log = new AuditLog(store, { now: () => new Date(at) });
      for (const a of ['plan.created', 'key.rotated', 'apply.finished']) {
        await log.append({ actor: 'tester', action: a, target: KEY.ref, details: { n: a.length } });
      }
      const collect = async (it: AsyncIterable<string>) => {
        const out: string[] = [];
        for await (const l of it) out.push(l);
        return out;
      };
      async function* replay(lines: string[]) {
        yield* lines;
      }
      const lines = await collect(backupLines(store, { source: name, now: new Date(at) }));
      const summary = await verifyBackup(replay(lines));
      expect(summary.byKind).toEqual({
        inventory: 1,
        plan: 1,
        run: 1,
        action: 2,
        job: 1,
        record: 1,
        audit: 3,
      });

      const target = await setup();
      try {
        // A damaged copy is refused before anything is written.
        const at4 = lines.findIndex((l) => l.includes('"status":"done"'));
        expect(at4).toBeGreaterThan(0);
        const damaged = lines.map((l, i) =>
          i === at4 ? l.replace('"status":"done"', '"status":"dune"') : l,
        );
        await expect(restoreBackup(target.store, () => replay(damaged))).rejects.toThrow(/digest/);
        expect(await target.store.auditTail()).toBeNull();
        await expect(restoreBackup(target.store, () => replay(lines.slice(0, -1)))).rejects.toThrow(
          /truncated/,
        );

        await restoreBackup(target.store, () => replay(lines));
        const again = await collect(backupLines(target.store, { source: name, now: new Date(at) }));
        expect(again).toEqual(lines);
        // Never over existing state.
        await expect(restoreBackup(target.store, () => replay(lines))).rejects.toThrow(/not empty/);
      } finally {
        await target.cleanup();
      }
    });
  });
}
