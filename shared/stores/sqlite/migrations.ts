import { ConfigError, InvariantViolation } from '../../core/errors.js';
import { guarded, type SqliteDatabase } from './connection.js';

export interface Migration {
  /** Strictly increasing, starting at 1. Never renumber or edit a released migration. */
  version: number;
  name: string;
  sql: string;
}

/**
 * rekey's own schema, oldest first. Append a new entry for every change; opening an older
 * database applies the missing ones, each once, in its own transaction.
 *
 * Timestamps used for ordering are kept beside the JSON body as epoch milliseconds, so
 * "latest" does not depend on how an ISO string happens to be written.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial state schema',
    sql: `
      CREATE TABLE inventory_snapshots (
        id TEXT PRIMARY KEY,
        taken_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
      );
      CREATE INDEX inventory_snapshots_taken_at ON inventory_snapshots (taken_at_ms);

      CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        created_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
      );
      CREATE INDEX plans_created_at ON plans (created_at_ms);

      CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        plan_id TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL
      );
      CREATE INDEX runs_started_at ON runs (started_at_ms);

      CREATE TABLE action_records (
        plan_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (plan_id, idx)
      ) WITHOUT ROWID;

      CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE rewrap_jobs (
        id TEXT PRIMARY KEY,
        key_ref TEXT NOT NULL,
        store_id TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL
      );

      CREATE TABLE audit (
        seq INTEGER PRIMARY KEY CHECK (seq >= 1),
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      -- The audit log is append-only. The store never updates or deletes; these triggers make
      -- any other writer on the same file fail loudly too (the hash chain catches the rest).
      CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
      CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
    `,
  },
  {
    version: 2,
    name: 'records: processed events, approvals, incidents',
    sql: `
      CREATE TABLE records (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        rev INTEGER NOT NULL CHECK (rev >= 1),
        updated_at TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, id)
      );
    `,
  },
];

export interface AppliedMigration {
  version: number;
  name: string;
  appliedAt: string;
}

function checkList(list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (!Number.isInteger(m.version) || m.version !== i + 1) {
      throw new InvariantViolation(
        `sqlite migrations: entry ${i} ("${m.name}") has version ${m.version}, expected ${i + 1}`,
      );
    }
  });
}

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;

/** The schema versions recorded in the database, oldest first (empty for a new database). */
export function appliedMigrations(db: SqliteDatabase): AppliedMigration[] {
  return guarded('reading schema_migrations', () => {
    const exists = db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
      .get();
    if (!exists) return [];
    return db
      .prepare('SELECT version, name, applied_at AS appliedAt FROM schema_migrations ORDER BY version')
      .all() as AppliedMigration[];
  });
}

/**
 * Brings the database up to the last migration in `list`. Each pending migration runs in its
 * own IMMEDIATE transaction that first re-checks whether another connection applied it, so
 * two processes opening the same file at once apply it exactly once. A database that records
 * a version this build does not know is refused: an older rekey must not write a newer schema.
 * Returns the versions this call applied.
 */
export function migrate(
  db: SqliteDatabase,
  list: readonly Migration[] = MIGRATIONS,
  label = db.name,
): number[] {
  checkList(list);
  const latest = list.length;
  guarded(`creating schema_migrations in "${label}"`, () => db.exec(CREATE_TABLE));
  const current = (): number =>
    (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
  const found = guarded(`reading schema version of "${label}"`, current);
  if (found > latest) {
    throw new ConfigError(
      `sqlite: database "${label}" has schema version ${found}, newer than this rekey supports (${latest}); ` +
        'upgrade rekey or use another state file',
    );
  }
  const applied: number[] = [];
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of list) {
    if (m.version <= found) continue;
    const ran = guarded(`applying migration ${m.version} ("${m.name}") to "${label}"`, () =>
      db
        .transaction(() => {
          const now = current();
          if (now >= m.version) return false;
          if (now !== m.version - 1) {
            throw new InvariantViolation(`sqlite: "${label}" is at schema ${now}, cannot apply ${m.version}`);
          }
          db.exec(m.sql);
          record.run(m.version, m.name, new Date().toISOString());
          return true;
        })
        .immediate(),
    );
    if (ran) applied.push(m.version);
  }
  return applied;
}
