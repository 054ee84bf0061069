import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CheckpointingAuditLog, parseKnownCheckpoint } from '../../../shared/core/audit/checkpoints.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { complianceReport } from '../../../shared/core/report/gather.js';
import { toHtml } from '../../../shared/core/report/html.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { HmacChainSigner } from '../../../shared/telemetry/siem/hmacSigner.js';
import { DAY, NOW, type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/** A full cycle on the embedded default, audited with checkpoints, then reported on. */
let w: TestWorkspace;
const signer = new HmacChainSigner(Buffer.alloc(32, 11));
const period = {
  from: new Date(NOW.getTime() - 30 * DAY).toISOString(),
  to: new Date(NOW.getTime() + DAY).toISOString(),
};

beforeEach(async () => {
  w = await testWorkspace();
  w.ctx.audit = new CheckpointingAuditLog(w.state, w.clock, signer, 3);
});
afterEach(async () => w.close());

describe('compliance report after a real cycle', () => {
  it('shows the overdue key before, and the rotation, re-wrap and a verified audit trail after', async () => {
    const ref = await w.seed('orders', 20, { ageDays: 120 });
    const before = await complianceReport(w.ctx, { period, signer });
    expect(before.keys[0]).toMatchObject({
      ref,
      rotation: 'overdue',
      compliant: false,
      rewrap: { status: 'complete' },
    });

    const { plan } = await makePlan(w.ctx);
    await applyPlan(w.ctx, plan);
    const after = await complianceReport(w.ctx, { period, signer, inventory: 'fresh' });
    const k = after.keys[0]!;
    expect(k).toMatchObject({ rotation: 'ok', ageDays: 0, compliant: true });
    expect(k.rewrap).toEqual({ status: 'complete', total: 20, onPrimary: 20, pending: 0 });
    expect(k.rotationsInPeriod).toHaveLength(1);
    expect(k.versions.find((v) => !v.primary)).toMatchObject({ state: 'disabled', deks: 0 });
    expect(after.audit.integrity).toMatchObject({ ok: true, problems: [] });
    expect(after.audit.integrity!.checkpoints).toBeGreaterThan(0);
    expect(after.audit.actions['key.rotated']).toBe(1);
    expect(toHtml(after)).toContain('verified');
  });

  it('reports a tampered audit trail as failed', async () => {
    await w.seed('orders', 2, { ageDays: 120 });
    const { plan } = await makePlan(w.ctx);
    await applyPlan(w.ctx, plan);
    w.state.db.exec(
      `DROP TRIGGER IF EXISTS audit_no_update; UPDATE audit SET actor = 'mallory' WHERE seq = 2`,
    );
    const r = await complianceReport(w.ctx, { period, signer, inventory: 'latest' });
    expect(r.audit.integrity!.ok).toBe(false);
    expect(r.audit.integrity!.problems[0]).toContain('record 2 was modified');
  });

  it('parses a remembered checkpoint', () => {
    expect(parseKnownCheckpoint(`12:${'a'.repeat(64)}`)).toEqual({ seq: 12, hash: 'a'.repeat(64) });
    expect(() => parseKnownCheckpoint('12:zz')).toThrow(ValidationError);
  });
});
