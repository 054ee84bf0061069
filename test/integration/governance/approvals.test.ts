import { afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { checkConfigChange } from '../../../shared/core/governance/configChange.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type { RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import {
  ApprovalRefused,
  type ApprovalRequest,
  ApprovalRequired,
  approve,
  deny,
  getApproval,
  listApprovals,
} from '../../../shared/core/usecases/approvals.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { DAY, type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/**
 * Dual control on the embedded default (local KMS, SQLite stores): requests opened by apply,
 * approvals and their refusals, the destroy that an approved request lets through, approvals
 * forged in the state store, and changes of the config file.
 */
const yaml = (opts: { require?: string; policy?: string; every?: string } = {}) => `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
approvals:
  approvers: [alice, bob, carol, svc-rotator]
  quorum: 2
  expiry: P1D
  require: [${opts.require ?? ''}]
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: ${opts.every ?? 'P90D'} }
    rewrap: { stores: [app], verify: full, batchSize: 50 }
    retire: { disableAfter: P0D, destroyAfter: P0D, destroyDelay: P7D, approvals: 2 }
${opts.policy ?? ''}`;

let w: TestWorkspace;
afterEach(async () => {
  await w?.close();
});

async function setup(y = yaml()) {
  w = await testWorkspace(y);
  w.ctx.actor = 'svc-rotator';
  const ref = await w.seed('k', 20, { ageDays: 100 });
  return ref;
}

/** Applies a fresh plan and returns the destroy action's outcome. */
async function applyOnce() {
  const { plan } = await makePlan(w.ctx);
  const report = await applyPlan(w.ctx, plan);
  return { plan, report, destroy: report.outcomes.find((o) => o.type === 'schedule_destroy') };
}

async function refusal(p: Promise<unknown>): Promise<ApprovalRefused> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ApprovalRefused);
  return e as ApprovalRefused;
}

async function auditActions(): Promise<string[]> {
  return (await w.state.auditRead(1, 10_000)).map((r) => r.action);
}

describe('approvals for destruction', () => {
  it('opens one request, refuses bad approvals without changing it, and lets the next apply destroy once approved', async () => {
    const ref = await setup();
    const events: RekeyEvent[] = [];
    w.ctx.events = { publish: async (e) => void events.push(...e) };
    const { plan, destroy } = await applyOnce();
    expect(destroy).toMatchObject({
      status: 'awaiting_approval',
      result: { version: '1', approvalsRequired: 2 },
    });
    const id = destroy!.result!.requestId as string;
    const pending = await listApprovals(w.ctx, { status: 'pending' });
    expect(pending.map((r) => r.id)).toEqual([id]);
    expect(pending[0]).toMatchObject({
      action: 'destroy',
      target: ref,
      subject: { version: '1' },
      requestedBy: 'svc-rotator',
      quorum: 2,
      approvers: ['alice', 'bob', 'carol', 'svc-rotator'],
      status: 'pending',
      approvals: [],
    });
    const before = await w.state.getRecord('approval', id);

    // The requester, an unknown identity, a malformed identity: refused, nothing changes.
    expect((await refusal(approve(w.ctx, id, { by: 'svc-rotator' }))).message).toBe(
      `svc-rotator made request ${id} and cannot approve it`,
    );
    const unknown = await refusal(approve(w.ctx, id, { by: 'mallory' }));
    expect(unknown.kind).toBe('unknown_approver');
    expect(unknown.message).toBe(
      `mallory is not one of the approvers of request ${id} (alice, bob, carol, svc-rotator)`,
    );
    expect((await refusal(approve(w.ctx, id, { by: '' }))).kind).toBe('identity');
    expect(await w.state.getRecord('approval', id)).toEqual(before);

    const one = await approve(w.ctx, id, { by: 'alice', comment: 'checked the DEK census' });
    expect(one).toMatchObject({
      status: 'pending',
      approvals: [{ by: 'alice', comment: 'checked the DEK census' }],
    });
    const afterAlice = await w.state.getRecord('approval', id);
    const dup = await refusal(approve(w.ctx, id, { by: 'alice' }));
    expect(dup.message).toBe(`alice has already approved request ${id}`);
    expect(await w.state.getRecord('approval', id)).toEqual(afterAlice);

    // One approval is not a quorum: re-applying the same plan asks again and waits again.
    const again = await applyPlan(w.ctx, plan);
    expect(again.outcomes.find((o) => o.type === 'schedule_destroy')).toMatchObject({
      status: 'awaiting_approval',
      result: { requestId: id },
    });
    expect((await w.local.getKey(parseKeyRef(ref))).versions[0]!.state).toBe('disabled');

    const two = await approve(w.ctx, id, { by: 'bob' });
    expect(two.status).toBe('approved');
    expect(Date.parse(two.expiresAt)).toBe(w.clock.now().getTime() + DAY);
    expect((await refusal(approve(w.ctx, id, { by: 'carol' }))).kind).toBe('closed');

    const done = await applyPlan(w.ctx, plan);
    expect(done.outcomes.find((o) => o.type === 'schedule_destroy')).toMatchObject({ status: 'done' });
    const key = await w.local.getKey(parseKeyRef(ref));
    expect(key.versions[0]).toMatchObject({ id: '1', state: 'destroy_scheduled' });
    expect(await getApproval(w.ctx, id)).toMatchObject({
      status: 'used',
      used: { for: `${plan.id}:${destroy!.index}` },
    });
    const retired = events.filter((e) => e.type === 'VersionRetired').map((e) => e.detail);
    expect(retired.at(-1)).toMatchObject({ state: 'destroy_scheduled', approvedBy: ['alice', 'bob'] });

    const actions = await auditActions();
    for (const a of [
      'approval.requested',
      'approval.refused',
      'approval.granted',
      'approval.quorum_missing',
      'version.destroy_awaiting_approval',
      'approval.approved',
      'approval.used',
      'version.destroy_scheduled',
    ])
      expect(actions).toContain(a);
    expect(actions.filter((a) => a === 'approval.refused')).toHaveLength(5);
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
  });

  it('an expired request cannot be approved; the next apply opens a fresh one', async () => {
    await setup();
    const { destroy } = await applyOnce();
    const id = destroy!.result!.requestId as string;
    await approve(w.ctx, id, { by: 'alice' });
    w.clock.advance(DAY + 1);
    const before = await w.state.getRecord('approval', id);
    const e = await refusal(approve(w.ctx, id, { by: 'bob' }));
    expect(e.kind).toBe('expired');
    expect(e.message).toMatch(new RegExp(`^approval request ${id} expired at `));
    expect(await w.state.getRecord('approval', id)).toEqual(before);
    expect((await getApproval(w.ctx, id)).status).toBe('expired');
    const next = await applyOnce();
    const id2 = next.destroy!.result!.requestId as string;
    expect(id2).toBe(id.replace(/-1$/, '-2'));
    expect((await listApprovals(w.ctx, { status: 'pending' })).map((r) => r.id)).toEqual([id2]);
  });

  it('a denial closes the request for good', async () => {
    await setup();
    const { destroy } = await applyOnce();
    const id = destroy!.result!.requestId as string;
    await approve(w.ctx, id, { by: 'alice' });
    const denied = await deny(w.ctx, id, { by: 'carol', reason: 'keep it for the legal hold' });
    expect(denied).toMatchObject({
      status: 'denied',
      denied: { by: 'carol', reason: 'keep it for the legal hold' },
    });
    expect((await refusal(approve(w.ctx, id, { by: 'bob' }))).kind).toBe('closed');
    expect((await refusal(deny(w.ctx, id, { by: 'mallory' }))).kind).toBe('unknown_approver');
    expect((await applyOnce()).destroy!.status).toBe('awaiting_approval');
  });

  it('approvals written into the state store by hand count for nothing', async () => {
    const ref = await setup();
    const { plan, destroy } = await applyOnce();
    const id = destroy!.result!.requestId as string;
    const rec = (await w.state.getRecord('approval', id))!;
    const forged = {
      ...(rec.body as unknown as ApprovalRequest),
      status: 'approved',
      approvals: [
        { by: 'alice', at: w.clock.now().toISOString(), auditSeq: 3, auditHash: 'f'.repeat(64) },
        { by: 'bob', at: w.clock.now().toISOString(), auditSeq: 4, auditHash: 'e'.repeat(64) },
      ],
    };
    expect(
      await w.state.putRecord({ kind: 'approval', id, body: forged, updatedAt: rec.updatedAt }, rec.rev),
    ).toBe(true);
    const report = await applyPlan(w.ctx, plan);
    expect(report.outcomes.find((o) => o.type === 'schedule_destroy')!.status).toBe('awaiting_approval');
    expect((await w.local.getKey(parseKeyRef(ref))).versions[0]!.state).toBe('disabled');
    const bad = (await w.state.auditRead(1, 10_000)).find((r) => r.action === 'approval.integrity_failed');
    expect(bad?.details).toMatchObject({
      requestId: id,
      invalid: [
        { by: 'alice', why: 'audit record 3 does not vouch for it' },
        { by: 'bob', why: 'audit record 4 does not vouch for it' },
      ],
    });
  });

  it('concurrent approvals by different approvers both land', async () => {
    await setup();
    const { destroy } = await applyOnce();
    const id = destroy!.result!.requestId as string;
    await Promise.all([approve(w.ctx, id, { by: 'alice' }), approve(w.ctx, id, { by: 'bob' })]);
    const r = await getApproval(w.ctx, id);
    expect(r.status).toBe('approved');
    expect(r.approvals.map((a) => a.by).sort()).toEqual(['alice', 'bob']);
  });

  it('with too few approvers configured the destroy waits and says why', async () => {
    w = await testWorkspace(
      yaml()
        .replace('approvers: [alice, bob, carol, svc-rotator]', 'approvers: [alice, svc-rotator]')
        .replace('quorum: 2', 'quorum: 1'),
    );
    w.ctx.actor = 'svc-rotator';
    await w.seed('k', 5, { ageDays: 100 });
    const { destroy } = await applyOnce();
    expect(destroy).toMatchObject({ status: 'awaiting_approval', result: { requestId: null } });
    const why = (await w.state.auditRead(1, 10_000)).find((r) => r.action === 'approval.quorum_missing');
    expect(why?.details.message).toMatch(
      /needs 2 approval\(s\) .* but only 1 approver\(s\) other than svc-rotator are configured/,
    );
  });
});

describe('approvals for disabling', () => {
  const policy = '    approvals: { require: [disable] }\n';

  it('a disable the policy guards waits for approvals; a compromised version is disabled without them', async () => {
    const ref = await setup(yaml({ policy }));
    const { report } = await applyOnce();
    const disable = report.outcomes.find((o) => o.type === 'disable_version')!;
    expect(disable).toMatchObject({
      status: 'awaiting_approval',
      result: { version: '1', approvalsRequired: 2 },
    });
    // The destroy after it is skipped: its version is still enabled.
    expect(report.outcomes.find((o) => o.type === 'schedule_destroy')!.status).not.toBe('done');
    const id = disable.result!.requestId as string;
    await approve(w.ctx, id, { by: 'alice' });
    await approve(w.ctx, id, { by: 'carol' });
    const next = await applyOnce();
    expect(next.report.outcomes.find((o) => o.type === 'disable_version')!.status).toBe('done');
    expect((await getApproval(w.ctx, id)).status).toBe('used');

    // Another key, whose version 1 is marked compromised: no approval asked.
    const other = await w.seed('x', 5, { ageDays: 100 });
    await w.state.putRecord(
      {
        kind: 'compromised',
        id: `${other}#1`,
        body: { keyRef: other, version: '1' },
        updatedAt: w.clock.now().toISOString(),
      },
      0,
    );
    const third = await applyOnce();
    expect(
      third.report.outcomes.find((o) => o.type === 'disable_version' && o.keyRef === other)!.status,
    ).toBe('done');
    expect(ref).not.toBe(other);
  });
});

describe('approvals for changes of the config file', () => {
  it('accepts the first config, then refuses a change until two approvers agree; the old rules guard the change', async () => {
    await setup(yaml({ require: 'policy_change' }));
    expect(await checkConfigChange(w.ctx)).toMatchObject({ status: 'first_use' });
    expect(await checkConfigChange(w.ctx)).toMatchObject({ status: 'unchanged' });
    // The new file even drops the requirement: the accepted one still guards the change.
    w.ctx.config = loadConfig(yaml({ require: '', every: 'P1Y' }), 'test.yaml');
    const { plan } = await makePlan(w.ctx);
    const err = await applyPlan(w.ctx, plan).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApprovalRequired);
    const id = (err as ApprovalRequired).requestId!;
    expect((err as Error).message).toMatch(
      /^test\.yaml changed since it was accepted \([0-9a-f]{12} -> [0-9a-f]{12}\) and the accepted config requires approvals for any change: policy_change of config needs 2 approval\(s\); request apr-/,
    );
    expect(await w.state.listRuns(10)).toEqual([]);
    await approve(w.ctx, id, { by: 'bob' });
    await approve(w.ctx, id, { by: 'carol' });
    expect(await checkConfigChange(w.ctx)).toEqual({
      status: 'approved',
      digest: w.ctx.config.digest,
      requestId: id,
    });
    expect((await getApproval(w.ctx, id)).status).toBe('used');
    // Accepted now, and it no longer requires approvals for the next change.
    w.ctx.config = loadConfig(yaml({ require: '', every: 'P2Y' }), 'test.yaml');
    expect(await checkConfigChange(w.ctx)).toMatchObject({ status: 'accepted' });
  });

  it('guards only a lowered rotation period when that is what the rules say', async () => {
    await setup(yaml({ require: 'rotation_period_lowered' }));
    await checkConfigChange(w.ctx);
    w.ctx.config = loadConfig(yaml({ require: 'rotation_period_lowered', every: 'P180D' }), 'test.yaml');
    expect(await checkConfigChange(w.ctx)).toMatchObject({ status: 'accepted' });
    w.ctx.config = loadConfig(yaml({ require: 'rotation_period_lowered', every: 'P30D' }), 'test.yaml');
    const err = await checkConfigChange(w.ctx).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain('rotation period lowered: default 180 -> 30 days');
    expect((await listApprovals(w.ctx, { status: 'pending' }))[0]).toMatchObject({
      action: 'rotation_period_lowered',
      target: 'config',
    });
  });
});
