import { ConfigError, ConflictError, ValidationError } from '../../core/errors.js';
import type { DekIdType } from '../../core/policy/types.js';
import type { DekRecord, DekReplacement, DekScanQuery, DekStore } from '../../core/ports/DekStore.js';
import { ContextMemo, type StoredDekRow } from '../common/contexts.js';
import { checkScan, walkVersions } from '../common/versionWalk.js';
import {
  asBuffer,
  createPool,
  guarded,
  inTransaction,
  type PgPool,
  type PgPoolOptions,
} from './connection.js';
import { type PgDekColumns, type QuotedPgTable, quotePgDekTable } from './identifiers.js';

export type PostgresDekStoreOptions = {
  /** Configured store id (from the config file), used in messages. */
  id: string;
  /** Present when a PostgresStoreConfig is passed as is (with its url resolved). */
  type?: 'postgres';
  /** `table` or `schema.table`. */
  table: string;
  columns: PgDekColumns;
  /** The id column's type; checked against the catalog. Default: whatever the catalog says. */
  idType?: DekIdType;
  /** Rows per INSERT statement in insertMany (all in one transaction). Default 20,000. */
  insertChunk?: number;
} & ({ url: string; pool?: PgPoolOptions } | { pool: PgPool });

/** Column types the store can work with, by pg_type.typname; the value is the cast it uses. */
const ID_TYPES: Record<string, { cast: string; idType: DekIdType }> = {
  text: { cast: 'text', idType: 'text' },
  varchar: { cast: 'text', idType: 'text' },
  uuid: { cast: 'uuid', idType: 'uuid' },
  int8: { cast: 'int8', idType: 'bigint' },
  int4: { cast: 'int4', idType: 'bigint' },
};
const TEXT_TYPES: Record<string, string> = { text: 'text', varchar: 'text' };
const VERSION_TYPES: Record<string, string> = {
  text: 'text',
  varchar: 'text',
  int2: 'int2',
  int4: 'int4',
  int8: 'int8',
};
const CONTEXT_TYPES: Record<string, string> = { jsonb: 'jsonb', json: 'json', text: 'text', varchar: 'text' };

const UUID = /^(?:[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})$/i;
const INTEGER = /^[-+]?[0-9]{1,30}$/;
const RANGES: Record<string, [bigint, bigint]> = {
  int8: [-(2n ** 63n), 2n ** 63n - 1n],
  int4: [-(2n ** 31n), 2n ** 31n - 1n],
};

/** What the catalog says about the table, resolved once per store. */
interface Shape {
  idCast: string;
  versionCast: string;
  contextCast: string | null;
  /** Canonical form of an id for this column type, or null if no row can have it. */
  canonical(id: string): string | null;
  sql: ReturnType<typeof buildSql>;
}

function canonicalFor(cast: string): (id: string) => string | null {
  if (cast === 'uuid') {
    return (id) => {
      if (!UUID.test(id)) return null;
      const h = id.replaceAll('-', '').toLowerCase();
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    };
  }
  const range = RANGES[cast];
  if (range) {
    return (id) => {
      if (!INTEGER.test(id)) return null;
      const n = BigInt(id);
      return n < range[0] || n > range[1] ? null : n.toString();
    };
  }
  return (id) => id;
}

/** The store's SQL, from validated and quoted names and whitelisted casts; values are parameters. */
function buildSql(t: QuotedPgTable, idCast: string, versionCast: string, contextCast: string | null) {
  // Reads name columns through the alias `d`: in ORDER BY an unqualified name would resolve to
  // an output column of the same name (a text cast), not the table's column and its ordering.
  const id = `d.${t.id}`;
  const key = `d.${t.key}`;
  const version = `d.${t.version}`;
  const from = `FROM ${t.table} AS d`;
  const ctxCol = t.context ? `d.${t.context}::text` : 'NULL::text';
  const cols = `${id}::text AS id, ${key} AS k, ${version}::text AS v, d.${t.wrapped} AS w, ${ctxCol} AS c`;
  // A page is one key and one version, both known to the caller: its rows carry neither. An
  // integer version column still returns its own text, which a caller's "07" would not match.
  const pageCols = `${id}::text AS id, d.${t.wrapped} AS w, ${ctxCol} AS c${
    versionCast === 'text' ? '' : `, ${version}::text AS v`
  }`;
  const insertCols = [t.id, t.key, t.version, t.wrapped, ...(t.context ? [t.context] : [])].join(', ');
  const ctxSelect = t.context ? `, u.c::${contextCast}` : '';
  const ctxArray = t.context ? ', $5::text[]' : '';
  const filters = (first: number, notVersion: boolean, versions: boolean): string[] => {
    const where = [`${key} = $1`, `${version} IS NOT NULL`];
    let n = first;
    if (notVersion) where.push(`${version} <> $${++n}`);
    if (versions) where.push(`${version}::text = ANY($${++n}::text[])`);
    return where;
  };
  return {
    /**
     * One page of one version: a range scan of the (key, version, id) index in the id column's
     * order, after the cursor's id and inside a shard's [from, to) when given. Parameters:
     * key, version, then after / from / to as present, then the limit.
     */
    page(after: boolean, idFrom: boolean, idTo: boolean): string {
      const where = [`${key} = $1`, `${version} = $2`];
      let n = 2;
      if (after) where.push(`${id} > $${++n}`);
      if (idFrom) where.push(`${id} >= $${++n}`);
      if (idTo) where.push(`${id} < $${++n}`);
      return `SELECT ${pageCols} ${from} WHERE ${where.join(' AND ')} ORDER BY ${id} LIMIT $${n + 1}`;
    },
    /** Ids at the given 1-based ranks ($2) among a key's DEKs outside `notVersion` / inside `versions`. */
    splitIds(notVersion: boolean, versions: boolean): string {
      return `SELECT s.id FROM (
        SELECT ${id}::text AS id, row_number() OVER (ORDER BY ${id}) AS rn
        ${from} WHERE ${filters(2, notVersion, versions).join(' AND ')}
      ) s WHERE s.rn = ANY($2::int8[]) ORDER BY s.rn`;
    },
    /** The id $4 rows after the cursor $3 (or from the start) in one version's index range. */
    skipIds(after: boolean): string {
      return `SELECT ${id}::text AS id ${from} WHERE ${key} = $1 AND ${version} = $2${
        after ? ` AND ${id} > $3` : ''
      } ORDER BY ${id} OFFSET $${after ? 4 : 3} LIMIT 1`;
    },
    splitCount(notVersion: boolean, versions: boolean): string {
      return `SELECT COUNT(*)::int8 AS n ${from} WHERE ${filters(1, notVersion, versions).join(' AND ')}`;
    },
    // One index seek each: the versions of a key are walked without reading their rows.
    firstVersion: `SELECT ${version}::text AS v ${from} WHERE ${key} = $1 AND ${version} IS NOT NULL ORDER BY ${version} LIMIT 1`,
    nextVersion: `SELECT ${version}::text AS v ${from} WHERE ${key} = $1 AND ${version} > $2 ORDER BY ${version} LIMIT 1`,
    get: `SELECT ${cols} ${from} WHERE ${id} = $1`,
    // Compare-and-swap on the ciphertext bytes: a concurrent application write wins.
    replace: `UPDATE ${t.table} SET ${t.wrapped} = $1, ${t.version} = $2 WHERE ${t.id} = $3 AND ${t.wrapped} = $4`,
    // The batch as arrays, joined on the primary key; the CAS condition holds per row, and
    // RETURNING names the items that were written. Under READ COMMITTED a row changed by a
    // concurrent transaction is re-checked against its new bytes before being updated.
    replaceMany: `UPDATE ${t.table} AS d SET ${t.wrapped} = u.nw, ${t.version} = u.nv::${versionCast}
      FROM unnest($1::${idCast}[], $2::bytea[], $3::text[], $4::bytea[], $5::int4[]) AS u(id, nw, nv, ex, i)
      WHERE ${id} = u.id AND d.${t.wrapped} = u.ex
      RETURNING u.i`,
    // The same, for the usual batch where every item moves to one version: the ciphertexts go
    // as two binary parameters, each the batch's byte strings end to end, cut apart by 1-based
    // offsets and lengths. Arrays of bytea travel as hex text, twice the bytes and an encoding
    // pass on each side; the re-wrap engine writes every batch it moves this way.
    replaceManyPacked: `UPDATE ${t.table} AS d
      SET ${t.wrapped} = substring($2::bytea FROM u.no FOR u.nl), ${t.version} = $3::text::${versionCast}
      FROM unnest($1::${idCast}[], $5::int4[], $6::int4[], $7::int4[], $8::int4[], $9::int4[]) AS u(id, no, nl, eo, el, i)
      WHERE ${id} = u.id AND d.${t.wrapped} = substring($4::bytea FROM u.eo FOR u.el)
      RETURNING u.i`,
    // The common batch of all: one version, every new ciphertext one length and every old one
    // another (a DEK size, a key version's layout). Each item's bytes sit at its ordinal times
    // the length, so only the ids travel as an array; and the answer is a count, with the
    // ordinals written only when some item was not (a lost race).
    replaceManyStride: `WITH up AS (
        UPDATE ${t.table} AS d
        SET ${t.wrapped} = substring($2::bytea FROM (u.n::int4 - 1) * $5::int4 + 1 FOR $5::int4),
          ${t.version} = $3::text::${versionCast}
        FROM unnest($1::${idCast}[]) WITH ORDINALITY AS u(id, n)
        WHERE ${id} = u.id AND d.${t.wrapped} = substring($4::bytea FROM (u.n::int4 - 1) * $6::int4 + 1 FOR $6::int4)
        RETURNING u.n
      )
      SELECT count(*)::int4 AS n, CASE WHEN count(*) < $7::int4 THEN array_agg(up.n::int4) END AS done FROM up`,
    count: `SELECT ${version}::text AS v, COUNT(*)::int8 AS n ${from} WHERE ${key} = $1 AND ${version} IS NOT NULL GROUP BY ${version}`,
    insert: `INSERT INTO ${t.table} (${insertCols})
      SELECT u.id, u.k, u.v::${versionCast}, u.w${ctxSelect}
      FROM unnest($1::${idCast}[], $2::text[], $3::text[], $4::bytea[]${ctxArray}) AS u(id, k, v, w${t.context ? ', c' : ''})`,
    existing: `SELECT ${id}::text AS id ${from} WHERE ${id} = ANY($1::${idCast}[]) LIMIT 1`,
  };
}

function checkBytes(b: unknown, what: string): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new ValidationError(`${what} must be bytes (Uint8Array)`);
  return b;
}

function checkReplacement(r: Partial<DekReplacement>, storeId: string): void {
  if (typeof r.id !== 'string') throw new ValidationError(`store ${storeId}: a replacement has no DEK id`);
  if (typeof r.newVersion !== 'string' || r.newVersion.length === 0) {
    throw new ValidationError(`store ${storeId}: DEK ${r.id} newVersion must be a non-empty string`);
  }
  checkBytes(r.newWrapped, `store ${storeId}: DEK ${r.id} newWrapped`);
  checkBytes(r.expected, `store ${storeId}: DEK ${r.id} expected`);
}

function contextJson(ctx: unknown, where: string): string {
  if (ctx === undefined || ctx === null) return '{}';
  if (typeof ctx !== 'object' || Array.isArray(ctx))
    throw new ValidationError(`${where}: context must be an object`);
  for (const [k, v] of Object.entries(ctx)) {
    if (typeof v !== 'string') throw new ValidationError(`${where}: context value "${k}" must be a string`);
  }
  return JSON.stringify(ctx);
}

type Row = StoredDekRow;

/** A page row: the key is the page's own, and so is the version of a text column. */
type PageRow = Omit<Row, 'k' | 'v'> & { v?: string };

/**
 * An application's existing table of wrapped DEKs in PostgreSQL, mapped by configuration: the
 * table and its columns keep their names, nothing is migrated. The id column may be text,
 * uuid or bigint: scans page in that column's own order. Expects an index on
 * (key, version, id); ensureTable() creates table and index for tests and demos only.
 */
export class PostgresDekStore implements DekStore {
  readonly id: string;
  readonly pool: PgPool;
  private readonly t: QuotedPgTable;
  private readonly ownsPool: boolean;
  private readonly idType: DekIdType | undefined;
  private readonly insertChunk: number;
  private shape: Promise<Shape> | undefined;
  private readonly contexts: ContextMemo;

  constructor(opts: PostgresDekStoreOptions) {
    if (typeof opts.id !== 'string' || opts.id.length === 0) {
      throw new ConfigError('postgres DEK store: id is missing');
    }
    this.id = opts.id;
    this.contexts = new ContextMemo(opts.id);
    this.t = quotePgDekTable(opts.table, opts.columns, opts.id);
    if (opts.idType !== undefined && !['text', 'uuid', 'bigint'].includes(opts.idType)) {
      throw new ConfigError(`stores.${opts.id}.idType must be text, uuid or bigint`);
    }
    this.idType = opts.idType;
    this.insertChunk = opts.insertChunk ?? 20_000;
    if ('url' in opts && typeof opts.url === 'string') {
      this.pool = createPool(opts.url, `stores.${opts.id}`, opts.pool as PgPoolOptions | undefined);
      this.ownsPool = true;
    } else {
      this.pool = (opts as { pool: PgPool }).pool;
      this.ownsPool = false;
    }
  }

  /**
   * Creates the table and its (key, version, id) index if missing, for tests and demos. The id
   * column takes the configured idType (default text); the context column, if any, is jsonb.
   */
  async ensureTable(): Promise<void> {
    const t = this.t;
    const idSql = { text: 'text', uuid: 'uuid', bigint: 'bigint' }[this.idType ?? 'text'];
    const schema = t.raw.schema ? `CREATE SCHEMA IF NOT EXISTS "${t.raw.schema}";` : '';
    const index = `"${t.raw.table}_rekey_key_version_id"`;
    await guarded(`store ${this.id}: creating table ${t.table}`, () =>
      this.pool.query(`${schema}
        CREATE TABLE IF NOT EXISTS ${t.table} (
          ${t.id} ${idSql} PRIMARY KEY,
          ${t.key} text NOT NULL,
          ${t.version} text NOT NULL,
          ${t.wrapped} bytea NOT NULL${t.context ? `,\n          ${t.context} jsonb NOT NULL DEFAULT '{}'` : ''}
        );
        CREATE INDEX IF NOT EXISTS ${index} ON ${t.table} (${t.key}, ${t.version}, ${t.id});`),
    );
    this.shape = undefined;
  }

  /** Reads the table's column types once, checks them and builds the statements. */
  private get q(): Promise<Shape> {
    if (!this.shape) {
      this.shape = this.inspect();
      this.shape.catch(() => {
        this.shape = undefined;
      });
    }
    return this.shape;
  }

  private async inspect(): Promise<Shape> {
    const { raw } = this.t;
    const rows = await guarded(`store ${this.id}: reading the definition of ${this.t.table}`, async () => {
      const r = await this.pool.query<{ name: string; type: string }>(
        `SELECT a.attname AS name, t.typname AS type
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
        [this.t.table],
      );
      return r.rows;
    });
    const where = raw.schema ? `${raw.schema}.${raw.table}` : raw.table;
    if (rows.length === 0) {
      throw new ConfigError(
        `store ${this.id}: table "${where}" does not exist (names are case-sensitive); create it or call ensureTable()`,
      );
    }
    const types = new Map(rows.map((r) => [r.name, r.type]));
    const typeOf = (role: keyof PgDekColumns, allowed: Record<string, unknown>, what: string): string => {
      const name = raw.columns[role] as string;
      const type = types.get(name);
      if (type === undefined)
        throw new ConfigError(`store ${this.id}: table "${where}" has no column ${role} "${name}"`);
      if (!(type in allowed)) {
        throw new ConfigError(
          `store ${this.id}: column ${role} "${name}" of "${where}" has type ${type}; expected ${what}`,
        );
      }
      return type;
    };
    const idType = ID_TYPES[typeOf('id', ID_TYPES, 'text, varchar, uuid, bigint or integer')]!;
    if (this.idType && this.idType !== idType.idType) {
      throw new ConfigError(
        `stores.${this.id}.idType is ${this.idType} but column "${raw.columns.id}" of "${where}" is ${idType.idType}`,
      );
    }
    typeOf('key', TEXT_TYPES, 'text or varchar');
    const versionCast = VERSION_TYPES[typeOf('version', VERSION_TYPES, 'text, varchar or an integer type')]!;
    typeOf('wrapped', { bytea: 1 }, 'bytea');
    const contextCast = this.t.context
      ? CONTEXT_TYPES[typeOf('context', CONTEXT_TYPES, 'jsonb, json or text')]!
      : null;
    return {
      idCast: idType.cast,
      versionCast,
      contextCast,
      canonical: canonicalFor(idType.cast),
      sql: buildSql(this.t, idType.cast, versionCast, contextCast),
    };
  }

  async scan(
    query: DekScanQuery,
    cursor: string | null,
    limit: number,
  ): Promise<{ items: DekRecord[]; cursor: string | null }> {
    const keyRef = checkScan(this.id, query, limit);
    const { sql, canonical } = await this.q;
    const what = `store ${this.id}: scanning ${keyRef}`;
    const one = async (text: string, values: unknown[]): Promise<string | null> => {
      const r = await this.pool.query<{ v: string }>(text, values);
      return r.rows[0]?.v ?? null;
    };
    // A shard bound: ids in [from, to), compared by the id column's own type and order.
    const bound = (v: string | undefined, name: string): string | undefined => {
      if (v === undefined) return undefined;
      const c = canonical(v);
      if (c === null) throw new ValidationError(`store ${this.id}: scan ${name} "${v}" is not a valid id`);
      return c;
    };
    const from = bound(query.idFrom, 'idFrom');
    const to = bound(query.idTo, 'idTo');
    const pageSql = (after: boolean) => sql.page(after, !after && from !== undefined, to !== undefined);
    const pageArgs = (version: string, after: string | null, n: number): unknown[] => {
      const args: unknown[] = [keyRef, version];
      if (after !== null) args.push(after);
      else if (from !== undefined) args.push(from);
      if (to !== undefined) args.push(to);
      args.push(n);
      return args;
    };
    return guarded(what, () =>
      walkVersions(
        {
          storeId: this.id,
          versionAfter: (after) =>
            after === null ? one(sql.firstVersion, [keyRef]) : one(sql.nextVersion, [keyRef, after]),
          page: async (version, afterId, need) => {
            // One row more than needed tells whether this version continues past the page.
            const rows = (
              await this.pool.query<PageRow>(pageSql(afterId !== null), pageArgs(version, afterId, need + 1))
            ).rows;
            const items: DekRecord[] = [];
            const count = Math.min(need, rows.length);
            for (let i = 0; i < count; i++) {
              const r = rows[i]!;
              items.push(this.contexts.record(r.id, keyRef, r.v ?? version, r.w, r.c));
            }
            return { items, more: rows.length > need };
          },
        },
        query,
        cursor,
        limit,
      ),
    );
  }

  /**
   * Ids that cut the matching DEKs into `parts` ranges of about equal size, read off one
   * ordered pass over the index (row_number at the cut ranks).
   */
  async splitPoints(query: DekScanQuery, parts: number): Promise<string[]> {
    if (!Number.isInteger(parts) || parts < 1)
      throw new ValidationError(`store ${this.id}: parts must be >= 1`);
    const keyRef = query?.keyRef;
    if (typeof keyRef !== 'string' || keyRef.length === 0) {
      throw new ValidationError(`store ${this.id}: splitPoints needs a keyRef`);
    }
    const { sql } = await this.q;
    const hasNot = query.notVersion !== undefined;
    const hasList = query.versions !== undefined;
    const filters: unknown[] = [];
    if (hasNot) filters.push(query.notVersion);
    if (hasList) filters.push(query.versions);
    return guarded(`store ${this.id}: splitting ${keyRef} into ${parts}`, async () => {
      // The usual job moves one old version: its ids are in order in the (key, version, id)
      // index, and the cuts are read off one pass of it, a skip from each cut to the next.
      const counts = Object.entries(await this.countByVersion(keyRef)).filter(
        ([v]) => v !== query.notVersion && (!hasList || query.versions!.includes(v)),
      );
      if (counts.length === 1) {
        const [version, total] = counts[0]!;
        if (parts === 1 || total < parts * 2) return [];
        const points: string[] = [];
        let rank = 0;
        for (let i = 1; i < parts; i++) {
          const at = Math.ceil((i * total) / parts);
          const after = points[points.length - 1];
          const r = await this.pool.query<{ id: string }>(
            sql.skipIds(after !== undefined),
            after !== undefined ? [keyRef, version, after, at - rank - 1] : [keyRef, version, at - 1],
          );
          const id = r.rows[0]?.id;
          if (id === undefined) break;
          points.push(id);
          rank = at;
        }
        return points;
      }
      const count = await this.pool.query<{ n: string }>(sql.splitCount(hasNot, hasList), [
        keyRef,
        ...filters,
      ]);
      const total = Number(count.rows[0]?.n ?? 0);
      if (parts === 1 || total < parts * 2) return [];
      const ranks: number[] = [];
      for (let i = 1; i < parts; i++) ranks.push(Math.ceil((i * total) / parts));
      const r = await this.pool.query<{ id: string }>(sql.splitIds(hasNot, hasList), [
        keyRef,
        ranks,
        ...filters,
      ]);
      const points: string[] = [];
      for (const row of r.rows) if (points[points.length - 1] !== row.id) points.push(row.id);
      return points;
    });
  }

  async get(id: string): Promise<DekRecord | null> {
    const { sql, canonical } = await this.q;
    const key = typeof id === 'string' ? canonical(id) : null;
    if (key === null) return null;
    const r = await guarded(`store ${this.id}: reading DEK ${id}`, () =>
      this.pool.query<Row>(sql.get, [key]),
    );
    const row = r.rows[0];
    return row ? this.contexts.record(row.id, row.k, row.v, row.w, row.c) : null;
  }

  async replace(
    id: string,
    newWrapped: Uint8Array,
    newVersion: string,
    expected: Uint8Array,
  ): Promise<boolean> {
    checkReplacement({ id, newWrapped, newVersion, expected }, this.id);
    const { sql, canonical } = await this.q;
    const key = canonical(id);
    if (key === null) return false;
    const r = await guarded(`store ${this.id}: replacing DEK ${id}`, () =>
      this.pool.query(sql.replace, [asBuffer(newWrapped), newVersion, key, asBuffer(expected)]),
    );
    return r.rowCount === 1;
  }

  async replaceMany(items: DekReplacement[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    for (const it of items) checkReplacement(it, this.id);
    const { sql, canonical } = await this.q;
    const out = new Array<boolean>(items.length).fill(false);
    // Items for the same DEK apply in order: the k-th occurrence of an id goes in round k, so
    // each round's UPDATE touches a row at most once. Usually there is one round.
    const rounds: number[][] = [];
    const seen = new Map<string, number>();
    items.forEach((it, i) => {
      const key = canonical(it.id);
      if (key === null) return;
      const n = seen.get(key) ?? 0;
      seen.set(key, n + 1);
      if (!rounds[n]) rounds[n] = [];
      rounds[n].push(i);
    });
    const runRound = async (
      exec: (text: string, values: unknown[]) => Promise<{ rows: unknown[] }>,
      idx: number[],
    ) => {
      const ids: string[] = [];
      const first = items[idx[0]!]!;
      const version = first.newVersion;
      const newLength = first.newWrapped.length;
      const oldLength = first.expected.length;
      if (
        newLength > 0 &&
        oldLength > 0 &&
        idx.every((i) => {
          const it = items[i]!;
          return (
            it.newVersion === version &&
            it.newWrapped.length === newLength &&
            it.expected.length === oldLength
          );
        })
      ) {
        const nw = Buffer.allocUnsafe(newLength * idx.length);
        const ex = Buffer.allocUnsafe(oldLength * idx.length);
        idx.forEach((i, k) => {
          const it = items[i]!;
          ids.push(canonical(it.id)!);
          nw.set(it.newWrapped, k * newLength);
          ex.set(it.expected, k * oldLength);
        });
        const r = await exec(sql.replaceManyStride, [ids, nw, version, ex, newLength, oldLength, idx.length]);
        const row = r.rows[0] as { n: number; done: number[] | null } | undefined;
        if (row?.done) {
          for (const n of row.done) out[idx[n - 1]!] = true;
        } else if (row?.n === idx.length) {
          for (const i of idx) out[i] = true;
        }
        return;
      }
      if (idx.every((i) => items[i]!.newVersion === version)) {
        const packed = (pick: (it: DekReplacement) => Uint8Array) => {
          const parts = idx.map((i) => pick(items[i]!));
          const offsets: number[] = [];
          const lengths: number[] = [];
          let at = 1;
          for (const b of parts) {
            offsets.push(at);
            lengths.push(b.length);
            at += b.length;
          }
          return { bytes: Buffer.concat(parts), offsets, lengths };
        };
        for (const i of idx) ids.push(canonical(items[i]!.id)!);
        const nw = packed((it) => it.newWrapped);
        const ex = packed((it) => it.expected);
        const r = await exec(sql.replaceManyPacked, [
          ids,
          nw.bytes,
          version,
          ex.bytes,
          nw.offsets,
          nw.lengths,
          ex.offsets,
          ex.lengths,
          idx,
        ]);
        for (const row of r.rows as { i: number }[]) out[row.i] = true;
        return;
      }
      const nw: Buffer[] = [];
      const nv: string[] = [];
      const ex: Buffer[] = [];
      for (const i of idx) {
        const it = items[i]!;
        ids.push(canonical(it.id)!);
        nw.push(asBuffer(it.newWrapped));
        nv.push(it.newVersion);
        ex.push(asBuffer(it.expected));
      }
      const r = await exec(sql.replaceMany, [ids, nw, nv, ex, idx]);
      for (const row of r.rows as { i: number }[]) out[row.i] = true;
    };
    const what = `store ${this.id}: replacing ${items.length} DEKs`;
    if (rounds.length <= 1) {
      if (rounds[0]) await guarded(what, () => runRound((text, v) => this.pool.query(text, v), rounds[0]!));
      return out;
    }
    await inTransaction(this.pool, what, async (c) => {
      for (const idx of rounds) await runRound((text, v) => c.query(text, v), idx);
    });
    return out;
  }

  async countByVersion(keyRef: string): Promise<Record<string, number>> {
    const { sql } = await this.q;
    const r = await guarded(`store ${this.id}: counting DEKs of ${keyRef}`, () =>
      this.pool.query<{ v: string; n: string }>(sql.count, [keyRef]),
    );
    const out: Record<string, number> = {};
    for (const row of r.rows) out[row.v] = Number(row.n);
    return out;
  }

  async insertMany(records: DekRecord[]): Promise<void> {
    if (records.length === 0) return;
    const { sql, canonical } = await this.q;
    const ids: string[] = [];
    const keys: string[] = [];
    const versions: string[] = [];
    const wrapped: Buffer[] = [];
    const contexts: string[] = [];
    const inBatch = new Set<string>();
    for (const r of records) {
      if (typeof r.id !== 'string' || r.id.length === 0) {
        throw new ValidationError(`store ${this.id}: every DEK needs a non-empty id`);
      }
      const where = `store ${this.id}: DEK ${r.id}`;
      const id = canonical(r.id);
      if (id === null) throw new ValidationError(`${where}: id is not a valid value of the id column's type`);
      if (inBatch.has(id))
        throw new ConflictError(`store ${this.id}: DEK id "${r.id}" appears twice in one insert`);
      inBatch.add(id);
      if (typeof r.keyRef !== 'string' || r.keyRef.length === 0)
        throw new ValidationError(`${where}: keyRef is empty`);
      if (typeof r.version !== 'string' || r.version.length === 0)
        throw new ValidationError(`${where}: version is empty`);
      checkBytes(r.wrapped, `${where}: wrapped`);
      const ctx = contextJson(r.context, where);
      // Without a context column the context would be dropped, and the DEK could not be unwrapped.
      if (this.t.context === null && ctx !== '{}') {
        throw new ValidationError(`${where}: has a context but table ${this.t.table} has no context column`);
      }
      ids.push(id);
      keys.push(r.keyRef);
      versions.push(r.version);
      wrapped.push(asBuffer(r.wrapped));
      contexts.push(ctx);
    }
    const withCtx = this.t.context !== null;
    const chunk = this.insertChunk;
    const params = (from: number) => {
      const to = from + chunk;
      const p: unknown[] = [
        ids.slice(from, to),
        keys.slice(from, to),
        versions.slice(from, to),
        wrapped.slice(from, to),
      ];
      if (withCtx) p.push(contexts.slice(from, to));
      return p;
    };
    const what = `store ${this.id}: inserting ${records.length} DEKs`;
    try {
      if (ids.length <= chunk) {
        await guarded(what, () => this.pool.query(sql.insert, params(0)));
      } else {
        await inTransaction(this.pool, what, async (c) => {
          for (let i = 0; i < ids.length; i += chunk) await c.query(sql.insert, params(i));
        });
      }
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      // Only a row that already holds one of these ids is a duplicate; name it.
      const hit = await guarded(`store ${this.id}: looking up duplicate ids`, () =>
        this.pool.query<{ id: string }>(sql.existing, [ids]),
      );
      const dup = hit.rows[0]?.id;
      if (dup === undefined) throw e;
      throw new ConflictError(`store ${this.id}: a DEK with id "${dup}" already exists`, { cause: e });
    }
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }
}
