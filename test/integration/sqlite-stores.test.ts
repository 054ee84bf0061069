import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import ts from 'typescript';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/core/errors.js';
import type { DekRecord, DekReplacement } from '../../shared/core/ports/DekStore.js';
import type { AuditRecord } from '../../shared/core/ports/StateStore.js';
import { NEW_DB_PAGE_SIZE } from '../../shared/stores/sqlite/connection.js';
import { appliedMigrations, MIGRATIONS } from '../../shared/stores/sqlite/migrations.js';
import { SqliteDekStore } from '../../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../../shared/stores/sqlite/SqliteStateStore.js';
import { dekStoreContract } from '../contracts/dekStore.contract.js';
import { stateStoreContract } from '../contracts/stateStore.contract.js';

const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Compiles a module and the rekey modules it imports into `outDir` as plain ESM, so separate
 * Node processes can run the real store code. Type-only imports vanish in compilation;
 * better-sqlite3 is pointed at this checkout's copy.
 */
function buildForChildProcess(entry: string, outDir: string): string {
  const sqlite = pathToFileURL(createRequire(import.meta.url).resolve('better-sqlite3')).href;
  const pending = [resolve(ROOT, entry)];
  const done = new Set<string>();
  writeFileSync(join(outDir, 'package.json'), '{"type":"module"}');
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (done.has(file)) continue;
    done.add(file);
    const js = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    for (const m of js.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g))
      pending.push(resolve(dirname(file), `${m[1]}.ts`));
    const out = join(outDir, relative(ROOT, file).replace(/\.ts$/, '.js'));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, js.replaceAll("from 'better-sqlite3'", `from '${sqlite}'`));
  }
  return join(outDir, relative(ROOT, resolve(ROOT, entry)).replace(/\.ts$/, '.js'));
}

/** One racing process: tries every lease, then appends to the audit chain until it holds `total` records. */
const RACER = `
import { SqliteStateStore } from './shared/stores/sqlite/SqliteStateStore.js';
const [path, me, total, leases, startAt] = process.argv.slice(2);
const store = SqliteStateStore.open(path);
while (Date.now() < Number(startAt)) await new Promise((r) => setTimeout(r, 5));
const held = [];
for (let i = 0; i < Number(leases); i++) {
  if (await store.acquireLease('key:' + i, me, 60000, 1700000000000)) held.push(i);
}
let wins = 0;
for (;;) {
  const tail = await store.auditTail();
  const seq = (tail ? tail.seq : 0) + 1;
  if (seq > Number(total)) break;
  const ok = await store.auditAppend({ seq, ts: new Date().toISOString(), actor: me, action: 'race', target: null,
    details: {}, prevHash: tail ? tail.hash : 'genesis', hash: seq + ':' + me });
  if (ok) wins++;
}
await store.close();
process.stdout.write(JSON.stringify({ wins, held }));
`;

function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'rekey-sqlite-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

stateStoreContract('sqlite file', async () => {
  const t = tempDir();
  const store = SqliteStateStore.open(join(t.dir, 'state.db'));
  return {
    store,
    cleanup: async () => {
      await store.close();
      t.remove();
    },
  };
});

stateStoreContract('sqlite :memory:', async () => {
  const store = SqliteStateStore.open(':memory:');
  return { store, cleanup: () => store.close() };
});

dekStoreContract('sqlite file', async () => {
  const t = tempDir();
  const store = SqliteDekStore.open({
    id: 'orders',
    path: join(t.dir, 'app.db'),
    table: 'data_keys',
    columns: COLUMNS,
  });
  await store.ensureTable();
  return {
    store,
    cleanup: async () => {
      await store.close();
      t.remove();
    },
  };
});

dekStoreContract('sqlite :memory: (keyword-named table and columns)', async () => {
  // Names that are SQL keywords prove every identifier is quoted.
  const store = SqliteDekStore.open({
    id: 'keywords',
    path: ':memory:',
    table: 'order',
    columns: { id: 'select', key: 'key', version: 'group', wrapped: 'blob', context: 'values' },
    create: true,
  });
  return { store, cleanup: () => store.close() };
});

describe('sqlite stores on a shared file', () => {
  let t: ReturnType<typeof tempDir>;
  let path: string;
  beforeEach(() => {
    t = tempDir();
    path = join(t.dir, 'rekey.db');
  });
  afterEach(() => t.remove());

  it('runs each migration once and records it', async () => {
    const s1 = SqliteStateStore.open(path);
    const first = appliedMigrations(s1.db);
    expect(first.map((m) => m.version)).toEqual(MIGRATIONS.map((m) => m.version));
    await s1.close();
    const s2 = SqliteStateStore.open(path);
    const second = appliedMigrations(s2.db);
    // Reopening applies nothing: same rows, same timestamps.
    expect(second).toEqual(first);
    const count = s2.db.prepare('SELECT COUNT(*) FROM schema_migrations').pluck().get();
    expect(count).toBe(MIGRATIONS.length);
    await s2.close();
  });

  it('refuses a database written by a newer schema version', async () => {
    const s = SqliteStateStore.open(path);
    s.db
      .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
      .run(MIGRATIONS.length + 1, 'from the future', new Date().toISOString());
    await s.close();
    let err: unknown;
    try {
      SqliteStateStore.open(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toContain(`schema version ${MIGRATIONS.length + 1}`);
  });

  it('uses WAL, a busy timeout, foreign keys and synchronous=NORMAL', async () => {
    const s = SqliteStateStore.open(path);
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(s.db.pragma('synchronous', { simple: true })).toBe(1);
    expect(s.db.pragma('busy_timeout', { simple: true })).toBeGreaterThan(0);
    expect(s.db.pragma('page_size', { simple: true })).toBe(NEW_DB_PAGE_SIZE);
    await s.close();
  });

  it('never lets an audit row be updated or deleted, even by another writer on the file', async () => {
    const s = SqliteStateStore.open(path);
    const rec: AuditRecord = {
      seq: 1,
      ts: '2026-05-01T00:00:00.000Z',
      actor: 'svc',
      action: 'plan.apply',
      target: null,
      details: {},
      prevHash: '0',
      hash: 'h1',
    };
    expect(await s.auditAppend(rec)).toBe(true);
    const raw = new Database(path);
    expect(() => raw.prepare("UPDATE audit SET hash = 'x' WHERE seq = 1").run()).toThrow(/append-only/);
    expect(() => raw.prepare('DELETE FROM audit').run()).toThrow(/append-only/);
    raw.close();
    expect(await s.auditTail()).toEqual(rec);
    await s.close();
  });

  it('two connections race on auditAppend and acquireLease: exactly one wins each time', async () => {
    const a = SqliteStateStore.open(path);
    const b = SqliteStateStore.open(path);
    const rec = (seq: number, by: string): AuditRecord => ({
      seq,
      ts: '2026-05-01T00:00:00.000Z',
      actor: by,
      action: 'race',
      target: null,
      details: { by },
      prevHash: `h${seq - 1}`,
      hash: `h${seq}-${by}`,
    });
    for (let seq = 1; seq <= 50; seq++) {
      const [wa, wb] = await Promise.all([a.auditAppend(rec(seq, 'a')), b.auditAppend(rec(seq, 'b'))]);
      expect([wa, wb].filter(Boolean)).toHaveLength(1);
    }
    const log = await b.auditRead(1, 100);
    expect(log.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const now = 1_700_000_000_000;
    for (let i = 0; i < 20; i++) {
      const name = `key:${i}`;
      const [la, lb] = await Promise.all([
        a.acquireLease(name, 'proc-a', 30_000, now),
        b.acquireLease(name, 'proc-b', 30_000, now),
      ]);
      expect([la, lb].filter(Boolean)).toHaveLength(1);
    }
    await a.close();
    await b.close();
  });

  it('separate processes race on one file: the audit chain stays gap-free and each lease has one owner', async () => {
    const build = join(t.dir, 'build');
    mkdirSync(build);
    buildForChildProcess('shared/stores/sqlite/SqliteStateStore.ts', build);
    writeFileSync(join(build, 'racer.js'), RACER);
    await SqliteStateStore.open(path).close();
    const procs = ['p1', 'p2', 'p3', 'p4'];
    const total = 400;
    const leases = 300;
    const startAt = Date.now() + 1500;
    const run = promisify(execFile);
    const outs = await Promise.all(
      procs.map((p) =>
        run(
          process.execPath,
          [join(build, 'racer.js'), path, p, String(total), String(leases), String(startAt)],
          {
            cwd: build,
          },
        ),
      ),
    );
    const results = outs.map((o) => JSON.parse(o.stdout) as { wins: number; held: number[] });
    expect(results.reduce((n, r) => n + r.wins, 0)).toBe(total);
    const store = SqliteStateStore.open(path);
    const log = await store.auditRead(1, total + 10);
    await store.close();
    expect(log.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // Each winner had read the true tail: no append slipped in between its read and its write.
    log.forEach((r, i) => {
      expect(r.prevHash).toBe(i === 0 ? 'genesis' : log[i - 1]!.hash);
    });
    const held = results.flatMap((r) => r.held).sort((a, b) => a - b);
    expect(held).toEqual(Array.from({ length: leases }, (_, i) => i));
  });

  it('opens an existing file without changing its page size', async () => {
    const raw = new Database(path);
    raw.pragma('page_size = 4096');
    raw.exec('CREATE TABLE app_data (x INTEGER)');
    raw.close();
    const s = SqliteStateStore.open(path);
    expect(s.db.pragma('page_size', { simple: true })).toBe(4096);
    expect(
      await s.auditAppend({
        seq: 1,
        ts: 't',
        actor: 'a',
        action: 'x',
        target: null,
        details: {},
        prevHash: '',
        hash: 'h',
      }),
    ).toBe(true);
    await s.close();
  });

  it('a state store and a DEK store can share one Database', async () => {
    const db = new Database(path);
    const state = SqliteStateStore.open(db);
    const deks = SqliteDekStore.open({ id: 'app', db, table: 'data_keys', columns: COLUMNS, create: true });
    await deks.insertMany([
      { id: 'd1', keyRef: 'local://k', version: '1', wrapped: new Uint8Array([1]), context: {} },
    ]);
    await state.saveRun({ id: 'r1', planId: 'p1', startedAt: '2026-05-01T00:00:00.000Z', status: 'running' });
    await state.close();
    await deks.close();
    // Neither store closed a Database it did not open.
    expect(db.open).toBe(true);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('replaceMany re-wraps 200,000 DEKs in one call, per-item CAS intact', async () => {
    const store = SqliteDekStore.open({
      id: 'bulk',
      path,
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    const key = 'local://bulk';
    const n = 200_000;
    const wrappedOf = (i: number, v: number) => {
      const b = Buffer.alloc(40);
      b.writeUInt32BE(i, 0);
      b[4] = v;
      return b;
    };
    const records: DekRecord[] = [];
    for (let i = 0; i < n; i++) {
      records.push({
        id: `dek-${String(i).padStart(7, '0')}`,
        keyRef: key,
        version: '1',
        wrapped: wrappedOf(i, 1),
        context: {},
      });
    }
    await store.insertMany(records);
    // Every 1000th DEK was rewritten by the application since the scan read it.
    const items: DekReplacement[] = records.map((r, i) => ({
      id: r.id,
      expected: i % 1000 === 0 ? wrappedOf(i, 9) : r.wrapped,
      newWrapped: wrappedOf(i, 2),
      newVersion: '2',
    }));
    const res = await store.replaceMany(items);
    expect(res).toHaveLength(n);
    const lost = res.flatMap((ok, i) => (ok ? [] : [i]));
    expect(lost).toEqual(Array.from({ length: n / 1000 }, (_, k) => k * 1000));
    expect(await store.countByVersion(key)).toEqual({ '1': n / 1000, '2': n - n / 1000 });
    expect((await store.get('dek-0000001'))!.wrapped).toEqual(wrappedOf(1, 2));
    expect((await store.get('dek-0001000'))!.wrapped).toEqual(wrappedOf(1000, 1));
    // The leftovers are exactly what a scan for non-primary versions returns.
    const left = await store.scan({ keyRef: key, notVersion: '2' }, null, 1000);
    expect(left.items).toHaveLength(n / 1000);
    expect(left.cursor).toBeNull();
    await store.close();
  });
});
