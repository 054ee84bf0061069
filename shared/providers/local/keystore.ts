import Database from 'better-sqlite3';
import type { VersionState } from '../../core/domain/key.js';
import { ConfigError } from '../../core/errors.js';
import { checkValueMatches, makeCheckValue } from './envelope.js';

/**
 * The local KMS keystore: one SQLite file (WAL, so several processes can share it) or
 * ':memory:'. Version material is stored sealed under the master key; this module never
 * sees it in clear. Row shapes mirror the tables one to one.
 */
export interface KeyRow {
  name: string;
  tags: string;
  algorithm: string;
  enabled: number;
  primary_version: number;
  rotation_period_days: number | null;
  created_at: string;
  last_used_at: string | null;
}

export interface VersionRow {
  key_name: string;
  id: number;
  state: VersionState;
  created_at: string;
  destroy_at: string | null;
  compromised: number;
}

interface Migration {
  version: number;
  sql: string;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE keystore_meta (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
      );
      CREATE TABLE keys (
        name                 TEXT PRIMARY KEY,
        tags                 TEXT NOT NULL DEFAULT '{}',
        algorithm            TEXT NOT NULL CHECK (algorithm = 'AES_256'),
        enabled              INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        primary_version      INTEGER NOT NULL,
        rotation_period_days INTEGER,
        created_at           TEXT NOT NULL,
        last_used_at         TEXT
      );
      CREATE TABLE versions (
        key_name    TEXT NOT NULL REFERENCES keys(name) ON DELETE CASCADE,
        id          INTEGER NOT NULL CHECK (id >= 1),
        state       TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'destroy_scheduled', 'destroyed')),
        created_at  TEXT NOT NULL,
        destroy_at  TEXT,
        compromised INTEGER NOT NULL DEFAULT 0 CHECK (compromised IN (0, 1)),
        material    BLOB,
        PRIMARY KEY (key_name, id),
        CHECK ((state = 'destroyed') = (material IS NULL))
      );
      CREATE INDEX versions_destroy_at ON versions(destroy_at) WHERE state = 'destroy_scheduled';
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

function tableExists(db: Database.Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

function verifyMasterKey(db: Database.Database, path: string, masterKey: Buffer): void {
  const row = db.prepare("SELECT value FROM keystore_meta WHERE name = 'check'").get() as
    | { value: Buffer }
    | undefined;
  if (!row || !checkValueMatches(masterKey, row.value)) {
    throw new ConfigError(`master key does not match keystore ${path}`);
  }
}

function migrate(db: Database.Database, path: string, masterKey: Buffer, nowIso: string): void {
  db.transaction(() => {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)',
    );
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
    const current = row.v ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new ConfigError(
        `keystore ${path} has schema version ${current}, newer than this rekey supports (${SCHEMA_VERSION}); upgrade rekey`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      if (m.version === 1) {
        db.prepare("INSERT INTO keystore_meta (name, value) VALUES ('check', ?)").run(
          makeCheckValue(masterKey),
        );
      }
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, nowIso);
    }
  }).immediate();
}

/**
 * Opens (creating if needed) a keystore and proves the master key matches it. An existing
 * keystore is checked before anything is written, so a wrong key changes nothing.
 */
export function openKeystore(path: string, masterKey: Buffer, nowIso: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path);
  } catch (e) {
    throw new ConfigError(`cannot open keystore ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    db.pragma('busy_timeout = 5000');
    const userTables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
      .all() as { name: string }[];
    const ours = tableExists(db, 'keystore_meta');
    if (!ours && userTables.length > 0) {
      throw new ConfigError(`${path} is a SQLite database but not a rekey local keystore`);
    }
    if (ours) verifyMasterKey(db, path, masterKey);
    if (path !== ':memory:') db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    // Freed pages (destroyed versions' sealed material) are overwritten with zeros.
    db.pragma('secure_delete = ON');
    migrate(db, path, masterKey, nowIso);
    // Another process may have created the keystore between our first look and the migration.
    verifyMasterKey(db, path, masterKey);
    return db;
  } catch (e) {
    db.close();
    if (e instanceof ConfigError) throw e;
    const code = (e as { code?: string }).code;
    if (code === 'SQLITE_NOTADB')
      throw new ConfigError(`keystore ${path} is not a SQLite database`, { cause: e });
    throw new ConfigError(`cannot open keystore ${path}: ${(e as Error).message}`, { cause: e });
  }
}
