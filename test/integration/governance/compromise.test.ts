import { afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { NotFoundError, ProviderError } from '../../../shared/core/errors.js';
import type { DekStore } from '../../../shared/core/ports/DekStore.js';
import type { RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import type { KeyProvider } from '../../../shared/core/ports/KeyProvider.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import { approve, getApproval } from '../../../shared/core/usecases/approvals.js';
import {
  getIncident,
  handleCompromise,
  incidentIdFor,
  listIncidents,
} from '../../../shared/core/usecases/handleCompromise.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';
import { DAY, lostDeks, type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/**
 * Compromise response on the embedded default: a real local KMS, real SQLite DEK and state
 * stores. Each test seeds DEKs under two versions, reports the primary (or an older version)
 * compromised, and checks what happened to keys, DEKs, records and the audit log.
 */
const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D, window: "Sat 02:00-03:00 UTC" }
    rewrap: { stores: [app], verify: sample(1%), batchSize: 40, rate: 5/s }
`;

let w: TestWorkspace;
afterEach(async () => {
  await w?.close();
});

/** Key `k` with `old` DEKs under version 1 and `recent` under version 2 (the primary). */
async function twoVersions(old: number, recent: number, wrap?: (p: KeyProvider) => KeyProvider) {
  w = await testWorkspace(YAML, wrap);
  const ref = await w.seed('k', old, { ageDays: 100 });
  await w.local.rotate(parseKeyRef(ref));
  await w.seed('k', recent, { prefix: 'new' });
  return ref;
}

describe('handleCompromise', () => {
  it('rotates, moves only the compromised version’s DEKs, disables it and reports the timeline', async () => {
    const ref = await twoVersions(30, 120);
    const events: RekeyEvent[] = [];
    w.ctx.events = { publish: async (e) => void events.push(...e) };
    const report = await handleCompromise(w.ctx, {
      keyRef: ref,
      reason: 'primary material found in a crash dump',
      actor: 'sec-oncall',
      reportedAt: new Date(w.clock.now().getTime() - 60_000).toISOString(),
    });
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({
      id: incidentIdFor(ref, '2'),
      version: '2',
      status: 'contained',
      previousPrimary: '2',
      newVersion: '3',
      rotation: { from: '2', to: '3', how: 'rotated' },
      stores: { app: { rewrapped: 120, verified: 120, failed: 0 } },
      deksMoved: 120,
      remainingOlderDeks: 30,
      published: true,
    });
    expect(report.timeToContainMs).toBeGreaterThanOrEqual(60_000);
    expect(report.timeline.map((t) => t.step)).toEqual([
      'reported',
      'opened',
      'marked',
      'rotated',
      'rewrapped',
      'disabled',
      'contained',
      'published',
    ]);
    const key = await w.local.getKey(parseKeyRef(ref));
    expect(key.versions.map((v) => [v.id, v.state])).toEqual([
      ['1', 'enabled'],
      ['2', 'disabled'],
      ['3', 'enabled'],
    ]);
    // Version 1's DEKs were left to the normal plan; none was lost.
    expect(await w.store.countByVersion(ref)).toEqual({ '1': 30, '3': 120 });
    expect(await lostDeks(w)).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(['KeyRotated', 'VersionRetired', 'CompromiseContained']);
    expect(events[0]!.detail).toMatchObject({ reason: 'compromise' });
    expect(events[2]!.detail).toMatchObject({ compromisedVersion: '2', newVersion: '3', rewrapped: 120 });
    expect(await getIncident(w.ctx, report.id)).toEqual(report);
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
  });

  it('an older version: no rotation, its DEKs move to the primary, the primary’s stay where they are', async () => {
    const ref = await twoVersions(30, 50);
    const r = await handleCompromise(w.ctx, {
      keyRef: ref,
      version: '1',
      reason: 'old backup leaked',
      actor: 'sec',
    });
    expect(r).toMatchObject({
      status: 'contained',
      rotation: { how: 'not_needed' },
      newVersion: '2',
      stores: { app: { rewrapped: 30, failed: 0 } },
      remainingOlderDeks: 0,
    });
    expect(r.timeline.map((t) => t.step)).toContain('rotation_not_needed');
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 80 });
    const key = await w.local.getKey(parseKeyRef(ref));
    expect(key.versions.map((v) => [v.id, v.state])).toEqual([
      ['1', 'disabled'],
      ['2', 'enabled'],
    ]);
    // Running it again changes nothing and returns the same report.
    const again = await handleCompromise(w.ctx, {
      keyRef: ref,
      version: '1',
      reason: 'old backup leaked',
      actor: 'sec',
    });
    expect(again.id).toBe(r.id);
    expect(again.timeline).toEqual(r.timeline);
    expect((await w.local.getKey(parseKeyRef(ref))).versions).toHaveLength(2);
  });

  it('a crash right after the rotation: the re-run finds it done and never rotates again', async () => {
    let rotations = 0;
    let die = true;
    const ref = await twoVersions(10, 40, (p) =>
      Object.assign(Object.create(p) as KeyProvider, {
        rotate: async (r: Parameters<KeyProvider['rotate']>[0]) => {
          rotations++;
          const v = await p.rotate(r);
          if (die) {
            die = false;
            throw new Error('process died after the provider rotated');
          }
          return v;
        },
      }),
    );
    const first = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(first).toMatchObject({
      status: 'open',
      failures: [{ error: 'process died after the provider rotated' }],
    });
    expect(first.rotation).toBeUndefined();
    const second = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(second).toMatchObject({
      id: first.id,
      status: 'contained',
      rotation: { how: 'found_done', from: '2', to: '3' },
      runs: 2,
      deksMoved: 40,
    });
    expect(rotations).toBe(1);
    expect((await w.local.getKey(parseKeyRef(ref))).versions.map((v) => v.id)).toEqual(['1', '2', '3']);
    expect(await lostDeks(w)).toEqual([]);
  });

  it('a crash in the middle of the re-wrap resumes from the checkpoint on the next run', async () => {
    let writes = 0;
    let crash = true;
    w = await testWorkspace(YAML, undefined, (s) =>
      Object.assign(Object.create(s) as DekStore, {
        replaceMany: async (items: Parameters<DekStore['replaceMany']>[0]) => {
          if (crash && ++writes === 3) {
            crash = false;
            throw new Error('process died mid-batch');
          }
          return s.replaceMany(items);
        },
      }),
    );
    const ref = await w.seed('k', 200);
    const first = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(first.status).toBe('open');
    const moved = (await w.store.countByVersion(ref))['2'] ?? 0;
    expect(moved).toBe(80);
    const second = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(second).toMatchObject({ status: 'contained', stores: { app: { rewrapped: 200, failed: 0 } } });
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 200 });
    expect(await lostDeks(w)).toEqual([]);
  });

  it('throttling slows it down but does not stop it', async () => {
    let calls = 0;
    const ref = await twoVersions(0, 150, (p) =>
      Object.assign(Object.create(p) as KeyProvider, {
        unwrap: async (...a: Parameters<KeyProvider['unwrap']>) => {
          if (++calls === 300 || calls === 301)
            throw new ProviderError('local', 'ThrottlingException', 'slow down', {
              retryable: true,
              throttled: true,
            });
          return p.unwrap(...a);
        },
      }),
    );
    const r = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(r).toMatchObject({ status: 'contained', deksMoved: 150 });
    const job = await w.state.getRewrapJob(r.stores.app!.jobId!);
    expect(job!.counts.throttled).toBeGreaterThan(0);
    expect(await lostDeks(w)).toEqual([]);
  });

  it('a DEK that cannot be re-wrapped keeps the version enabled until it is dealt with', async () => {
    const ref = await twoVersions(0, 30);
    const bad = (await w.store.scan({ keyRef: ref }, null, 1)).items[0]!;
    const broken = new Uint8Array(bad.wrapped);
    broken[broken.length - 1]! ^= 0xff;
    await w.store.replace(bad.id, broken, bad.version, bad.wrapped);
    const r = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(r.status).toBe('open');
    expect(r.failures[0]!.error).toMatch(
      /1 DEK\(s\) in app could not be re-wrapped .*they stay under version 2, which therefore stays enabled/,
    );
    expect((await w.local.getKey(parseKeyRef(ref))).versions[1]!.state).toBe('enabled');
    // The application restores the row (from a backup); the next run finishes.
    await w.store.replace(bad.id, bad.wrapped, bad.version, broken);
    const done = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(done).toMatchObject({ status: 'contained', deksMoved: 30 });
  });

  it('cleans a store no policy names when it holds DEKs under the compromised version', async () => {
    const ref = await twoVersions(5, 20);
    const legacy = SqliteDekStore.open({
      id: 'legacy',
      path: ':memory:',
      table: 'data_keys',
      columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
      create: true,
    });
    const key = parseKeyRef(ref);
    const w2 = await w.local.wrap(key, Buffer.alloc(32, 9), { id: 'legacy-1' });
    await legacy.insertMany([
      {
        id: 'legacy-1',
        keyRef: ref,
        version: w2.version,
        wrapped: w2.ciphertext,
        context: { id: 'legacy-1' },
      },
    ]);
    w.ctx.stores.set('legacy', legacy);
    const r = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(r).toMatchObject({
      status: 'contained',
      stores: { app: { rewrapped: 20 }, legacy: { rewrapped: 1 } },
    });
    expect(r.timeline.find((t) => t.detail.startsWith('legacy:'))!.detail).toContain(
      'no policy names this store',
    );
    await legacy.close?.();
  });

  it('refuses unknown keys and versions and a destroyed version, audited, leaving no incident', async () => {
    const ref = await twoVersions(1, 1);
    await expect(
      handleCompromise(w.ctx, { keyRef: 'local://nope', reason: 'x', actor: 'sec' }),
    ).rejects.toThrow(NotFoundError);
    await expect(
      handleCompromise(w.ctx, { keyRef: ref, version: '9', reason: 'x', actor: 'sec' }),
    ).rejects.toThrow(`key ${ref} has no version 9 (versions: 1, 2)`);
    await expect(handleCompromise(w.ctx, { keyRef: ref, reason: ' ', actor: 'sec' })).rejects.toThrow(
      'a compromise needs a reason',
    );
    await expect(
      handleCompromise(w.ctx, { keyRef: ref, reason: 'x', actor: 'sec', incidentId: 'no spaces allowed' }),
    ).rejects.toThrow('incident id "no spaces allowed" must be');
    expect(await w.state.listRecords('incident', { limit: 10 })).toEqual([]);
    expect(await w.state.listRecords('compromised', { limit: 10 })).toEqual([]);
    const refusals = (await w.state.auditRead(1, 100)).filter((r) => r.action === 'incident.refused');
    expect(refusals.map((r) => r.target)).toEqual(['local://nope', ref]);
  });

  it('waits for a key lease held by another live process, with the compromise already on record', async () => {
    const ref = await twoVersions(0, 10);
    expect(await w.state.acquireLease(`key:${ref}`, 'other-host:1:x', 60_000, w.clock.now().getTime())).toBe(
      true,
    );
    const busy = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(busy?.message).toMatch(
      /another rekey process holds the lease on local:\/\/k; run it again to continue/,
    );
    const open = (await listIncidents(w.ctx))[0]!;
    expect(open).toMatchObject({ status: 'open', failures: [{ step: 'lease' }] });
    expect(await w.state.getRecord('compromised', `${ref}#2`)).not.toBeNull();
    await w.state.releaseLease(`key:${ref}`, 'other-host:1:x');
    expect((await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' })).status).toBe(
      'contained',
    );
  });

  it('the next plan sees the compromised version and re-wraps the older DEKs', async () => {
    const ref = await twoVersions(5, 10);
    await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    const { plan, inventory } = await makePlan(w.ctx);
    expect(inventory.keys[0]!.versions.map((v) => [v.id, v.compromised ?? false])).toEqual([
      ['1', false],
      ['2', true],
      ['3', false],
    ]);
    expect(plan.findings.filter((f) => f.kind === 'compromised_version').map((f) => f.message)).toEqual([
      'version 2 is marked compromised and is disabled',
    ]);
    const report = await applyPlan(w.ctx, plan);
    expect(report.totals.rewrapped).toBe(5);
    expect(await w.store.countByVersion(ref)).toEqual({ '3': 15 });
    expect(w.clock.now().getTime()).toBeGreaterThan(DAY);
  });

  it('requests destruction behind approvals when the policy asks, and schedules it once approved', async () => {
    const y = `${YAML.replace('policies:', 'approvals:\n  approvers: [alice, bob, sec]\n  quorum: 2\npolicies:')}    onCompromise: { destroy: true }\n    retire: { destroyDelay: P10D }\n`;
    w = await testWorkspace(y);
    const ref = await w.seed('k', 10);
    const r = await handleCompromise(w.ctx, { keyRef: ref, reason: 'leak', actor: 'sec' });
    expect(r).toMatchObject({ status: 'contained', destroy: { status: 'awaiting_approval' } });
    const id = r.destroy!.requestId!;
    expect(await getApproval(w.ctx, id)).toMatchObject({
      action: 'destroy',
      subject: { version: '1' },
      requestedBy: 'sec',
    });
    await expect(approve(w.ctx, id, { by: 'sec' })).rejects.toThrow('sec made request');
    await approve(w.ctx, id, { by: 'alice' });
    await approve(w.ctx, id, { by: 'bob' });
    const done = await handleCompromise(w.ctx, { keyRef: ref, version: '1', reason: 'leak', actor: 'sec' });
    expect(done.destroy).toMatchObject({ status: 'scheduled', requestId: id });
    const v1 = (await w.local.getKey(parseKeyRef(ref))).versions[0]!;
    expect(v1).toMatchObject({ state: 'destroy_scheduled' });
    expect(Date.parse(v1.destroyAt!) - w.clock.now().getTime()).toBe(10 * DAY);
    expect((await getApproval(w.ctx, id)).status).toBe('used');
    expect(done.timeline.at(-1)!.detail).toContain('approved by alice, bob');
  });
});
