import { ConfigError, InvariantViolation } from '../../core/errors.js';
import { guarded, inTransaction, type PgPool } from './connection.js';

export interface PgMigration {
  /** Strictly increasing, starting at 1. Never renumber or edit a released migration. */
  version: number;
  name: string;
  /** SQL for the given quoted schema name. */
  sql: (schema: string) => string;
}

/**
 * rekey's own state schema in PostgreSQL, oldest first. Append a new entry for every change.
 * JSON bodies are `json` (kept byte for byte, unlike jsonb); timestamps used for ordering are
 * beside them as epoch milliseconds; `row_seq` breaks ties in insertion order.
 */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: 'initial state schema',
    sql: (s) => `
      CREATE TABLE ${s}.inventory_snapshots (
        id text PRIMARY KEY,
        taken_at_ms bigint NOT NULL,
        row_seq bigint GENERATED ALWAYS AS IDENTITY,
        body json NOT NULL
      );
      CREATE INDEX inventory_snapshots_taken_at ON ${s}.inventory_snapshots (taken_at_ms DESC, row_seq DESC);

      CREATE TABLE ${s}.plans (
        id text PRIMARY KEY,
        created_at_ms bigint NOT NULL,
        row_seq bigint GENERATED ALWAYS AS IDENTITY,
        body json NOT NULL
      );
      CREATE INDEX plans_created_at ON ${s}.plans (created_at_ms DESC, row_seq DESC);

      CREATE TABLE ${s}.runs (
        id text PRIMARY KEY,
        plan_id text NOT NULL,
        started_at_ms bigint NOT NULL,
        status text NOT NULL,
        row_seq bigint GENERATED ALWAYS AS IDENTITY,
        body json NOT NULL
      );
      CREATE INDEX runs_started_at ON ${s}.runs (started_at_ms DESC, row_seq DESC);

      CREATE TABLE ${s}.action_records (
        plan_id text NOT NULL,
        idx integer NOT NULL CHECK (idx >= 0),
        status text NOT NULL,
        body json NOT NULL,
        PRIMARY KEY (plan_id, idx)
      );

      CREATE TABLE ${s}.leases (
        name text PRIMARY KEY,
        owner text NOT NULL,
        expires_at_ms bigint NOT NULL
      );

      CREATE TABLE ${s}.rewrap_jobs (
        id text PRIMARY KEY,
        key_ref text NOT NULL,
        store_id text NOT NULL,
        status text NOT NULL,
        body json NOT NULL
      );

      CREATE TABLE ${s}.audit (
        seq bigint PRIMARY KEY CHECK (seq >= 1),
        ts text NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        target text,
        details text NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL
      );
      -- The audit log is append-only. The store never updates or deletes; these triggers make
      -- any other writer fail loudly too (the hash chain catches what a superuser could still do).
      CREATE FUNCTION ${s}.rekey_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit records are append-only' USING ERRCODE = 'insufficient_privilege'; END $$;
      CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON ${s}.audit
        FOR EACH ROW EXECUTE FUNCTION ${s}.rekey_audit_append_only();
      CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON ${s}.audit
        FOR EACH STATEMENT EXECUTE FUNCTION ${s}.rekey_audit_append_only();
    `,
  },
  {
    version: 2,
    name: 'records: processed events, approvals, incidents',
    sql: (s) => `
      CREATE TABLE ${s}.records (
        kind text NOT NULL,
        id text NOT NULL,
        rev integer NOT NULL CHECK (rev >= 1),
        updated_at text NOT NULL,
        body text NOT NULL,
        PRIMARY KEY (kind, id)
      );
    `,
  },
];

export interface AppliedPgMigration {
  version: number;
  name: string;
  appliedAt: string;
}

function checkList(list: readonly PgMigration[]): void {
  list.forEach((m, i) => {
    if (!Number.isInteger(m.version) || m.version !== i + 1) {
      throw new InvariantViolation(
        `postgres migrations: entry ${i} ("${m.name}") has version ${m.version}, expected ${i + 1}`,
      );
    }
  });
}

/** Serializes migrations of one schema across processes (released at commit). */
const LOCK = 'SELECT pg_advisory_xact_lock(hashtext($1))';

/** The versions recorded in `schema`.schema_migrations, oldest first (empty when none). */
export async function appliedPgMigrations(pool: PgPool, schema: string): Promise<AppliedPgMigration[]> {
  return guarded(`reading ${schema}.schema_migrations`, async () => {
    const exists = await pool.query('SELECT to_regclass($1) AS t', [`"${schema}".schema_migrations`]);
    if (!exists.rows[0]?.t) return [];
    const r = await pool.query<{ version: number; name: string; applied_at: Date }>(
      `SELECT version, name, applied_at FROM "${schema}".schema_migrations ORDER BY version`,
    );
    return r.rows.map((x) => ({ version: x.version, name: x.name, appliedAt: x.applied_at.toISOString() }));
  });
}

/**
 * Brings `schema` up to the last migration in `list`. Each pending migration runs in its own
 * transaction under an advisory lock and first re-checks the recorded version, so processes
 * starting together apply it exactly once. A schema recording a version this build does not
 * know is refused: an older rekey must not write a newer schema. Returns the versions applied.
 * `schema` must already be a validated identifier (unquoted).
 */
export async function migratePg(
  pool: PgPool,
  schema: string,
  list: readonly PgMigration[] = PG_MIGRATIONS,
): Promise<number[]> {
  checkList(list);
  const s = `"${schema}"`;
  const latest = list.length;
  const lockKey = `rekey-migrate:${schema}`;
  const current = async (c: { query: PgPool['query'] }): Promise<number> => {
    const r = await c.query<{ v: number }>(
      `SELECT COALESCE(MAX(version), 0)::int AS v FROM ${s}.schema_migrations`,
    );
    return r.rows[0]!.v;
  };
  const found = await inTransaction(pool, `preparing schema ${schema}`, async (c) => {
    await c.query(LOCK, [lockKey]);
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await c.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    return current(c);
  });
  if (found > latest) {
    throw new ConfigError(
      `postgres: schema "${schema}" has state schema version ${found}, newer than this rekey supports (${latest}); upgrade rekey or use another schema`,
    );
  }
  const applied: number[] = [];
  for (const m of list) {
    if (m.version <= found) continue;
    const ran = await inTransaction(
      pool,
      `applying migration ${m.version} ("${m.name}") to schema ${schema}`,
      async (c) => {
        await c.query(LOCK, [lockKey]);
        const now = await current(c);
        if (now >= m.version) return false;
        if (now !== m.version - 1) {
          throw new InvariantViolation(
            `postgres: schema ${schema} is at version ${now}, cannot apply ${m.version}`,
          );
        }
        await c.query(m.sql(s));
        await c.query(`INSERT INTO ${s}.schema_migrations (version, name) VALUES ($1, $2)`, [
          m.version,
          m.name,
        ]);
        return true;
      },
    );
    if (ran) applied.push(m.version);
  }
  return applied;
}
