import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, InvariantViolation, ProviderError } from '../../../shared/core/errors.js';
import { appliedMigrations, type Migration, migrate } from '../../../shared/stores/sqlite/migrations.js';

const M1: Migration = { version: 1, name: 'notes', sql: 'CREATE TABLE notes (id TEXT PRIMARY KEY)' };
const M2: Migration = {
  version: 2,
  name: 'notes.body',
  sql: "ALTER TABLE notes ADD COLUMN body TEXT NOT NULL DEFAULT ''",
};

describe('sqlite migrations', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
  });
  afterEach(() => db.close());

  const columns = () =>
    (db.prepare("SELECT name FROM pragma_table_info('notes')").pluck().all() as string[]).sort();

  it('applies every migration of a new database, in order, and records each', () => {
    expect(migrate(db, [M1, M2])).toEqual([1, 2]);
    expect(columns()).toEqual(['body', 'id']);
    expect(appliedMigrations(db).map((m) => [m.version, m.name])).toEqual([
      [1, 'notes'],
      [2, 'notes.body'],
    ]);
  });

  it('brings an older database up to date, keeping its data', () => {
    migrate(db, [M1]);
    db.prepare("INSERT INTO notes (id) VALUES ('n1')").run();
    expect(migrate(db, [M1, M2])).toEqual([2]);
    expect(db.prepare('SELECT id, body FROM notes').all()).toEqual([{ id: 'n1', body: '' }]);
    expect(migrate(db, [M1, M2])).toEqual([]);
  });

  it('refuses a database newer than the list it knows', () => {
    migrate(db, [M1, M2]);
    expect(() => migrate(db, [M1], 'state.db')).toThrow(ConfigError);
    expect(() => migrate(db, [M1], 'state.db')).toThrow(/state\.db.*schema version 2.*supports \(1\)/);
  });

  it('rolls a failing migration back entirely and does not record it', () => {
    migrate(db, [M1]);
    const bad: Migration = {
      version: 2,
      name: 'half-done',
      sql: 'CREATE TABLE extra (x INTEGER); INSERT INTO no_such_table VALUES (1);',
    };
    expect(() => migrate(db, [M1, bad])).toThrow(ProviderError);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'extra'").get()).toBeUndefined();
    expect(appliedMigrations(db).map((m) => m.version)).toEqual([1]);
    // Fixed in a later build, it applies.
    expect(migrate(db, [M1, M2])).toEqual([2]);
  });

  it('refuses a list that is not numbered 1, 2, 3...', () => {
    expect(() => migrate(db, [M2])).toThrow(InvariantViolation);
    expect(() => migrate(db, [M1, { ...M2, version: 3 }])).toThrow(/expected 2/);
  });

  it('reads no versions from a database that was never migrated', () => {
    expect(appliedMigrations(db)).toEqual([]);
  });
});
