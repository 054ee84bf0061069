import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashRecord } from '../../../shared/core/audit/auditLog.js';
import {
  CHECKPOINT_ACTION,
  CheckpointingAuditLog,
  verifyAuditWithCheckpoints,
} from '../../../shared/core/audit/checkpoints.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { AuditRecord } from '../../../shared/core/ports/StateStore.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import { exportAudit, exportAuditToFile } from '../../../shared/telemetry/siem/exportAudit.js';
import { HmacChainSigner } from '../../../shared/telemetry/siem/hmacSigner.js';

/**
 * The audit log on the real SQLite state store, attacked by someone with write access to the
 * database file (who first drops the append-only triggers), checked by verifyAuditWithCheckpoints.
 */
let dir: string;
let state: SqliteStateStore;
let signer: HmacChainSigner;
let clock: ManualClock;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rekey-audit-'));
  state = SqliteStateStore.open(join(dir, 'state.db'));
  clock = new ManualClock('2026-11-28T00:00:00Z');
  signer = new HmacChainSigner(Buffer.alloc(32, 3));
  const log = new CheckpointingAuditLog(state, clock, signer, 5, 'auditor');
  const actions = ['plan.created', 'apply.started', 'key.rotated', 'rewrap.completed', 'version.disabled'];
  for (let i = 0; i < 20; i++) {
    clock.advance(60_000);
    await log.append({
      actor: 'svc-rotator',
      action: actions[i % actions.length]!,
      target: `local://k${i % 3}`,
      details: { planId: 'plan-1', index: i, version: String(i) },
    });
  }
  // 20 records + a checkpoint after every 5: checkpoints at 6, 12, 18, 24; 24 records in all.
});
afterEach(async () => {
  await state.close?.();
  rmSync(dir, { recursive: true, force: true });
});

const exec = (sql: string) =>
  state.db.exec(`DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; ${sql}`);

async function all(): Promise<AuditRecord[]> {
  return state.auditRead(1, 1000);
}

/** What an attacker does after editing record `from`: recompute every hash after it so the chain verifies. */
function rehashFrom(
  records: AuditRecord[],
  from: number,
  edit: (r: AuditRecord) => AuditRecord,
): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev: string | undefined;
  for (const r0 of records) {
    if (r0.seq < from) {
      out.push(r0);
      prev = r0.hash;
      continue;
    }
    const r = r0.seq === from ? edit(r0) : r0;
    const { hash: _h, ...rest } = { ...r, prevHash: prev ?? r.prevHash };
    const rec = { ...rest, hash: hashRecord(rest) };
    out.push(rec);
    prev = rec.hash;
  }
  return out;
}

function writeBack(records: AuditRecord[]) {
  const stmt = state.db.prepare(
    'UPDATE audit SET actor = ?, action = ?, target = ?, details = ?, prev_hash = ?, hash = ? WHERE seq = ?',
  );
  exec('');
  for (const r of records)
    stmt.run(r.actor, r.action, r.target, JSON.stringify(r.details), r.prevHash, r.hash, r.seq);
}

describe('tamper detection with signed checkpoints (SQLite state store)', () => {
  it('the untouched log verifies, with 4 checkpoints and nothing unsigned', async () => {
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v).toMatchObject({ ok: true, records: 24, checkpoints: 4, unsigned: null, problems: [] });
    expect((await all()).filter((r) => r.action === CHECKPOINT_ACTION).map((r) => r.seq)).toEqual([
      6, 12, 18, 24,
    ]);
  });

  it('an edit is named by the chain', async () => {
    exec(`UPDATE audit SET actor = 'mallory' WHERE seq = 8`);
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({
      kind: 'chain',
      seq: 8,
      message: expect.stringContaining('was modified'),
    });
  });

  it('a deletion is named', async () => {
    exec('DELETE FROM audit WHERE seq = 9');
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.problems[0]).toMatchObject({
      kind: 'chain',
      seq: 9,
      message: expect.stringContaining('missing'),
    });
  });

  it('a reordering is named', async () => {
    exec(
      'UPDATE audit SET seq = 1000 WHERE seq = 14; UPDATE audit SET seq = 14 WHERE seq = 15; UPDATE audit SET seq = 15 WHERE seq = 1000',
    );
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ kind: 'chain', seq: 14 });
  });

  it('a rewrite that recomputes every later hash passes the chain but fails the checkpoint that covers it', async () => {
    writeBack(
      rehashFrom(await all(), 3, (r) => ({ ...r, actor: 'mallory', details: { ...r.details, index: 99 } })),
    );
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.chain.ok).toBe(true);
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ kind: 'head_mismatch', seq: 6 });
    expect(v.problems[0]!.message).toBe(
      'checkpoint 6 signed record 5 with a different hash: history up to record 5 was rewritten',
    );
    // Every later checkpoint is broken too: none of them is accepted as the last valid one.
    expect(v.problems.map((p) => p.seq)).toEqual([6, 12, 18, 24]);
    expect(v.lastValidCheckpoint).toBeUndefined();
  });

  it('a rewrite that also recomputes the checkpoint heads fails their signatures', async () => {
    const forged = rehashFrom(await all(), 3, (r) => ({ ...r, actor: 'mallory' }));
    let prev = '';
    const withHeads = forged.map((r) => {
      if (r.action !== CHECKPOINT_ACTION) {
        prev = r.hash;
        return r;
      }
      return { ...r, details: { ...r.details, headHash: prev } };
    });
    writeBack(rehashFrom(withHeads, 3, (r) => r));
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.chain.ok).toBe(true);
    expect(v.problems[0]).toMatchObject({ kind: 'bad_signature', seq: 6 });
    expect(v.problems[0]!.message).toContain('does not verify');
  });

  it('truncation after the last checkpoint is caught against the last checkpoint the caller kept', async () => {
    const last = (await all()).at(-1)!;
    exec('DELETE FROM audit WHERE seq > 18');
    const blind = await verifyAuditWithCheckpoints(state, signer);
    expect(blind.ok).toBe(true); // nothing in the database itself can show what was cut off
    const v = await verifyAuditWithCheckpoints(state, signer, {
      lastKnown: { seq: last.seq, hash: last.hash },
    });
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual([
      {
        kind: 'truncated',
        seq: 24,
        message: 'the log ends at record 18 but record 24 was known to exist: the log was truncated',
      },
    ]);
  });

  it('records appended after the last checkpoint are reported as unsigned', async () => {
    const log = new CheckpointingAuditLog(state, clock, signer, 5);
    await log.append({ actor: 'x', action: 'key.created', target: 'local://new' });
    await log.append({ actor: 'x', action: 'key.created', target: 'local://new2' });
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.ok).toBe(true);
    expect(v.unsigned).toEqual({ fromSeq: 25, toSeq: 26, count: 2 });
  });
});

describe('SIEM export from the SQLite state store', () => {
  it('streams every format through a slow consumer, one event per line, with chainValid', async () => {
    for (const format of ['jsonl', 'ocsf', 'cef'] as const) {
      const chunks: string[] = [];
      const out = new Writable({
        highWaterMark: 64,
        write(chunk, _enc, cb) {
          chunks.push(String(chunk));
          setImmediate(cb);
        },
      });
      const res = await exportAudit(state, out, { format, productVersion: '0.1.0', pageSize: 7 });
      expect(res).toMatchObject({ exported: 24, scanned: 24, chainValid: true });
      const lines = chunks.join('').split('\n').filter(Boolean);
      expect(lines).toHaveLength(24);
      if (format === 'cef') expect(lines.every((l) => l.startsWith('CEF:0|rekey|rekey|0.1.0|'))).toBe(true);
      else
        expect(lines.map((l) => JSON.parse(l).metadata?.sequence ?? JSON.parse(l).seq)).toEqual(
          Array.from({ length: 24 }, (_, i) => i + 1),
        );
    }
  });

  it('marks records from the first bad one on as chainValid=false, and filters by time', async () => {
    exec(`UPDATE audit SET actor = 'mallory' WHERE seq = 10`);
    const path = join(dir, 'audit.jsonl');
    const res = await exportAuditToFile(state, path, {
      format: 'jsonl',
      productVersion: '0.1.0',
      since: '2026-11-28T00:05:00Z',
      signedThroughSeq: 6,
    });
    expect(res).toMatchObject({ chainValid: false, firstBad: { seq: 10 } });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const lines = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].ts >= '2026-11-28T00:05:00').toBe(true);
    expect(lines.find((l) => l.seq === 9)).toMatchObject({ chainValid: true });
    expect(lines.find((l) => l.seq === 10)).toMatchObject({ chainValid: false, signed: false });
    expect(lines.find((l) => l.seq === 6)).toMatchObject({ signed: true });
  });

  it('refuses an unknown format and a bad instant', async () => {
    const out = new Writable({ write: (_c, _e, cb) => cb() });
    await expect(exportAudit(state, out, { format: 'xml' as 'cef', productVersion: '1' })).rejects.toThrow(
      'unknown format "xml"',
    );
    await expect(
      exportAudit(state, out, { format: 'cef', productVersion: '1', since: 'yesterday' }),
    ).rejects.toThrow('since "yesterday"');
  });
});
