import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ConflictError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type {
  DekRecord,
  DekReplacement,
  DekScanQuery,
  DekStore,
} from '../../../shared/core/ports/DekStore.js';
import type { AuditRecord } from '../../../shared/core/ports/StateStore.js';
import { redactUrl } from '../../../shared/stores/postgres/connection.js';
import { appliedPgMigrations, PG_MIGRATIONS } from '../../../shared/stores/postgres/migrations.js';
import { PostgresDekStore } from '../../../shared/stores/postgres/PostgresDekStore.js';
import { PostgresStateStore } from '../../../shared/stores/postgres/PostgresStateStore.js';
import { type PgCluster, startPostgres } from '../../support/postgres.js';

let cluster: PgCluster;
let pool: pg.Pool;

beforeAll(async () => {
  cluster = await startPostgres();
  pool = new pg.Pool({ connectionString: cluster.url, max: 6 });
});
afterAll(async () => {
  await pool?.end();
  await cluster?.stop();
});

const bytes = (...xs: number[]) => new Uint8Array(xs);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const dek = (id: string, keyRef: string, version: string, wrapped: Uint8Array, context = {}): DekRecord => ({
  id,
  keyRef,
  version,
  wrapped,
  context,
});

async function scanIds(store: DekStore, q: DekScanQuery, limit: number): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.scan(q, cursor, limit);
    out.push(...page.items.map((d) => d.id));
    cursor = page.cursor;
  } while (cursor !== null);
  return out;
}

describe('PostgresDekStore on an application table', () => {
  it('uuid ids, no context column: pages in uuid order, odd ids cannot exist, contexts are {}', async () => {
    await pool.query(`CREATE TABLE tenant_keys (
      key_id uuid PRIMARY KEY,
      kms_arn text NOT NULL,
      kms_version text NOT NULL,
      blob bytea NOT NULL
    );
    CREATE INDEX tenant_keys_rekey ON tenant_keys (kms_arn, kms_version, key_id);`);
    const store = new PostgresDekStore({
      id: 'tenants',
      pool,
      table: 'tenant_keys',
      columns: { id: 'key_id', key: 'kms_arn', version: 'kms_version', wrapped: 'blob', context: null },
      idType: 'uuid',
    });
    const key = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/k';
    const ids = [
      'ffffffff-0000-4000-8000-000000000001',
      '00000000-0000-4000-8000-00000000000a',
      'A0000000-0000-4000-8000-000000000002',
      '10000000-0000-4000-8000-000000000003',
    ];
    await store.insertMany(ids.map((id, i) => dek(id, key, i % 2 ? '1' : '2', bytes(i))));
    // Versions in order, and within each, uuid order (for lower-case hex also text order).
    const v1 = await scanIds(store, { keyRef: key, versions: ['1'] }, 1);
    const v2 = await scanIds(store, { keyRef: key, versions: ['2'] }, 1);
    expect(v1).toEqual(
      ids
        .filter((_, i) => i % 2)
        .map((id) => id.toLowerCase())
        .sort(),
    );
    expect(v2).toEqual(
      ids
        .filter((_, i) => !(i % 2))
        .map((id) => id.toLowerCase())
        .sort(),
    );
    expect(await scanIds(store, { keyRef: key }, 1)).toEqual([...v1, ...v2]);
    const got = await store.get('A0000000-0000-4000-8000-000000000002');
    expect(got?.id).toBe('a0000000-0000-4000-8000-000000000002');
    expect(got?.context).toEqual({});
    // Ids that are not uuids cannot be in the table: no query error, just absent.
    expect(await store.get('not-a-uuid')).toBeNull();
    expect(await store.replace('not-a-uuid', bytes(1), '3', bytes(1))).toBe(false);
    const res = await store.replaceMany([
      { id: 'nope', expected: bytes(0), newWrapped: bytes(9), newVersion: '3' },
      { id: ids[0]!, expected: bytes(0), newWrapped: bytes(9), newVersion: '3' },
    ]);
    expect(res).toEqual([false, true]);
    expect(await store.countByVersion(key)).toEqual({ '1': 2, '2': 1, '3': 1 });
    await expect(store.insertMany([dek('x', key, '1', bytes(1))])).rejects.toBeInstanceOf(ValidationError);
    // A context would be dropped silently without a column for it: refused.
    await expect(
      store.insertMany([dek('20000000-0000-4000-8000-000000000003', key, '1', bytes(1), { a: 'b' })]),
    ).rejects.toThrow(/no context column/);
    // The same uuid spelled differently is the same id.
    await expect(
      store.insertMany([dek(ids[2]!.toLowerCase().replaceAll('-', ''), key, '1', bytes(1))]),
    ).rejects.toBeInstanceOf(ConflictError);
  });

  it('bigint ids page, range and split in numeric order, not text order', async () => {
    await pool.query(`CREATE SCHEMA billing;
      CREATE TABLE billing.invoice_keys (
        id bigint PRIMARY KEY,
        kek text NOT NULL,
        kek_ver integer NOT NULL,
        wrapped bytea NOT NULL,
        aad jsonb
      );
      CREATE INDEX invoice_keys_rekey ON billing.invoice_keys (kek, kek_ver, id);`);
    const store = new PostgresDekStore({
      id: 'invoices',
      pool,
      table: 'billing.invoice_keys',
      columns: { id: 'id', key: 'kek', version: 'kek_ver', wrapped: 'wrapped', context: 'aad' },
    });
    const key = 'local://invoices';
    const nums = [1, 2, 9, 10, 11, 100, 1000, 20, 3];
    await store.insertMany(
      nums.map((n) => dek(String(n), key, n < 50 ? '2' : '10', bytes(n % 256), { n: String(n) })),
    );
    // Integer versions: 2 before 10 (numeric), and ids numeric within each.
    expect(await scanIds(store, { keyRef: key }, 2)).toEqual([
      '1',
      '2',
      '3',
      '9',
      '10',
      '11',
      '20',
      '100',
      '1000',
    ]);
    expect(await scanIds(store, { keyRef: key, idFrom: '3', idTo: '20' }, 1)).toEqual(['3', '9', '10', '11']);
    expect(await store.countByVersion(key)).toEqual({ '2': 7, '10': 2 });
    expect((await store.get('0010'))?.context).toEqual({ n: '10' });
    expect(await store.get('99999999999999999999')).toBeNull();
    await expect(store.scan({ keyRef: key, idFrom: 'abc' }, null, 5)).rejects.toBeInstanceOf(ValidationError);
    const points = await store.splitPoints({ keyRef: key }, 3);
    // Thirds of 1 2 3 9 10 11 20 100 1000 in numeric order (text order would cut at 100 and 2).
    expect(points).toEqual(['3', '11']);
    expect(await store.replace('9', bytes(1), '11', bytes(9))).toBe(true);
    expect((await store.get('9'))?.version).toBe('11');
  });

  it('refuses a table, column or type that does not fit, naming it', async () => {
    await pool.query('CREATE TABLE odd_keys (id text PRIMARY KEY, k text, v text, w text)');
    const make = (table: string, columns: Partial<Record<string, string | null>>, idType?: 'uuid') =>
      new PostgresDekStore({
        id: 'odd',
        pool,
        table,
        columns: { id: 'id', key: 'k', version: 'v', wrapped: 'w', context: null, ...columns },
        ...(idType ? { idType } : {}),
      });
    await expect(make('missing_table', {}).get('x')).rejects.toThrow(/table "missing_table" does not exist/);
    await expect(make('odd_keys', {}).get('x')).rejects.toThrow(
      /column wrapped "w" .* has type text; expected bytea/,
    );
    await expect(make('odd_keys', { key: 'kk' }).get('x')).rejects.toThrow(/has no column key "kk"/);
    await pool.query('ALTER TABLE odd_keys ALTER COLUMN w TYPE bytea USING w::bytea');
    await expect(make('odd_keys', {}, 'uuid').get('x')).rejects.toThrow(/idType is uuid but column "id"/);
    expect(() => make('a.b.c', {})).toThrow(ConfigError);
    expect(() => make('odd_keys', { id: 'id; drop table x' })).toThrow(ConfigError);
    expect(() => make('odd_keys', { key: 'id' })).toThrow(/both name column "id"/);
    expect(await make('odd_keys', {}).get('x')).toBeNull();
  });

  it('concurrent compare-and-swap from two pools: exactly one writer wins each DEK', async () => {
    const table = 'race_keys';
    const cols = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };
    const a = new PostgresDekStore({
      id: 'race-a',
      url: cluster.url,
      pool: { max: 4 },
      table,
      columns: cols,
    });
    const b = new PostgresDekStore({
      id: 'race-b',
      url: cluster.url,
      pool: { max: 4 },
      table,
      columns: cols,
    });
    try {
      await a.ensureTable();
      const key = 'local://race';
      const n = 400;
      await a.insertMany(Array.from({ length: n }, (_, i) => dek(`d${i}`, key, '1', bytes(i % 256, 1))));
      const batch = (tag: number): DekReplacement[] =>
        Array.from({ length: n }, (_, i) => ({
          id: `d${i}`,
          expected: bytes(i % 256, 1),
          newWrapped: bytes(i % 256, 2, tag),
          newVersion: String(tag),
        }));
      // Both re-wrappers read the same rows and race: batched CAS against single CAS calls.
      const [ra, rb] = await Promise.all([
        a.replaceMany(batch(2)),
        Promise.all(batch(3).map((it) => b.replace(it.id, it.newWrapped, it.newVersion, it.expected))),
      ]);
      for (let i = 0; i < n; i++) {
        expect(ra[i] !== rb[i]).toBe(true);
        const now = (await a.get(`d${i}`))!;
        expect(now.version).toBe(ra[i] ? '2' : '3');
        expect(hex(now.wrapped)).toBe(hex(bytes(i % 256, 2, ra[i] ? 2 : 3)));
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('scans use the (key, version, id) index', async () => {
    const store = new PostgresDekStore({
      id: 'plans',
      pool,
      table: 'plan_keys',
      columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    });
    await store.ensureTable();
    await store.insertMany(
      Array.from({ length: 5000 }, (_, i) => dek(`p${i}`, `local://k${i % 10}`, String(i % 4), bytes(1))),
    );
    await pool.query('ANALYZE plan_keys');
    // Whether the planner picks the index depends on table statistics; what the docs promise is
    // that the index serves these queries in order, with no sort. Prove that on one connection
    // where every other plan is priced out.
    const c = await pool.connect();
    try {
      await c.query('SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off');
      const plan = async (sql: string, args: unknown[]) =>
        (await c.query(`EXPLAIN ${sql}`, args)).rows.map((r) => r['QUERY PLAN'] as string).join('\n');
      const page = await plan(
        'SELECT d.id FROM plan_keys AS d WHERE d.kek_ref = $1 AND d.kek_version = $2 AND d.id > $3 ORDER BY d.id LIMIT 100',
        ['local://k1', '1', 'p1'],
      );
      expect(page).toMatch(/Index (Only )?Scan using plan_keys_rekey_key_version_id/);
      expect(page).not.toMatch(/Sort/);
      const next = await plan(
        'SELECT d.kek_version FROM plan_keys AS d WHERE d.kek_ref = $1 AND d.kek_version > $2 ORDER BY d.kek_version LIMIT 1',
        ['local://k1', '1'],
      );
      expect(next).toMatch(/Index Only Scan using plan_keys_rekey_key_version_id/);
      expect(next).not.toMatch(/Sort/);
    } finally {
      c.release();
    }
  });

  it('a 100,000-row replaceMany writes exactly the rows whose bytes still match', async () => {
    const store = new PostgresDekStore({
      id: 'bulk',
      pool,
      table: 'bulk_keys',
      columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    });
    await store.ensureTable();
    const key = 'local://bulk';
    const n = 100_000;
    const w = (i: number, v: number) => {
      const b = Buffer.alloc(40, v);
      b.writeUInt32BE(i, 0);
      return new Uint8Array(b);
    };
    await store.insertMany(
      Array.from({ length: n }, (_, i) =>
        dek(`b${String(i).padStart(6, '0')}`, key, '1', w(i, 1), { i: String(i) }),
      ),
    );
    // Every 7th item carries a stale expectation (an application wrote meanwhile).
    const items: DekReplacement[] = Array.from({ length: n }, (_, i) => ({
      id: `b${String(i).padStart(6, '0')}`,
      expected: i % 7 === 0 ? w(i, 9) : w(i, 1),
      newWrapped: w(i, 2),
      newVersion: '2',
    }));
    const t0 = performance.now();
    const res = await store.replaceMany(items);
    const ms = performance.now() - t0;
    console.log(`replaceMany of ${n} rows: ${Math.round(ms)} ms (${Math.round(n / (ms / 1000))} rows/s)`);
    const stale = Math.ceil(n / 7);
    expect(res.filter((x) => !x)).toHaveLength(stale);
    res.forEach((ok, i) => {
      if (ok === (i % 7 === 0)) throw new Error(`item ${i}: result ${ok}`);
    });
    expect(await store.countByVersion(key)).toEqual({ '1': stale, '2': n - stale });
    expect(hex((await store.get('b000001'))!.wrapped)).toBe(hex(w(1, 2)));
    expect(hex((await store.get('b000007'))!.wrapped)).toBe(hex(w(7, 1)));
  });

  it('is built from a config file entry (context: null, idType)', async () => {
    const cfg = loadConfig(
      [
        'version: 1',
        'providers:',
        '  local: { type: local, masterKey: env:UNUSED }',
        'stores:',
        '  tenants:',
        '    type: postgres',
        '    url: env:TENANTS_DB',
        '    table: public.tenant_keys',
        '    idType: uuid',
        '    columns: { id: key_id, key: kms_arn, version: kms_version, wrapped: blob, context: null }',
      ].join('\n'),
      'rekey.yaml',
    );
    const sc = cfg.stores.tenants!;
    if (sc.type !== 'postgres') throw new Error('expected a postgres store');
    expect(sc.columns.context).toBeNull();
    const store = new PostgresDekStore({ ...sc, id: 'tenants', url: cluster.url });
    try {
      expect(await store.countByVersion('aws-kms://arn:aws:kms:us-east-1:111122223333:key/k')).toEqual({
        '1': 2,
        '2': 1,
        '3': 1,
      });
    } finally {
      await store.close();
    }
  });
});

describe('PostgreSQL connection failures', () => {
  it('a server that is not there is a retryable store error', async () => {
    const store = new PostgresDekStore({
      id: 'down',
      url: 'postgres://rekey:s3cret-pw@127.0.0.1:1/nothing',
      table: 't',
      columns: { id: 'id', key: 'k', version: 'v', wrapped: 'w', context: null },
    });
    try {
      const err = await store.get('x').then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ProviderError);
      expect((err as ProviderError).retryable).toBe(true);
      expect((err as ProviderError).providerCode).toBe('ECONNREFUSED');
      expect((err as Error).message).not.toContain('s3cret-pw');
    } finally {
      await store.close();
    }
  });

  it('a wrong password or database is a configuration error that does not repeat the password', async () => {
    const wrong = cluster.url.replace(cluster.password, 'not-the-password');
    const a = PostgresStateStore.open({ url: wrong });
    await expect(a).rejects.toBeInstanceOf(ConfigError);
    await expect(a).rejects.not.toThrow(/not-the-password/);
    const b = PostgresStateStore.open({ url: cluster.url.replace(/\/[a-z_]+$/, '/no_such_db') });
    await expect(b).rejects.toBeInstanceOf(ConfigError);
    await expect(b).rejects.not.toThrow(cluster.password);
    expect(
      () =>
        new PostgresDekStore({
          id: 'bad',
          url: 'mysql://u:pw@h/db',
          table: 't',
          columns: { id: 'id', key: 'k', version: 'v', wrapped: 'w' },
        }),
    ).toThrow(ConfigError);
    expect(redactUrl(`postgres://app:${cluster.password}@db:5432/app?sslpassword=x`)).toBe(
      'postgres://app:***@db:5432/app?sslpassword=***',
    );
  });
});

describe('PostgresStateStore migrations and audit', () => {
  const rec = (seq: number): AuditRecord => ({
    seq,
    ts: '2026-11-29T00:00:00.000Z',
    actor: 'svc',
    action: 'key.rotate',
    target: null,
    details: { b: 1, a: [2, 'x'] },
    prevHash: seq === 1 ? 'genesis' : `h${seq - 1}`,
    hash: `h${seq}`,
  });

  it('processes opening one schema together apply each migration exactly once', async () => {
    const pools = [1, 2, 3, 4].map(() => new pg.Pool({ connectionString: cluster.url, max: 2 }));
    try {
      const stores = await Promise.all(
        pools.map((p) => PostgresStateStore.open({ pool: p, schema: 'shared_state' })),
      );
      const applied = await appliedPgMigrations(pool, 'shared_state');
      expect(applied.map((m) => m.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
      // All four work on the same tables.
      const wins = await Promise.all(stores.map((s) => s.auditAppend(rec(1))));
      expect(wins.filter(Boolean)).toHaveLength(1);
      // Re-opening applies nothing and records nothing new.
      await PostgresStateStore.open({ pool, schema: 'shared_state' });
      expect(await appliedPgMigrations(pool, 'shared_state')).toEqual(applied);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('a schema written by a newer rekey is refused', async () => {
    await PostgresStateStore.open({ pool, schema: 'future_state' });
    await pool.query(
      `INSERT INTO future_state.schema_migrations (version, name) VALUES (99, 'from the future')`,
    );
    await expect(PostgresStateStore.open({ pool, schema: 'future_state' })).rejects.toThrow(
      /schema version 99, newer than this rekey supports/,
    );
    await expect(PostgresStateStore.open({ pool, schema: 'bad-name' })).rejects.toBeInstanceOf(ConfigError);
  });

  it('the audit table refuses UPDATE, DELETE and TRUNCATE from any writer', async () => {
    const store = await PostgresStateStore.open({ pool, schema: 'audit_state' });
    for (let i = 1; i <= 3; i++) expect(await store.auditAppend(rec(i))).toBe(true);
    for (const sql of [
      `UPDATE audit_state.audit SET hash = 'forged' WHERE seq = 2`,
      'DELETE FROM audit_state.audit WHERE seq = 3',
      'TRUNCATE audit_state.audit',
    ]) {
      await expect(pool.query(sql)).rejects.toThrow(/append-only/);
    }
    expect(await store.auditRead(1, 10)).toEqual([rec(1), rec(2), rec(3)]);
    // Details keep their exact text (the hash chain is computed over it).
    const raw = await pool.query(`SELECT details FROM audit_state.audit WHERE seq = 1`);
    expect(raw.rows[0].details).toBe(JSON.stringify(rec(1).details));
  });
});
