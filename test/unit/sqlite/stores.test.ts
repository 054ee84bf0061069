import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, IntegrityError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import { decodeCursor, encodeCursor } from '../../../shared/stores/sqlite/scanCursor.js';

const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };

describe('scan cursor', () => {
  it('round-trips ids and versions with any characters', () => {
    for (const pos of [
      { v: '1', id: 'a' },
      { v: 'key material 0x1f/ß', id: '{"v":"x"}\n\u2603' },
      { v: '', id: '' },
    ]) {
      expect(decodeCursor(encodeCursor(pos), 's')).toEqual(pos);
    }
  });

  it.each(['', 'not base64 json', Buffer.from('{"v":1,"id":"a"}').toString('base64url'), 'e30'])(
    'refuses a cursor it did not make: %j',
    (c) => {
      expect(() => decodeCursor(c, 'orders')).toThrow(ValidationError);
    },
  );
});

describe('SqliteDekStore edge cases', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
  });
  afterEach(() => db.close());

  it('names a missing table and suggests ensureTable', async () => {
    const store = SqliteDekStore.open({ id: 'orders', db, table: 'data_keys', columns: COLUMNS });
    await expect(store.get('x')).rejects.toThrow(ConfigError);
    await expect(store.get('x')).rejects.toThrow(/data_keys.*ensureTable/);
    await store.ensureTable();
    expect(await store.get('x')).toBeNull();
  });

  it('names a configured column the table lacks', async () => {
    db.exec('CREATE TABLE data_keys (id TEXT PRIMARY KEY, kek_ref TEXT, kek_version TEXT, wrapped_dek BLOB)');
    const store = SqliteDekStore.open({ id: 'orders', db, table: 'data_keys', columns: COLUMNS });
    await expect(store.countByVersion('local://k')).rejects.toThrow(/no column context "aad"/);
  });

  it('works on an application table it did not create, with its own column types', async () => {
    db.exec(`CREATE TABLE "Keys" ("DekId" TEXT PRIMARY KEY, "Kek" TEXT, "KekVer" TEXT, "Blob" BLOB, "Aad" TEXT,
             extra INTEGER DEFAULT 7)`);
    db.prepare('INSERT INTO "Keys" ("DekId", "Kek", "KekVer", "Blob", "Aad") VALUES (?, ?, ?, ?, NULL)').run(
      'd1',
      'local://k',
      '1',
      Buffer.from([1, 2]),
    );
    // A row the application left without a version sorts first; it must not hide the others.
    db.prepare('INSERT INTO "Keys" ("DekId", "Kek", "KekVer", "Blob") VALUES (?, ?, NULL, ?)').run(
      'd0',
      'local://k',
      Buffer.from([0]),
    );
    const store = SqliteDekStore.open({
      id: 'app',
      db,
      table: 'Keys',
      columns: { id: 'DekId', key: 'Kek', version: 'KekVer', wrapped: 'Blob', context: 'Aad' },
    });
    const page = await store.scan({ keyRef: 'local://k' }, null, 10);
    expect(page.items.map((d) => [d.id, d.version, d.context])).toEqual([['d1', '1', {}]]);
    expect(await store.replace('d1', new Uint8Array([3]), '2', new Uint8Array([1, 2]))).toBe(true);
    expect(db.prepare('SELECT extra FROM "Keys"').pluck().get()).toBe(7);
  });

  it('reports a stored context that is not JSON as an integrity error naming the DEK', async () => {
    const store = SqliteDekStore.open({
      id: 'orders',
      db,
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    db.prepare("INSERT INTO data_keys VALUES ('bad-ctx', 'local://k', '1', x'01', '{oops')").run();
    await expect(store.get('bad-ctx')).rejects.toThrow(IntegrityError);
    await expect(store.get('bad-ctx')).rejects.toThrow(/bad-ctx/);
  });

  it('refuses a cursor from another query and non-string context values', async () => {
    const store = SqliteDekStore.open({
      id: 'orders',
      db,
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    const recs = ['a', 'b', 'c'].map((id) => ({
      id,
      keyRef: 'local://k',
      version: id === 'c' ? '2' : '1',
      wrapped: new Uint8Array([1]),
      context: {},
    }));
    await store.insertMany(recs);
    const page = await store.scan({ keyRef: 'local://k', versions: ['1'] }, null, 1);
    expect(page.cursor).not.toBeNull();
    await expect(store.scan({ keyRef: 'local://k', versions: ['2'] }, page.cursor, 1)).rejects.toThrow(
      ValidationError,
    );
    await expect(store.scan({ keyRef: 'local://k', notVersion: '1' }, page.cursor, 1)).rejects.toThrow(
      ValidationError,
    );
    await expect(
      store.insertMany([
        {
          id: 'n',
          keyRef: 'local://k',
          version: '1',
          wrapped: new Uint8Array([1]),
          context: { n: 1 as unknown as string },
        },
      ]),
    ).rejects.toThrow(/DEK n: context value "n"/);
  });

  it('returns a null cursor on the page that holds the last DEK', async () => {
    const store = SqliteDekStore.open({
      id: 'orders',
      db,
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    await store.insertMany(
      ['a', 'b', 'c', 'd'].map((id, i) => ({
        id,
        keyRef: 'local://k',
        version: String(i % 2),
        wrapped: new Uint8Array([i]),
        context: {},
      })),
    );
    const p1 = await store.scan({ keyRef: 'local://k' }, null, 2);
    const p2 = await store.scan({ keyRef: 'local://k' }, p1.cursor, 2);
    expect([...p1.items, ...p2.items].map((d) => `${d.version}/${d.id}`)).toEqual([
      '0/a',
      '0/c',
      '1/b',
      '1/d',
    ]);
    expect(p1.cursor).not.toBeNull();
    expect(p2.cursor).toBeNull();
  });

  it('refuses a replacement without bytes or a version before writing anything', async () => {
    const store = SqliteDekStore.open({
      id: 'orders',
      db,
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    await store.insertMany([
      { id: 'a', keyRef: 'local://k', version: '1', wrapped: new Uint8Array([1]), context: {} },
    ]);
    const good = { id: 'a', expected: new Uint8Array([1]), newWrapped: new Uint8Array([2]), newVersion: '2' };
    await expect(store.replaceMany([good, { ...good, newVersion: '' }])).rejects.toThrow(/DEK a newVersion/);
    await expect(
      store.replace('a', 'not bytes' as unknown as Uint8Array, '2', new Uint8Array([1])),
    ).rejects.toThrow(ValidationError);
    expect((await store.get('a'))!.version).toBe('1');
  });

  it('does not close a Database it was given', async () => {
    const store = SqliteDekStore.open({
      id: 'orders',
      db,
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    await store.close();
    expect(db.open).toBe(true);
  });
});

describe('SqliteStateStore errors', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'rekey-sqlite-unit-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('names the path it cannot open', () => {
    expect(() => SqliteStateStore.open(join(dir, 'missing', 'state.db'))).toThrow(ConfigError);
    expect(() => SqliteStateStore.open(join(dir, 'missing', 'state.db'))).toThrow(/missing\/state\.db/);
  });

  it('turns a lock held past the busy timeout into a retryable ProviderError', async () => {
    const path = join(dir, 'state.db');
    const a = SqliteStateStore.open(path);
    const b = SqliteStateStore.open(path);
    b.db.pragma('busy_timeout = 0');
    a.db.exec('BEGIN IMMEDIATE');
    const err = await b.acquireLease('k', 'b', 1000, 0).then(
      () => null,
      (e: unknown) => e,
    );
    a.db.exec('ROLLBACK');
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ provider: 'sqlite', providerCode: 'SQLITE_BUSY', retryable: true });
    expect(await b.acquireLease('k', 'b', 1000, 0)).toBe(true);
    await a.close();
    await b.close();
  });

  it('refuses timestamps it cannot order by, naming the field', async () => {
    const s = SqliteStateStore.open(':memory:');
    await expect(
      s.saveRun({ id: 'r1', planId: 'p', startedAt: 'yesterday', status: 'running' }),
    ).rejects.toThrow(/run r1 startedAt/);
    await s.close();
  });
});
