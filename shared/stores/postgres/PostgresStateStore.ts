import { ConfigError, ConflictError, ValidationError } from '../../core/errors.js';
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
import { checkRecordWrite, type RecordRow, type RecordWrite, recordFromRow } from '../common/records.js';
import { IDENTIFIER } from '../sqlite/identifiers.js';
import { parseStored, requireString, toMillis } from '../sqlite/json.js';
import { createPool, guarded, inTransaction, type PgPool, type PgPoolOptions } from './connection.js';
import { migratePg, PG_MIGRATIONS, type PgMigration } from './migrations.js';

export type PostgresStateStoreOptions = {
  /** Schema holding rekey's tables; created if missing. Default `rekey`. */
  schema?: string;
  migrations?: readonly PgMigration[];
} & ({ url: string; pool?: PgPoolOptions } | { pool: PgPool });

interface AuditRow {
  seq: string;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

function positiveInt(n: unknown, field: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 1) {
    throw new ValidationError(`${field} must be a positive integer, got ${String(n)}`);
  }
  return n as number;
}

function toAudit(row: AuditRow): AuditRecord {
  const seq = Number(row.seq);
  return {
    seq,
    ts: row.ts,
    actor: row.actor,
    action: row.action,
    target: row.target,
    details: parseStored<Record<string, unknown>>(row.details, `audit seq ${seq} details`),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

function statements(s: string) {
  return {
    saveInventory: `INSERT INTO ${s}.inventory_snapshots (id, taken_at_ms, body) VALUES ($1, $2, $3)
      ON CONFLICT (id) DO UPDATE SET taken_at_ms = excluded.taken_at_ms, body = excluded.body`,
    latestInventory: `SELECT body::text AS body FROM ${s}.inventory_snapshots ORDER BY taken_at_ms DESC, row_seq DESC LIMIT 1`,
    savePlan: `INSERT INTO ${s}.plans (id, created_at_ms, body) VALUES ($1, $2, $3)
      ON CONFLICT (id) DO UPDATE SET created_at_ms = excluded.created_at_ms, body = excluded.body`,
    getPlan: `SELECT body::text AS body FROM ${s}.plans WHERE id = $1`,
    latestPlan: `SELECT body::text AS body FROM ${s}.plans ORDER BY created_at_ms DESC, row_seq DESC LIMIT 1`,
    saveRun: `INSERT INTO ${s}.runs (id, plan_id, started_at_ms, status, body) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (id) DO UPDATE SET plan_id = excluded.plan_id, started_at_ms = excluded.started_at_ms,
        status = excluded.status, body = excluded.body`,
    getRun: `SELECT body::text AS body FROM ${s}.runs WHERE id = $1`,
    listRuns: `SELECT body::text AS body FROM ${s}.runs ORDER BY started_at_ms DESC, row_seq DESC LIMIT $1`,
    putAction: `INSERT INTO ${s}.action_records (plan_id, idx, status, body) VALUES ($1, $2, $3, $4)
      ON CONFLICT (plan_id, idx) DO UPDATE SET status = excluded.status, body = excluded.body`,
    getActions: `SELECT body::text AS body FROM ${s}.action_records WHERE plan_id = $1 ORDER BY idx`,
    // One statement: insert a free lease, or take it over when expired or already ours. Under
    // READ COMMITTED a concurrent insert of the same name makes this wait, then re-check the
    // WHERE against the committed row: only one contender gets a row back.
    acquireLease: `INSERT INTO ${s}.leases AS l (name, owner, expires_at_ms) VALUES ($1, $2, $3)
      ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
      WHERE l.owner = excluded.owner OR l.expires_at_ms <= $4`,
    leaseOwner: `SELECT owner, expires_at_ms::text AS e FROM ${s}.leases WHERE name = $1 AND expires_at_ms > $2`,
    releaseLease: `DELETE FROM ${s}.leases WHERE name = $1 AND owner = $2`,
    getJob: `SELECT body::text AS body FROM ${s}.rewrap_jobs WHERE id = $1`,
    createJob: `INSERT INTO ${s}.rewrap_jobs (id, key_ref, store_id, status, body) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (id) DO NOTHING RETURNING body::text AS body`,
    saveJob: `INSERT INTO ${s}.rewrap_jobs (id, key_ref, store_id, status, body) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (id) DO UPDATE SET key_ref = excluded.key_ref, store_id = excluded.store_id,
        status = excluded.status, body = excluded.body`,
    auditTail: `SELECT * FROM ${s}.audit ORDER BY seq DESC LIMIT 1`,
    // The row goes in only if its seq is exactly max(seq)+1 (1 when empty). Two appenders of the
    // same seq both pass the check; the primary key lets one commit and fails the other, which
    // the store reports as false. A seq beyond max+1 fails the check: no gap can appear.
    auditAppend: `INSERT INTO ${s}.audit (seq, ts, actor, action, target, details, prev_hash, hash)
      SELECT $1, $2, $3, $4, $5, $6, $7, $8
      WHERE $1::bigint = (SELECT COALESCE(MAX(seq), 0) + 1 FROM ${s}.audit)`,
    auditRead: `SELECT * FROM ${s}.audit WHERE seq >= $1 ORDER BY seq LIMIT $2`,
    insertRecord: `INSERT INTO ${s}.records (kind, id, rev, updated_at, body) VALUES ($1, $2, 1, $3, $4)
      ON CONFLICT (kind, id) DO NOTHING`,
    updateRecord: `UPDATE ${s}.records SET rev = rev + 1, updated_at = $3, body = $4
      WHERE kind = $1 AND id = $2 AND rev = $5`,
    getRecord: `SELECT * FROM ${s}.records WHERE kind = $1 AND id = $2`,
    listRecords: `SELECT * FROM ${s}.records WHERE kind = $1 AND id > $2 COLLATE "C" ORDER BY id COLLATE "C" LIMIT $3`,
  };
}

/**
 * rekey's state in PostgreSQL, in its own schema (default `rekey`), migrated on open. Every
 * conditional write is one statement whose condition PostgreSQL re-checks under concurrency.
 */
export class PostgresStateStore implements StateStore {
  private readonly q: ReturnType<typeof statements>;

  private constructor(
    readonly pool: PgPool,
    private readonly ownsPool: boolean,
    readonly schema: string,
  ) {
    this.q = statements(`"${schema}"`);
  }

  /** Connects (or uses the given pool), creates the schema if needed and applies pending migrations. */
  static async open(opts: PostgresStateStoreOptions): Promise<PostgresStateStore> {
    const schema = opts.schema ?? 'rekey';
    if (!IDENTIFIER.test(schema)) {
      throw new ConfigError(`postgres state store: schema "${schema}" is not a plain SQL identifier`);
    }
    const owns = 'url' in opts && typeof opts.url === 'string';
    const pool = owns
      ? createPool(
          (opts as { url: string }).url,
          'postgres state store',
          opts.pool as PgPoolOptions | undefined,
        )
      : (opts as { pool: PgPool }).pool;
    try {
      await migratePg(pool, schema, opts.migrations ?? PG_MIGRATIONS);
      return new PostgresStateStore(pool, owns, schema);
    } catch (e) {
      if (owns) await pool.end();
      throw e;
    }
  }

  private async body<T>(what: string, text: string, values: unknown[], where: string): Promise<T | null> {
    const r = await guarded(what, () => this.pool.query<{ body: string }>(text, values));
    return r.rows[0] ? parseStored<T>(r.rows[0].body, where) : null;
  }

  async saveInventory(s: InventorySnapshot): Promise<void> {
    const id = requireString(s.id, 'inventory snapshot id');
    const ms = toMillis(s.takenAt, `inventory snapshot ${id} takenAt`);
    await guarded(`saving inventory snapshot ${id}`, () =>
      this.pool.query(this.q.saveInventory, [id, ms, JSON.stringify(s)]),
    );
  }

  async latestInventory(): Promise<InventorySnapshot | null> {
    return this.body('reading latest inventory', this.q.latestInventory, [], 'latest inventory snapshot');
  }

  async savePlan(plan: Plan): Promise<void> {
    const id = requireString(plan.id, 'plan id');
    const ms = toMillis(plan.createdAt, `plan ${id} createdAt`);
    await guarded(`saving plan ${id}`, () =>
      this.pool.query(this.q.savePlan, [id, ms, JSON.stringify(plan)]),
    );
  }

  async getPlan(id: string): Promise<Plan | null> {
    return this.body(`reading plan ${id}`, this.q.getPlan, [id], `plan ${id}`);
  }

  async latestPlan(): Promise<Plan | null> {
    return this.body('reading latest plan', this.q.latestPlan, [], 'latest plan');
  }

  async saveRun(run: ApplyRun): Promise<void> {
    const id = requireString(run.id, 'run id');
    const ms = toMillis(run.startedAt, `run ${id} startedAt`);
    await guarded(`saving run ${id}`, () =>
      this.pool.query(this.q.saveRun, [id, run.planId, ms, run.status, JSON.stringify(run)]),
    );
  }

  async getRun(id: string): Promise<ApplyRun | null> {
    return this.body(`reading run ${id}`, this.q.getRun, [id], `run ${id}`);
  }

  async listRuns(limit: number): Promise<ApplyRun[]> {
    positiveInt(limit, 'listRuns limit');
    const r = await guarded('listing runs', () =>
      this.pool.query<{ body: string }>(this.q.listRuns, [limit]),
    );
    return r.rows.map((x) => parseStored<ApplyRun>(x.body, 'run'));
  }

  async putActionRecord(rec: ActionRecord): Promise<void> {
    const planId = requireString(rec.planId, 'action record planId');
    if (!Number.isSafeInteger(rec.index) || rec.index < 0) {
      throw new ValidationError(`action record of plan ${planId}: index must be an integer >= 0`);
    }
    await guarded(`saving action ${rec.index} of plan ${planId}`, () =>
      this.pool.query(this.q.putAction, [planId, rec.index, rec.status, JSON.stringify(rec)]),
    );
  }

  async getActionRecords(planId: string): Promise<ActionRecord[]> {
    const r = await guarded(`reading actions of plan ${planId}`, () =>
      this.pool.query<{ body: string }>(this.q.getActions, [planId]),
    );
    return r.rows.map((x) => parseStored<ActionRecord>(x.body, `action record of plan ${planId}`));
  }

  async acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean> {
    requireString(name, 'lease name');
    requireString(owner, 'lease owner');
    positiveInt(ttlMs, `lease ${name} ttlMs`);
    if (!Number.isSafeInteger(nowMs)) throw new ValidationError(`lease ${name}: nowMs must be an integer`);
    const r = await guarded(`acquiring lease ${name}`, () =>
      this.pool.query(this.q.acquireLease, [name, owner, nowMs + ttlMs, nowMs]),
    );
    return r.rowCount === 1;
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await guarded(`releasing lease ${name}`, () => this.pool.query(this.q.releaseLease, [name, owner]));
  }

  async leaseOwner(name: string, nowMs: number): Promise<{ owner: string; expiresAtMs: number } | null> {
    requireString(name, 'lease name');
    if (!Number.isSafeInteger(nowMs)) throw new ValidationError(`lease ${name}: nowMs must be an integer`);
    const r = await guarded(`reading lease ${name}`, () =>
      this.pool.query<{ owner: string; e: string }>(this.q.leaseOwner, [name, nowMs]),
    );
    const row = r.rows[0];
    return row ? { owner: row.owner, expiresAtMs: Number(row.e) } : null;
  }

  async getRewrapJob(id: string): Promise<RewrapJob | null> {
    return this.body(`reading rewrap job ${id}`, this.q.getJob, [id], `rewrap job ${id}`);
  }

  async createRewrapJob(job: RewrapJob): Promise<RewrapJob> {
    const id = requireString(job.id, 'rewrap job id');
    const inserted = await this.body<RewrapJob>(
      `creating rewrap job ${id}`,
      this.q.createJob,
      [id, job.keyRef, job.storeId, job.status, JSON.stringify(job)],
      `rewrap job ${id}`,
    );
    if (inserted) return inserted;
    // Someone else's insert won (and has committed: ON CONFLICT waited for it): return theirs.
    const existing = await this.getRewrapJob(id);
    if (!existing) throw new ConflictError(`rewrap job ${id} was created and removed concurrently`);
    return existing;
  }

  async saveRewrapJob(job: RewrapJob): Promise<void> {
    const id = requireString(job.id, 'rewrap job id');
    await guarded(`saving rewrap job ${id}`, () =>
      this.pool.query(this.q.saveJob, [id, job.keyRef, job.storeId, job.status, JSON.stringify(job)]),
    );
  }

  async auditTail(): Promise<AuditRecord | null> {
    const r = await guarded('reading audit tail', () => this.pool.query<AuditRow>(this.q.auditTail));
    return r.rows[0] ? toAudit(r.rows[0]) : null;
  }

  async auditAppend(rec: AuditRecord): Promise<boolean> {
    if (!Number.isSafeInteger(rec.seq) || rec.seq < 1) return false;
    try {
      const r = await guarded(`appending audit record ${rec.seq}`, () =>
        this.pool.query(this.q.auditAppend, [
          rec.seq,
          rec.ts,
          rec.actor,
          rec.action,
          rec.target ?? null,
          JSON.stringify(rec.details ?? {}),
          rec.prevHash,
          rec.hash,
        ]),
      );
      return r.rowCount === 1;
    } catch (e) {
      // Lost the race for this seq to a concurrent appender.
      if (e instanceof ConflictError) return false;
      throw e;
    }
  }

  async auditRead(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    if (!Number.isSafeInteger(fromSeq)) throw new ValidationError('auditRead fromSeq must be an integer');
    positiveInt(limit, 'auditRead limit');
    const r = await guarded(`reading audit from ${fromSeq}`, () =>
      this.pool.query<AuditRow>(this.q.auditRead, [fromSeq, limit]),
    );
    return r.rows.map(toAudit);
  }

  async putRecord(rec: RecordWrite, expectedRev: number): Promise<boolean> {
    checkRecordWrite(rec, expectedRev);
    const args = [rec.kind, rec.id, rec.updatedAt, JSON.stringify(rec.body)];
    try {
      const r = await guarded(`writing record ${rec.kind}/${rec.id}`, () =>
        expectedRev === 0
          ? this.pool.query(this.q.insertRecord, args)
          : this.pool.query(this.q.updateRecord, [...args, expectedRev]),
      );
      return r.rowCount === 1;
    } catch (e) {
      if (e instanceof ConflictError) return false;
      throw e;
    }
  }

  async getRecord(kind: string, id: string): Promise<StateRecord | null> {
    const r = await guarded(`reading record ${kind}/${id}`, () =>
      this.pool.query<RecordRow>(this.q.getRecord, [kind, id]),
    );
    return r.rows[0] ? recordFromRow(r.rows[0]) : null;
  }

  async listRecords(kind: string, opts: { afterId?: string; limit: number }): Promise<StateRecord[]> {
    positiveInt(opts.limit, 'listRecords limit');
    const r = await guarded(`listing records ${kind}`, () =>
      this.pool.query<RecordRow>(this.q.listRecords, [kind, opts.afterId ?? '', opts.limit]),
    );
    return r.rows.map(recordFromRow);
  }

  async *exportEntries(): AsyncIterable<StateEntry> {
    const s = `"${this.schema}"`;
    // One REPEATABLE READ transaction: every table is read from the same snapshot.
    const snapshot = await inTransaction(this.pool, 'reading state for a backup', async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const bodies = async (sql: string) => (await c.query<{ body: string }>(sql)).rows.map((r) => r.body);
      return {
        inventory: await bodies(
          `SELECT body::text AS body FROM ${s}.inventory_snapshots ORDER BY taken_at_ms, row_seq`,
        ),
        plan: await bodies(`SELECT body::text AS body FROM ${s}.plans ORDER BY created_at_ms, row_seq`),
        run: await bodies(`SELECT body::text AS body FROM ${s}.runs ORDER BY started_at_ms, row_seq`),
        action: await bodies(`SELECT body::text AS body FROM ${s}.action_records ORDER BY plan_id, idx`),
        job: await bodies(`SELECT body::text AS body FROM ${s}.rewrap_jobs ORDER BY id`),
        record: (await c.query<RecordRow>(`SELECT * FROM ${s}.records ORDER BY kind, id COLLATE "C"`)).rows,
        audit: (await c.query<AuditRow>(`SELECT * FROM ${s}.audit ORDER BY seq`)).rows,
      };
    });
    for (const t of ['inventory', 'plan', 'run', 'action', 'job'] as const) {
      for (const b of snapshot[t]) yield { t, v: parseStored(b, `${t} in backup`) } as StateEntry;
    }
    for (const r of snapshot.record) yield { t: 'record', v: recordFromRow(r) };
    for (const a of snapshot.audit) yield { t: 'audit', v: toAudit(a) };
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }
}
