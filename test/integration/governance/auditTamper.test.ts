import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashRecord, verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { CheckpointingAuditLog, verifyAuditWithCheckpoints } from '../../../shared/core/audit/checkpoints.js';
import type { AuditRecord } from '../../../shared/core/ports/StateStore.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import {
  approve,
  gateAction,
  getApproval,
  vouchedApprovals,
} from '../../../shared/core/usecases/approvals.js';
import { handleCompromise } from '../../../shared/core/usecases/handleCompromise.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { HmacChainSigner } from '../../../shared/telemetry/siem/hmacSigner.js';
import { type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/**
 * Tampering with the audit log of a workspace that handled an incident and an approval, by
 * someone with write access to the state database (who drops the append-only triggers first).
 * Adds to test/integration/audit/tamper.test.ts the cases that involve governance records:
 * the first record, a checkpoint, a forged tail, and the records that vouch for approvals.
 */
const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
approvals:
  approvers: [alice, bob, svc]
  quorum: 2
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, batchSize: 50 }
    retire: { disableAfter: P0D, destroyAfter: P0D, approvals: 2 }
`;

let w: TestWorkspace;
let signer: HmacChainSigner;
let requestId: string;

beforeEach(async () => {
  w = await testWorkspace(YAML);
  signer = new HmacChainSigner(Buffer.alloc(32, 4));
  w.ctx.audit = new CheckpointingAuditLog(w.state, w.clock, signer, 10, 'auditor');
  w.ctx.actor = 'svc';
  const ref = await w.seed('k', 20, { ageDays: 100 });
  await w.seed('other', 10);
  await handleCompromise(w.ctx, { keyRef: 'local://other', reason: 'leak', actor: 'sec' });
  const { plan } = await makePlan(w.ctx);
  const report = await applyPlan(w.ctx, plan);
  requestId = report.outcomes.find((o) => o.type === 'schedule_destroy' && o.keyRef === ref)!.result!
    .requestId as string;
  await approve(w.ctx, requestId, { by: 'alice' });
  await approve(w.ctx, requestId, { by: 'bob' });
});
afterEach(async () => {
  await w.close();
});

const exec = (sql: string) =>
  w.state.db.exec(`DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; ${sql}`);
const all = (): Promise<AuditRecord[]> => w.state.auditRead(1, 100_000);
const seqOf = async (action: string, by?: string) =>
  (await all()).find((r) => r.action === action && (by === undefined || r.actor === by))!.seq;

/** Rewrites record `from` and recomputes every later hash, so the plain chain verifies again. */
async function rewriteFrom(from: number, edit: (r: AuditRecord) => AuditRecord): Promise<void> {
  let prev: string | undefined;
  const stmt = w.state.db.prepare(
    'UPDATE audit SET actor = ?, action = ?, target = ?, details = ?, prev_hash = ?, hash = ? WHERE seq = ?',
  );
  exec('');
  for (const r0 of await all()) {
    if (r0.seq < from) {
      prev = r0.hash;
      continue;
    }
    const r = r0.seq === from ? edit(r0) : r0;
    const { hash: _h, ...rest } = { ...r, prevHash: prev ?? r.prevHash };
    const rec = { ...rest, hash: hashRecord(rest) };
    stmt.run(rec.actor, rec.action, rec.target, JSON.stringify(rec.details), rec.prevHash, rec.hash, rec.seq);
    prev = rec.hash;
  }
}

describe('audit tampering around incidents and approvals', () => {
  it('the untouched log verifies and the approval is vouched for', async () => {
    expect((await verifyAuditWithCheckpoints(w.state, signer)).ok).toBe(true);
    const actions = (await all()).map((r) => r.action);
    for (const a of [
      'incident.opened',
      'version.compromised',
      'incident.contained',
      'approval.granted',
      'audit.checkpoint',
    ])
      expect(actions).toContain(a);
    expect((await vouchedApprovals(w.ctx, await getApproval(w.ctx, requestId))).valid).toHaveLength(2);
  });

  it('deleting the very first record is named', async () => {
    exec('DELETE FROM audit WHERE seq = 1');
    expect((await verifyAuditChain(w.state)).firstBad).toEqual({
      seq: 1,
      reason: 'record 1 is missing (next is 2)',
    });
  });

  it('deleting a checkpoint record is named', async () => {
    const cp = await seqOf('audit.checkpoint');
    exec(`DELETE FROM audit WHERE seq = ${cp}`);
    const v = await verifyAuditWithCheckpoints(w.state, signer);
    expect(v.problems[0]).toMatchObject({ kind: 'chain', seq: cp });
  });

  it('editing the record of a compromise is caught by the checkpoint after it, even with hashes recomputed', async () => {
    const seq = await seqOf('version.compromised');
    await rewriteFrom(seq, (r) => ({ ...r, details: { ...r.details, version: '99' } }));
    const v = await verifyAuditWithCheckpoints(w.state, signer);
    expect(v.chain.ok).toBe(true);
    expect(v.ok).toBe(false);
    expect(v.problems[0]!.kind).toBe('head_mismatch');
  });

  it('an approval whose vouching record was rewritten no longer counts, and the destroy stays refused', async () => {
    const seq = await seqOf('approval.granted', 'bob');
    await rewriteFrom(seq, (r) => ({ ...r, details: { ...r.details, comment: 'edited later' } }));
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
    const { valid, invalid } = await vouchedApprovals(w.ctx, await getApproval(w.ctx, requestId));
    expect(valid.map((g) => g.by)).toEqual(['alice']);
    expect(invalid).toEqual([{ by: 'bob', why: `audit record ${seq} does not vouch for it` }]);
    const gate = await gateAction(w.ctx, {
      action: 'destroy',
      target: (await getApproval(w.ctx, requestId)).target,
      subject: { version: '1' },
      reason: 'test',
      policy: 'default',
    });
    expect(gate).toMatchObject({ allowed: false });
    expect(gate.allowed ? '' : gate.message).toMatch(
      /only 1 of its approvals are vouched for by the audit log/,
    );
  });

  it('an approval whose vouching record was deleted no longer counts', async () => {
    const seq = await seqOf('approval.granted', 'alice');
    exec(`DELETE FROM audit WHERE seq = ${seq}`);
    const { invalid } = await vouchedApprovals(w.ctx, await getApproval(w.ctx, requestId));
    expect(invalid).toEqual([{ by: 'alice', why: `audit record ${seq} is missing` }]);
  });

  it('a forged record appended after the last checkpoint is reported as unsigned, and a later checkpoint cannot vouch for a rewritten past', async () => {
    const tail = (await all()).at(-1)!;
    const forged = {
      seq: tail.seq + 1,
      ts: tail.ts,
      actor: 'alice',
      action: 'approval.granted',
      target: tail.target,
      details: { requestId: 'apr-forged-1' },
      prevHash: tail.hash,
    };
    expect(await w.state.auditAppend({ ...forged, hash: hashRecord(forged) })).toBe(true);
    const v = await verifyAuditWithCheckpoints(w.state, signer);
    expect(v.ok).toBe(true);
    expect(v.unsigned).toMatchObject({ toSeq: tail.seq + 1 });
  });

  it('a truncated chain verifies on its own and is caught against the last checkpoint kept elsewhere', async () => {
    const last = (await all()).at(-1)!;
    const cut = await seqOf('approval.granted', 'alice');
    exec(`DELETE FROM audit WHERE seq >= ${cut}`);
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
    const v = await verifyAuditWithCheckpoints(w.state, signer, {
      lastKnown: { seq: last.seq, hash: last.hash },
    });
    expect(v.problems.map((p) => p.kind)).toContain('truncated');
    // The approvals written after the cut are no longer vouched for.
    expect((await vouchedApprovals(w.ctx, await getApproval(w.ctx, requestId))).valid).toEqual([]);
  });
});
