import { ValidationError } from '../../core/errors.js';
import type { ActionRecord, Plan } from '../../core/plan/types.js';
import type {
  ApplyRun,
  AuditRecord,
  InventorySnapshot,
  RewrapJob,
  StateEntry,
  StateRecord,
  StateStore,
} from '../../core/ports/StateStore.js';
import { checkRecordWrite, type RecordRow, recordFromRow } from '../common/records.js';
import { configure, guarded, openDatabase, type SqliteDatabase } from './connection.js';
import { parseStored, requireString, toMillis } from './json.js';
import { MIGRATIONS, type Migration, migrate } from './migrations.js';

interface AuditRow {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

function prepareAll(db: SqliteDatabase) {
  return {
    saveInventory: db.prepare(
      `INSERT INTO inventory_snapshots (id, taken_at_ms, body) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET taken_at_ms = excluded.taken_at_ms, body = excluded.body`,
    ),
    latestInventory: db.prepare(
      'SELECT body FROM inventory_snapshots ORDER BY taken_at_ms DESC, rowid DESC LIMIT 1',
    ),
    savePlan: db.prepare(
      `INSERT INTO plans (id, created_at_ms, body) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET created_at_ms = excluded.created_at_ms, body = excluded.body`,
    ),
    getPlan: db.prepare('SELECT body FROM plans WHERE id = ?'),
    latestPlan: db.prepare('SELECT body FROM plans ORDER BY created_at_ms DESC, rowid DESC LIMIT 1'),
    saveRun: db.prepare(
      `INSERT INTO runs (id, plan_id, started_at_ms, status, body) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET plan_id = excluded.plan_id, started_at_ms = excluded.started_at_ms,
         status = excluded.status, body = excluded.body`,
    ),
    getRun: db.prepare('SELECT body FROM runs WHERE id = ?'),
    listRuns: db.prepare('SELECT body FROM runs ORDER BY started_at_ms DESC, rowid DESC LIMIT ?'),
    putAction: db.prepare(
      `INSERT INTO action_records (plan_id, idx, status, body) VALUES (?, ?, ?, ?)
       ON CONFLICT (plan_id, idx) DO UPDATE SET status = excluded.status, body = excluded.body`,
    ),
    getActions: db.prepare('SELECT body FROM action_records WHERE plan_id = ? ORDER BY idx'),
    // One statement: insert a free lease, or take it over when expired or already ours.
    acquireLease: db.prepare(
      `INSERT INTO leases (name, owner, expires_at_ms) VALUES (@name, @owner, @expires)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
       WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= @now`,
    ),
    releaseLease: db.prepare('DELETE FROM leases WHERE name = ? AND owner = ?'),
    leaseOwner: db.prepare(
      'SELECT owner, expires_at_ms AS e FROM leases WHERE name = ? AND expires_at_ms > ?',
    ),
    getJob: db.prepare('SELECT body FROM rewrap_jobs WHERE id = ?'),
    createJob: db.prepare(
      `INSERT INTO rewrap_jobs (id, key_ref, store_id, status, body) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    ),
    saveJob: db.prepare(
      `INSERT INTO rewrap_jobs (id, key_ref, store_id, status, body) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET key_ref = excluded.key_ref, store_id = excluded.store_id,
         status = excluded.status, body = excluded.body`,
    ),
    auditTail: db.prepare('SELECT * FROM audit ORDER BY seq DESC LIMIT 1'),
    // Conditional insert: the row goes in only if its seq is exactly max(seq)+1 (1 when empty).
    // A single statement is atomic under SQLite's write lock, so two connections cannot both win.
    auditAppend: db.prepare(
      `INSERT INTO audit (seq, ts, actor, action, target, details, prev_hash, hash)
       SELECT @seq, @ts, @actor, @action, @target, @details, @prevHash, @hash
       WHERE @seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)`,
    ),
    auditRead: db.prepare('SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?'),
    insertRecord: db.prepare(
      `INSERT INTO records (kind, id, rev, updated_at, body) VALUES (@kind, @id, 1, @updatedAt, @body)
       ON CONFLICT (kind, id) DO NOTHING`,
    ),
    updateRecord: db.prepare(
      `UPDATE records SET rev = rev + 1, updated_at = @updatedAt, body = @body
       WHERE kind = @kind AND id = @id AND rev = @expected`,
    ),
    getRecord: db.prepare('SELECT * FROM records WHERE kind = ? AND id = ?'),
    listRecords: db.prepare('SELECT * FROM records WHERE kind = ? AND id > ? ORDER BY id LIMIT ?'),
  };
}

function positiveInt(n: unknown, field: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 1) {
    throw new ValidationError(`${field} must be a positive integer, got ${String(n)}`);
  }
  return n as number;
}

function toAudit(row: AuditRow): AuditRecord {
  return {
    seq: row.seq,
    ts: row.ts,
    actor: row.actor,
    action: row.action,
    target: row.target,
    details: parseStored<Record<string, unknown>>(row.details, `audit seq ${row.seq} details`),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/**
 * rekey's state on SQLite: the embedded default. The port is async; better-sqlite3 is
 * synchronous, which is what makes every conditional write here a single atomic statement.
 */
export class SqliteStateStore implements StateStore {
  private readonly q: ReturnType<typeof prepareAll>;

  private constructor(
    readonly db: SqliteDatabase,
    private readonly ownsDb: boolean,
  ) {
    this.q = guarded('preparing state store statements', () => prepareAll(db));
  }

  /**
   * Opens (creating and migrating as needed) a state database: a file path, ':memory:', or an
   * existing better-sqlite3 Database (which the store then does not close).
   */
  static open(
    target: string | SqliteDatabase,
    opts: { migrations?: readonly Migration[] } = {},
  ): SqliteStateStore {
    const owns = typeof target === 'string';
    const db = owns ? openDatabase(target) : target;
    try {
      if (!owns) guarded('configuring the shared database', () => configure(db));
      migrate(db, opts.migrations ?? MIGRATIONS, owns ? target : db.name);
      return new SqliteStateStore(db, owns);
    } catch (e) {
      if (owns) db.close();
      throw e;
    }
  }

  async saveInventory(s: InventorySnapshot): Promise<void> {
    const id = requireString(s.id, 'inventory snapshot id');
    const ms = toMillis(s.takenAt, `inventory snapshot ${id} takenAt`);
    guarded(`saving inventory snapshot ${id}`, () => this.q.saveInventory.run(id, ms, JSON.stringify(s)));
  }

  async latestInventory(): Promise<InventorySnapshot | null> {
    const row = guarded('reading latest inventory', () => this.q.latestInventory.get()) as
      | { body: string }
      | undefined;
    return row ? parseStored<InventorySnapshot>(row.body, 'latest inventory snapshot') : null;
  }

  async savePlan(plan: Plan): Promise<void> {
    const id = requireString(plan.id, 'plan id');
    const ms = toMillis(plan.createdAt, `plan ${id} createdAt`);
    guarded(`saving plan ${id}`, () => this.q.savePlan.run(id, ms, JSON.stringify(plan)));
  }

  async getPlan(id: string): Promise<Plan | null> {
    const row = guarded(`reading plan ${id}`, () => this.q.getPlan.get(id)) as { body: string } | undefined;
    return row ? parseStored<Plan>(row.body, `plan ${id}`) : null;
  }

  async latestPlan(): Promise<Plan | null> {
    const row = guarded('reading latest plan', () => this.q.latestPlan.get()) as { body: string } | undefined;
    return row ? parseStored<Plan>(row.body, 'latest plan') : null;
  }

  async saveRun(run: ApplyRun): Promise<void> {
    const id = requireString(run.id, 'run id');
    const ms = toMillis(run.startedAt, `run ${id} startedAt`);
    guarded(`saving run ${id}`, () =>
      this.q.saveRun.run(id, run.planId, ms, run.status, JSON.stringify(run)),
    );
  }

  async getRun(id: string): Promise<ApplyRun | null> {
    const row = guarded(`reading run ${id}`, () => this.q.getRun.get(id)) as { body: string } | undefined;
    return row ? parseStored<ApplyRun>(row.body, `run ${id}`) : null;
  }

  async listRuns(limit: number): Promise<ApplyRun[]> {
    positiveInt(limit, 'listRuns limit');
    const rows = guarded('listing runs', () => this.q.listRuns.all(limit)) as { body: string }[];
    return rows.map((r) => parseStored<ApplyRun>(r.body, 'run'));
  }

  async putActionRecord(rec: ActionRecord): Promise<void> {
    const planId = requireString(rec.planId, 'action record planId');
    if (!Number.isSafeInteger(rec.index) || rec.index < 0) {
      throw new ValidationError(`action record of plan ${planId}: index must be an integer >= 0`);
    }
    guarded(`saving action ${rec.index} of plan ${planId}`, () =>
      this.q.putAction.run(planId, rec.index, rec.status, JSON.stringify(rec)),
    );
  }

  async getActionRecords(planId: string): Promise<ActionRecord[]> {
    const rows = guarded(`reading actions of plan ${planId}`, () => this.q.getActions.all(planId)) as {
      body: string;
    }[];
    return rows.map((r) => parseStored<ActionRecord>(r.body, `action record of plan ${planId}`));
  }

  async acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean> {
    requireString(name, 'lease name');
    requireString(owner, 'lease owner');
    positiveInt(ttlMs, `lease ${name} ttlMs`);
    if (!Number.isSafeInteger(nowMs)) throw new ValidationError(`lease ${name}: nowMs must be an integer`);
    const res = guarded(`acquiring lease ${name}`, () =>
      this.q.acquireLease.run({ name, owner, expires: nowMs + ttlMs, now: nowMs }),
    );
    return res.changes === 1;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    guarded(`releasing lease ${name}`, () => this.q.releaseLease.run(name, owner));
  }
  async leaseOwner(name: string, nowMs: number): Promise<{ owner: string; expiresAtMs: number } | null> {
    requireString(name, 'lease name');
    const row = guarded(`reading lease ${name}`, () => this.q.leaseOwner.get(name, nowMs)) as
      | { owner: string; e: number }
      | undefined;
    return row ? { owner: row.owner, expiresAtMs: row.e } : null;
  }

  async getRewrapJob(id: string): Promise<RewrapJob | null> {
    const row = guarded(`reading rewrap job ${id}`, () => this.q.getJob.get(id)) as
      | { body: string }
      | undefined;
    return row ? parseStored<RewrapJob>(row.body, `rewrap job ${id}`) : null;
  }

  async createRewrapJob(job: RewrapJob): Promise<RewrapJob> {
    const id = requireString(job.id, 'rewrap job id');
    return guarded(`creating rewrap job ${id}`, () => {
      this.q.createJob.run(id, job.keyRef, job.storeId, job.status, JSON.stringify(job));
      const row = this.q.getJob.get(id) as { body: string };
      return parseStored<RewrapJob>(row.body, `rewrap job ${id}`);
    });
  }

  async saveRewrapJob(job: RewrapJob): Promise<void> {
    const id = requireString(job.id, 'rewrap job id');
    guarded(`saving rewrap job ${id}`, () =>
      this.q.saveJob.run(id, job.keyRef, job.storeId, job.status, JSON.stringify(job)),
    );
  }

  async auditTail(): Promise<AuditRecord | null> {
    const row = guarded('reading audit tail', () => this.q.auditTail.get()) as AuditRow | undefined;
    return row ? toAudit(row) : null;
  }

  async auditAppend(rec: AuditRecord): Promise<boolean> {
    if (!Number.isSafeInteger(rec.seq) || rec.seq < 1) return false;
    const res = guarded(`appending audit record ${rec.seq}`, () =>
      this.q.auditAppend.run({
        seq: rec.seq,
        ts: rec.ts,
        actor: rec.actor,
        action: rec.action,
        target: rec.target ?? null,
        details: JSON.stringify(rec.details ?? {}),
        prevHash: rec.prevHash,
        hash: rec.hash,
      }),
    );
    return res.changes === 1;
  }

  async auditRead(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    if (!Number.isSafeInteger(fromSeq)) throw new ValidationError(`auditRead fromSeq must be an integer`);
    positiveInt(limit, 'auditRead limit');
    const rows = guarded(`reading audit from ${fromSeq}`, () =>
      this.q.auditRead.all(fromSeq, limit),
    ) as AuditRow[];
    return rows.map(toAudit);
  }

  async putRecord(
    rec: { kind: string; id: string; body: Record<string, unknown>; updatedAt: string },
    expectedRev: number,
  ): Promise<boolean> {
    checkRecordWrite(rec, expectedRev);
    const args = { kind: rec.kind, id: rec.id, updatedAt: rec.updatedAt, body: JSON.stringify(rec.body) };
    const res = guarded(`writing record ${rec.kind}/${rec.id}`, () =>
      expectedRev === 0
        ? this.q.insertRecord.run(args)
        : this.q.updateRecord.run({ ...args, expected: expectedRev }),
    );
    return res.changes === 1;
  }

  async getRecord(kind: string, id: string): Promise<StateRecord | null> {
    const row = guarded(`reading record ${kind}/${id}`, () => this.q.getRecord.get(kind, id)) as
      | RecordRow
      | undefined;
    return row ? recordFromRow(row) : null;
  }

  async listRecords(kind: string, opts: { afterId?: string; limit: number }): Promise<StateRecord[]> {
    positiveInt(opts.limit, 'listRecords limit');
    const rows = guarded(`listing records ${kind}`, () =>
      this.q.listRecords.all(kind, opts.afterId ?? '', opts.limit),
    ) as RecordRow[];
    return rows.map(recordFromRow);
  }

  async *exportEntries(): AsyncIterable<StateEntry> {
    // Read inside one transaction so the backup is a consistent snapshot of the file.
    const bodies = (sql: string) => (this.db.prepare(sql).all() as { body: string }[]).map((r) => r.body);
    const snapshot = guarded('reading state for a backup', () =>
      this.db
        .transaction(() => ({
          inventory: bodies('SELECT body FROM inventory_snapshots ORDER BY taken_at_ms, rowid'),
          plan: bodies('SELECT body FROM plans ORDER BY created_at_ms, rowid'),
          run: bodies('SELECT body FROM runs ORDER BY started_at_ms, rowid'),
          action: bodies('SELECT body FROM action_records ORDER BY plan_id, idx'),
          job: bodies('SELECT body FROM rewrap_jobs ORDER BY id'),
          record: this.db.prepare('SELECT * FROM records ORDER BY kind, id').all() as RecordRow[],
          audit: this.db.prepare('SELECT * FROM audit ORDER BY seq').all() as AuditRow[],
        }))
        .deferred(),
    );
    for (const t of ['inventory', 'plan', 'run', 'action', 'job'] as const) {
      for (const b of snapshot[t]) yield { t, v: parseStored(b, `${t} in backup`) } as StateEntry;
    }
    for (const r of snapshot.record) yield { t: 'record', v: recordFromRow(r) };
    for (const a of snapshot.audit) yield { t: 'audit', v: toAudit(a) };
  }

  async close(): Promise<void> {
    if (this.ownsDb && this.db.open) this.db.close();
  }
}
