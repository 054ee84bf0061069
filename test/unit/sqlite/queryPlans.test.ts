import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteDekTable } from '../../../shared/stores/sqlite/identifiers.js';
import { dekStoreSql } from '../../../shared/stores/sqlite/SqliteDekStore.js';

/**
 * The DEK store must stay fast on a million-row table: every query it runs is answered from
 * an index seek or range, never a scan of the table. SQLite reports a full scan as "SCAN <table>".
 */
describe('SqliteDekStore query plans', () => {
  const t = quoteDekTable(
    'data_keys',
    { id: 'id', key: 'kek', version: 'ver', wrapped: 'w', context: 'ctx' },
    'p',
  );
  const sql = dekStoreSql(t);
  let db: Database.Database;
  beforeAll(() => {
    db = new Database(':memory:');
    db.exec(sql.createTable);
    db.exec(sql.createIndex);
    // Statistics like a real table's, so the planner's choice is the one it makes in production.
    const ins = db.prepare(sql.insert);
    db.transaction(() => {
      for (let i = 0; i < 2000; i++)
        ins.run(`d${i}`, `local://k${i % 5}`, String(i % 4), Buffer.from([i & 255]), '{}');
    })();
    db.exec('ANALYZE');
  });
  afterAll(() => db.close());

  const plan = (text: string, params: unknown[]): string =>
    (db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params) as { detail: string }[])
      .map((r) => r.detail)
      .join(' | ');

  it.each([
    ['pageFirst', ['local://k1', '1', 10]],
    ['pageAfter', ['local://k1', '1', 'd5', 10]],
    ['firstVersion', ['local://k1']],
    ['nextVersion', ['local://k1', '1']],
    ['count', ['local://k1']],
  ] as const)('%s searches the (key, version, id) index', (name, params) => {
    const p = plan(sql[name], [...params]);
    expect(p).toMatch(/SEARCH data_keys USING (COVERING )?INDEX data_keys_rekey_key_version_id/);
    expect(p).not.toMatch(/SCAN data_keys/);
    expect(p).not.toMatch(/TEMP B-TREE/);
  });

  it.each([
    ['get', ['d1']],
    ['replace', [Buffer.from([1]), '2', 'd1', Buffer.from([1])]],
  ] as const)('%s finds the row by primary key', (name, params) => {
    const p = plan(sql[name], [...params]);
    expect(p).toMatch(/SEARCH data_keys USING INDEX sqlite_autoindex_data_keys_1 \(id=\?\)/);
  });
});
