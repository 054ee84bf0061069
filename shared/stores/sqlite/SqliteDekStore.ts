import { ConfigError, ConflictError, ValidationError } from '../../core/errors.js';
import type { DekColumns } from '../../core/policy/types.js';
import type { DekRecord, DekReplacement, DekScanQuery, DekStore } from '../../core/ports/DekStore.js';
import { ContextMemo, type StoredDekRow } from '../common/contexts.js';
import { checkScan, walkVersions } from '../common/versionWalk.js';
import { asBuffer, configure, guarded, openDatabase, type SqliteDatabase } from './connection.js';
import { type QuotedDekTable, quoteDekTable } from './identifiers.js';

export type SqliteDekStoreOptions = {
  /** Configured store id (from the config file), used in messages. */
  id: string;
  /** Present when a SqliteStoreConfig is passed as is. */
  type?: 'sqlite';
  table: string;
  columns: DekColumns;
  /** Create the table and its index if missing (see ensureTable). */
  create?: boolean;
} & ({ path: string } | { db: SqliteDatabase });

type DekRow = StoredDekRow;

/** The store's SQL, built from validated and quoted names only; every value is a parameter. */
export function dekStoreSql(t: QuotedDekTable) {
  const cols = `${t.id} AS id, ${t.key} AS k, ${t.version} AS v, ${t.wrapped} AS w, ${t.context} AS c`;
  return {
    createTable: `CREATE TABLE IF NOT EXISTS ${t.table} (
      ${t.id} TEXT PRIMARY KEY,
      ${t.key} TEXT NOT NULL,
      ${t.version} TEXT NOT NULL,
      ${t.wrapped} BLOB NOT NULL,
      ${t.context} TEXT NOT NULL DEFAULT '{}'
    )`,
    // Index names share the schema namespace with tables, hence the table-derived prefix.
    createIndex: `CREATE INDEX IF NOT EXISTS "${t.raw.table}_rekey_key_version_id" ON ${t.table} (${t.key}, ${t.version}, ${t.id})`,
    // Both page queries are range scans of the (key, version, id) index.
    pageFirst: `SELECT ${cols} FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} = ? ORDER BY ${t.id} LIMIT ?`,
    pageAfter: `SELECT ${cols} FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} = ? AND ${t.id} > ? ORDER BY ${t.id} LIMIT ?`,
    // Shard-bounded pages: ids in [from, to), still one index range each.
    pageRangeFirst: `SELECT ${cols} FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} = ? AND ${t.id} >= ? AND ${t.id} < ? ORDER BY ${t.id} LIMIT ?`,
    pageRangeAfter: `SELECT ${cols} FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} = ? AND ${t.id} > ? AND ${t.id} < ? ORDER BY ${t.id} LIMIT ?`,
    // Every id of a key outside one version, in id order (split points are read off it once per job).
    idsExcept: `SELECT ${t.id} AS id FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} <> ? ORDER BY ${t.id}`,
    countExcept: `SELECT COUNT(*) AS n FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} <> ?`,
    // One index seek each: the versions of a key are walked without reading their rows.
    // NULL sorts first in SQLite; an application row without a version must not end the walk.
    firstVersion: `SELECT ${t.version} FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} IS NOT NULL ORDER BY ${t.version} LIMIT 1`,
    nextVersion: `SELECT ${t.version} FROM ${t.table} WHERE ${t.key} = ? AND ${t.version} > ? ORDER BY ${t.version} LIMIT 1`,
    get: `SELECT ${cols} FROM ${t.table} WHERE ${t.id} = ?`,
    exists: `SELECT 1 FROM ${t.table} WHERE ${t.id} = ?`,
    // Compare-and-swap on the ciphertext bytes: a concurrent application write wins.
    replace: `UPDATE ${t.table} SET ${t.wrapped} = ?, ${t.version} = ? WHERE ${t.id} = ? AND ${t.wrapped} = ?`,
    count: `SELECT ${t.version} AS v, COUNT(*) AS n FROM ${t.table} WHERE ${t.key} = ? GROUP BY ${t.version}`,
    insert: `INSERT INTO ${t.table} (${t.id}, ${t.key}, ${t.version}, ${t.wrapped}, ${t.context}) VALUES (?, ?, ?, ?, ?)`,
  };
}

/** A page row as an array (id, key, version, wrapped, context): no object per row to build. */
type PageRow = [string, string, string, Buffer, string | null];

function prepareAll(db: SqliteDatabase, t: QuotedDekTable) {
  const sql = dekStoreSql(t);
  return {
    pageFirst: db.prepare(sql.pageFirst).raw(true),
    pageRangeFirst: db.prepare(sql.pageRangeFirst).raw(true),
    pageRangeAfter: db.prepare(sql.pageRangeAfter).raw(true),
    idsExcept: db.prepare(sql.idsExcept),
    countExcept: db.prepare(sql.countExcept),
    pageAfter: db.prepare(sql.pageAfter).raw(true),
    firstVersion: db.prepare(sql.firstVersion).pluck(),
    nextVersion: db.prepare(sql.nextVersion).pluck(),
    get: db.prepare(sql.get),
    exists: db.prepare(sql.exists).pluck(),
    replace: db.prepare(sql.replace),
    count: db.prepare(sql.count),
    insert: db.prepare(sql.insert),
  };
}

type Statements = ReturnType<typeof prepareAll>;

function checkBytes(b: unknown, what: string): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new ValidationError(`${what} must be bytes (Uint8Array)`);
  return b;
}

function checkReplacement(
  id: unknown,
  newWrapped: unknown,
  newVersion: unknown,
  expected: unknown,
  storeId: string,
) {
  if (typeof id !== 'string') throw new ValidationError(`store ${storeId}: a replacement has no DEK id`);
  if (typeof newVersion !== 'string' || newVersion.length === 0) {
    throw new ValidationError(`store ${storeId}: DEK ${id} newVersion must be a non-empty string`);
  }
  checkBytes(newWrapped, `store ${storeId}: DEK ${id} newWrapped`);
  checkBytes(expected, `store ${storeId}: DEK ${id} expected`);
}

function contextJson(ctx: unknown, where: string): string {
  if (ctx === undefined || ctx === null) return '{}';
  if (typeof ctx !== 'object' || Array.isArray(ctx)) {
    throw new ValidationError(`${where}: context must be an object`);
  }
  for (const [k, v] of Object.entries(ctx)) {
    if (typeof v !== 'string') throw new ValidationError(`${where}: context value "${k}" must be a string`);
  }
  return JSON.stringify(ctx);
}

/**
 * An application's table of wrapped DEKs in SQLite. Table and column names come from config
 * and are validated then quoted; every value is a bound parameter. The table is expected to
 * have an index on (key, version, id): ensureTable() creates table and index when missing.
 */
export class SqliteDekStore implements DekStore {
  readonly id: string;
  private readonly t: QuotedDekTable;
  private stmts: Statements | undefined;
  private readonly contexts: ContextMemo;

  private constructor(
    readonly db: SqliteDatabase,
    private readonly ownsDb: boolean,
    id: string,
    table: string,
    columns: DekColumns,
  ) {
    this.id = id;
    this.t = quoteDekTable(table, columns, id);
    this.contexts = new ContextMemo(id);
  }

  /** Opens the store on a file path, ':memory:' or a Database shared with other stores. */
  static open(opts: SqliteDekStoreOptions): SqliteDekStore {
    if (typeof opts.id !== 'string' || opts.id.length === 0) {
      throw new ConfigError('sqlite DEK store: id is missing');
    }
    const owns = 'path' in opts;
    // Validate names before touching the file.
    quoteDekTable(opts.table, opts.columns, opts.id);
    const db = owns ? openDatabase(opts.path) : opts.db;
    try {
      if (!owns) guarded(`store ${opts.id}: configuring the shared database`, () => configure(db));
      const store = new SqliteDekStore(db, owns, opts.id, opts.table, opts.columns);
      if (opts.create) store.createTable();
      return store;
    } catch (e) {
      if (owns) db.close();
      throw e;
    }
  }

  /** Creates the table (id TEXT PRIMARY KEY, ...) and the (key, version, id) index if missing. */
  async ensureTable(): Promise<void> {
    this.createTable();
  }

  private createTable(): void {
    const sql = dekStoreSql(this.t);
    guarded(`store ${this.id}: creating table ${this.t.table}`, () => {
      this.db.exec(sql.createTable);
      this.db.exec(sql.createIndex);
    });
    this.stmts = undefined;
  }

  /** Statements are prepared on first use, after checking the table has the configured columns. */
  private get q(): Statements {
    if (this.stmts) return this.stmts;
    const { table, columns } = this.t.raw;
    const found = guarded(`store ${this.id}: reading table ${table}`, () =>
      (this.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]).map((n) =>
        n.toLowerCase(),
      ),
    );
    if (found.length === 0) {
      throw new ConfigError(
        `store ${this.id}: table "${table}" does not exist in ${this.db.name}; create it or call ensureTable()`,
      );
    }
    const missing = Object.entries(columns).filter(([, name]) => !found.includes(name.toLowerCase()));
    if (missing.length > 0) {
      const list = missing.map(([role, name]) => `${role} "${name}"`).join(', ');
      throw new ConfigError(`store ${this.id}: table "${table}" has no column ${list}`);
    }
    this.stmts = guarded(`store ${this.id}: preparing statements`, () => prepareAll(this.db, this.t));
    return this.stmts;
  }

  async scan(
    query: DekScanQuery,
    cursor: string | null,
    limit: number,
  ): Promise<{ items: DekRecord[]; cursor: string | null }> {
    const keyRef = checkScan(this.id, query, limit);
    const q = this.q;
    // A shard bound: ids in [from, to). Either side may be open; '' is below every id and
    // U+FFFF above any id the application could use, so one pair of statements serves all.
    const ranged = query.idFrom !== undefined || query.idTo !== undefined;
    const from = query.idFrom ?? '';
    const to = query.idTo ?? '\uffff';
    if (ranged && from >= to) return { items: [], cursor: null };
    const what = `store ${this.id}: scanning ${keyRef}`;
    return walkVersions(
      {
        storeId: this.id,
        // One index seek per version: the versions of a key are walked without reading rows.
        versionAfter: async (after) =>
          guarded(
            what,
            () =>
              ((after === null ? q.firstVersion.get(keyRef) : q.nextVersion.get(keyRef, after)) as
                | string
                | undefined) ?? null,
          ),
        page: async (version, afterId, need) =>
          guarded(what, () => {
            // One row more than needed tells whether this version continues past the page.
            const rows = (
              ranged
                ? afterId === null
                  ? q.pageRangeFirst.all(keyRef, version, from, to, need + 1)
                  : q.pageRangeAfter.all(keyRef, version, afterId, to, need + 1)
                : afterId === null
                  ? q.pageFirst.all(keyRef, version, need + 1)
                  : q.pageAfter.all(keyRef, version, afterId, need + 1)
            ) as PageRow[];
            const count = Math.min(need, rows.length);
            const items = new Array<DekRecord>(count);
            for (let i = 0; i < count; i++) {
              const r = rows[i]!;
              items[i] = this.contexts.record(r[0], r[1], r[2], r[3], r[4]);
            }
            return { items, more: rows.length > need };
          }),
      },
      query,
      cursor,
      limit,
    );
  }

  async splitPoints(query: DekScanQuery, parts: number): Promise<string[]> {
    if (!Number.isInteger(parts) || parts < 1)
      throw new ValidationError(`store ${this.id}: parts must be >= 1`);
    const keyRef = query.keyRef;
    const skip = query.notVersion ?? '';
    return guarded(`store ${this.id}: splitting ${keyRef} into ${parts}`, () => {
      const total = (this.q.countExcept.get(keyRef, skip) as { n: number }).n;
      if (parts === 1 || total < parts * 2) return [];
      const every = total / parts;
      const points: string[] = [];
      let i = 0;
      let nextAt = every;
      for (const row of this.q.idsExcept.iterate(keyRef, skip) as Iterable<{ id: string }>) {
        i++;
        if (i >= nextAt) {
          if (points[points.length - 1] !== row.id) points.push(row.id);
          nextAt += every;
          if (points.length === parts - 1) break;
        }
      }
      return points;
    });
  }

  async get(id: string): Promise<DekRecord | null> {
    const row = guarded(`store ${this.id}: reading DEK ${id}`, () => this.q.get.get(id)) as
      | DekRow
      | undefined;
    return row ? this.contexts.record(row.id, row.k, row.v, row.w, row.c) : null;
  }

  async replace(
    id: string,
    newWrapped: Uint8Array,
    newVersion: string,
    expected: Uint8Array,
  ): Promise<boolean> {
    checkReplacement(id, newWrapped, newVersion, expected, this.id);
    const res = guarded(`store ${this.id}: replacing DEK ${id}`, () =>
      this.q.replace.run(asBuffer(newWrapped), newVersion, id, asBuffer(expected)),
    );
    return res.changes === 1;
  }

  async replaceMany(items: DekReplacement[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    for (const it of items) checkReplacement(it.id, it.newWrapped, it.newVersion, it.expected, this.id);
    const stmt = this.q.replace;
    // One transaction for the batch: one fsync-free WAL commit instead of one per row.
    const run = this.db.transaction((batch: DekReplacement[]) => {
      const out = new Array<boolean>(batch.length);
      for (let i = 0; i < batch.length; i++) {
        const it = batch[i]!;
        out[i] = stmt.run(asBuffer(it.newWrapped), it.newVersion, it.id, asBuffer(it.expected)).changes === 1;
      }
      return out;
    });
    return guarded(`store ${this.id}: replacing ${items.length} DEKs`, () => run(items));
  }

  async countByVersion(keyRef: string): Promise<Record<string, number>> {
    const rows = guarded(`store ${this.id}: counting DEKs of ${keyRef}`, () => this.q.count.all(keyRef)) as {
      v: string;
      n: number;
    }[];
    const out: Record<string, number> = {};
    for (const r of rows) out[r.v] = r.n;
    return out;
  }

  async insertMany(records: DekRecord[]): Promise<void> {
    if (records.length === 0) return;
    const rows = records.map((r) => {
      if (typeof r.id !== 'string' || r.id.length === 0) {
        throw new ValidationError(`store ${this.id}: every DEK needs a non-empty id`);
      }
      const where = `store ${this.id}: DEK ${r.id}`;
      if (typeof r.keyRef !== 'string' || r.keyRef.length === 0)
        throw new ValidationError(`${where}: keyRef is empty`);
      if (typeof r.version !== 'string' || r.version.length === 0) {
        throw new ValidationError(`${where}: version is empty`);
      }
      checkBytes(r.wrapped, `${where}: wrapped`);
      return [r.id, r.keyRef, r.version, asBuffer(r.wrapped), contextJson(r.context, where)] as const;
    });
    const q = this.q;
    const run = this.db.transaction(() => {
      for (const row of rows) {
        const id = row[0];
        try {
          q.insert.run(...row);
        } catch (e) {
          // Only a row that already holds this id is a duplicate; other constraints are not.
          if (q.exists.get(id) !== undefined) {
            throw new ConflictError(`store ${this.id}: a DEK with id "${id}" already exists`, { cause: e });
          }
          throw e;
        }
      }
    });
    guarded(`store ${this.id}: inserting ${records.length} DEKs`, run);
  }

  async close(): Promise<void> {
    if (this.ownsDb && this.db.open) this.db.close();
  }
}
