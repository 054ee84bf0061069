import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../shared/core/audit/auditLog.js';
import { type KeyRef, parseKeyRef } from '../../shared/core/domain/keyRef.js';
import type { DekReplacement } from '../../shared/core/ports/DekStore.js';
import { applyPlan, rewrapJobId } from '../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { lostDeks, type TestWorkspace, testWorkspace } from '../support/workspace.js';

let w: TestWorkspace | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

describe('the rotation cycle on the embedded default', () => {
  it('rotates overdue keys, re-wraps every DEK, disables old versions, loses nothing', async () => {
    w = await testWorkspace();
    const old = await w.seed('old', 120, { ageDays: 200 });
    const fresh = await w.seed('fresh', 30, { ageDays: 10 });
    const { plan } = await makePlan(w.ctx);
    // Ordered by key, then rotate -> schedule -> re-wrap -> retire within a key.
    expect(plan.actions.map((a) => `${a.type} ${a.keyRef}`)).toEqual([
      `set_auto_rotation ${fresh}`,
      `rotate ${old}`,
      `set_auto_rotation ${old}`,
      `rewrap ${old}`,
      `disable_version ${old}`,
    ]);
    const report = await applyPlan(w.ctx, plan);
    expect(report.status).toBe('completed');
    expect(report.totals).toMatchObject({ rotated: 1, rewrapped: 120, verified: 120, failed: 0, retired: 1 });
    const key = await w.local.getKey(parseKeyRef(old));
    expect(key.primaryVersion).toBe('2');
    expect(key.versions.find((v) => v.id === '1')?.state).toBe('disabled');
    expect(await w.store.countByVersion(old)).toEqual({ '2': 120 });
    expect(await lostDeks(w)).toEqual([]);
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
  });

  it('re-applying a finished plan changes nothing and never rotates twice', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 40, { ageDays: 100 });
    const { plan } = await makePlan(w.ctx);
    await applyPlan(w.ctx, plan);
    const again = await applyPlan(w.ctx, plan);
    expect(again.status).toBe('completed');
    expect((await w.local.getKey(parseKeyRef(ref))).versions).toHaveLength(2);
    // A fresh plan right after has nothing left to rotate or re-wrap.
    const next = await makePlan(w.ctx);
    expect(next.plan.actions.filter((a) => a.type !== 'set_auto_rotation')).toEqual([]);
  });

  it('a crash right after the provider rotated is finished by the next apply without a second rotation', async () => {
    let crash = true;
    w = await testWorkspace(undefined, (p) =>
      proxy(p, {
        rotate: async (ref: KeyRef) => {
          const v = await p.rotate(ref);
          if (crash) {
            crash = false;
            throw new Error('process killed after RotateKey returned');
          }
          return v;
        },
      }),
    );
    const ref = await w.seed('k', 60, { ageDays: 100 });
    const { plan } = await makePlan(w.ctx);
    const first = await applyPlan(w.ctx, plan);
    expect(first.status).toBe('failed');
    expect(first.outcomes[0]).toMatchObject({ type: 'rotate', status: 'failed' });
    const second = await applyPlan(w.ctx, plan);
    expect(second.status).toBe('completed');
    expect(second.outcomes[0]).toMatchObject({ type: 'rotate', status: 'already_done' });
    expect((await w.local.getKey(parseKeyRef(ref))).versions.map((v) => v.id)).toEqual(['1', '2']);
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 60 });
    expect(await lostDeks(w)).toEqual([]);
  });

  it('a re-wrap killed mid-way resumes from its checkpoint and completes', async () => {
    let batches = 0;
    let failAt = 3;
    w = await testWorkspace(undefined, undefined, (s) =>
      proxy(s, {
        replaceMany: async (items: DekReplacement[]) => {
          batches++;
          if (batches === failAt) {
            failAt = -1;
            // Half the batch lands, then the process dies before the checkpoint.
            await s.replaceMany(items.slice(0, items.length / 2));
            throw new Error('killed');
          }
          return s.replaceMany(items);
        },
      }),
    );
    const ref = await w.seed('k', 230, { ageDays: 100 });
    const { plan } = await makePlan(w.ctx);
    const first = await applyPlan(w.ctx, plan);
    expect(first.outcomes.find((o) => o.type === 'rewrap')?.status).toBe('failed');
    const idx = plan.actions.findIndex((a) => a.type === 'rewrap');
    const job = await w.state.getRewrapJob(rewrapJobId(plan.id, idx, 'app'));
    expect(job?.cursor).not.toBeNull();
    expect(job?.status).toBe('running');
    // Old version still enabled: retirement never runs ahead of the re-wrap.
    expect((await w.local.getKey(parseKeyRef(ref))).versions[0]?.state).toBe('enabled');
    const second = await applyPlan(w.ctx, plan);
    expect(second.status).toBe('completed');
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 230 });
    expect((await w.local.getKey(parseKeyRef(ref))).versions[0]?.state).toBe('disabled');
    expect(await lostDeks(w)).toEqual([]);
  });

  it('an application write during re-wrap wins the compare-and-swap and is kept', async () => {
    let raced = false;
    w = await testWorkspace(undefined, undefined, (s) =>
      proxy(s, {
        replaceMany: async (items: DekReplacement[]) => {
          if (!raced) {
            raced = true;
            // The application replaces DEK items[0] with a new one, wrapped under the new primary.
            const target = (await s.get(items[0]!.id))!;
            const pt = randomBytes(32);
            w!.plaintexts.set(target.id, Buffer.from(pt));
            const enc = await w!.local.wrap(parseKeyRef(target.keyRef), pt, target.context);
            expect(await s.replace(target.id, enc.ciphertext, enc.version, target.wrapped)).toBe(true);
          }
          return s.replaceMany(items);
        },
      }),
    );
    const ref = await w.seed('k', 20, { ageDays: 100 });
    const { plan } = await makePlan(w.ctx);
    const report = await applyPlan(w.ctx, plan);
    expect(report.status).toBe('completed');
    const rw = report.outcomes.find((o) => o.type === 'rewrap')!;
    expect(rw.result).toMatchObject({ rewrapped: 19, conflicts: 1, failed: 0 });
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 20 });
    // The application's DEK survived: it unwraps to the application's new plaintext.
    expect(await lostDeks(w)).toEqual([]);
  });

  it('a corrupted DEK is reported and skipped; its version stays enabled; other DEKs move', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 30, { ageDays: 100 });
    const victim = (await w.store.get('k-000007'))!;
    const bad = Buffer.from(victim.wrapped);
    bad[bad.length - 1]! ^= 0xff;
    expect(await w.store.replace(victim.id, bad, victim.version, victim.wrapped)).toBe(true);
    w.plaintexts.delete(victim.id);
    const { plan } = await makePlan(w.ctx);
    const report = await applyPlan(w.ctx, plan);
    expect(report.status).toBe('partial');
    const rw = report.outcomes.find((o) => o.type === 'rewrap')!;
    expect(rw).toMatchObject({ status: 'failed', result: { rewrapped: 29, failed: 1 } });
    expect(report.outcomes.find((o) => o.type === 'disable_version')?.status).toBe('skipped');
    expect(await w.store.countByVersion(ref)).toEqual({ '1': 1, '2': 29 });
    expect((await w.local.getKey(parseKeyRef(ref))).versions[0]?.state).toBe('enabled');
    const idx = plan.actions.findIndex((a) => a.type === 'rewrap');
    const job = await w.state.getRewrapJob(rewrapJobId(plan.id, idx, 'app'));
    expect(job?.failures).toEqual([{ id: 'k-000007', error: expect.stringMatching(/./) }]);
    expect(await lostDeks(w)).toEqual([]);
  });

  it('a lease held by another process skips that key and leaves it untouched', async () => {
    w = await testWorkspace();
    const ref = await w.seed('k', 5, { ageDays: 100 });
    expect(await w.state.acquireLease(`key:${ref}`, 'someone-else', 60_000, w.clock.now().getTime())).toBe(
      true,
    );
    const { plan } = await makePlan(w.ctx);
    const report = await applyPlan(w.ctx, plan);
    expect(report.outcomes[0]).toMatchObject({ type: 'rotate', status: 'skipped' });
    expect((await w.local.getKey(parseKeyRef(ref))).versions).toHaveLength(1);
  });
});

/** A shallow proxy overriding some methods, forwarding the rest (bound to the target). */
function proxy<T extends object>(target: T, overrides: Partial<Record<keyof T, unknown>>): T {
  return new Proxy(target, {
    get(t, prop, recv) {
      if (prop in overrides) return overrides[prop as keyof T];
      const v = Reflect.get(t, prop, recv);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}
