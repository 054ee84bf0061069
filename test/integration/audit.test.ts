import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, verifyAuditChain } from '../../shared/core/audit/auditLog.js';
import { ManualClock } from '../../shared/core/ports/Clock.js';
import { SqliteStateStore } from '../../shared/stores/sqlite/SqliteStateStore.js';

let state: SqliteStateStore;
let log: AuditLog;

beforeEach(async () => {
  state = SqliteStateStore.open(':memory:');
  const clock = new ManualClock('2026-11-28T00:00:00Z');
  log = new AuditLog(state, clock);
  for (let i = 1; i <= 10; i++) {
    clock.advance(1000);
    await log.append({
      actor: 'op',
      action: 'key.rotated',
      target: `local://k${i}`,
      details: { primary: String(i) },
    });
  }
});
afterEach(async () => state.close?.());

/** An attacker with write access to the file: drops the append-only triggers first. */
const exec = (sql: string) =>
  state.db.exec(`DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; ${sql}`);

describe('hash-chained audit log', () => {
  it('verifies an untouched chain', async () => {
    expect(await verifyAuditChain(state, 3)).toMatchObject({ ok: true, records: 10 });
  });

  it('the SQLite store itself refuses updates and deletes of audit rows', () => {
    expect(() => state.db.exec('UPDATE audit SET actor = 1 WHERE seq = 1')).toThrow('append-only');
    expect(() => state.db.exec('DELETE FROM audit WHERE seq = 1')).toThrow('append-only');
  });

  it('names the record whose contents were edited', async () => {
    exec(`UPDATE audit SET details = '{"primary":"99"}' WHERE seq = 4`);
    expect(await verifyAuditChain(state)).toMatchObject({
      ok: false,
      firstBad: { seq: 4, reason: expect.stringContaining('was modified') },
    });
  });

  it('detects an edit that recomputes the record hash: the next record no longer links', async () => {
    const [r] = await state.auditRead(4, 1);
    const { hashRecord } = await import('../../shared/core/audit/auditLog.js');
    const forged = { ...r!, actor: 'mallory' };
    const { hash: _h, ...rest } = forged;
    exec(`UPDATE audit SET actor = 'mallory', hash = '${hashRecord(rest)}' WHERE seq = 4`);
    expect(await verifyAuditChain(state)).toMatchObject({
      ok: false,
      firstBad: { seq: 5, reason: expect.stringContaining('does not link') },
    });
  });

  it('names a deleted record', async () => {
    exec('DELETE FROM audit WHERE seq = 6');
    expect(await verifyAuditChain(state)).toMatchObject({
      ok: false,
      firstBad: { seq: 6, reason: expect.stringContaining('missing') },
    });
  });

  it('detects reordering', async () => {
    exec(
      'UPDATE audit SET seq = 1000 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 1000',
    );
    expect((await verifyAuditChain(state)).firstBad?.seq).toBe(2);
  });

  it('detects truncation of the head only against a remembered head hash', async () => {
    const before = await verifyAuditChain(state);
    exec('DELETE FROM audit WHERE seq = 10');
    const after = await verifyAuditChain(state);
    expect(after.ok).toBe(true);
    expect(after.headHash).not.toBe(before.headHash);
  });

  it('concurrent writers on one chain never fork it', async () => {
    const clock = new ManualClock('2026-11-29T00:00:00Z');
    const a = new AuditLog(state, clock);
    const b = new AuditLog(state, clock);
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).append({ actor: `w${i % 2}`, action: 'x' })),
    );
    expect(await verifyAuditChain(state)).toMatchObject({ ok: true, records: 50 });
  });
});
