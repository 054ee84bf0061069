import Database from 'better-sqlite3';
import { ConfigError, ProviderError, RekeyError } from '../../core/errors.js';

export type SqliteDatabase = Database.Database;

/** How long a writer waits for another connection's lock before SQLITE_BUSY surfaces. */
export const BUSY_TIMEOUT_MS = 5_000;

/**
 * Page size for databases rekey creates. Larger pages cut the b-tree work per re-wrapped row
 * (about a quarter faster than 4 KiB in replaceMany on this kind of machine). SQLite applies
 * it only to a database with no content yet; existing files keep theirs.
 */
export const NEW_DB_PAGE_SIZE = 16_384;

/** Page cache per connection, in KiB (the default is 2 MiB): re-wrapping a large table touches many pages. */
export const CACHE_KIB = 32 * 1024;

/**
 * Opens a database file (or ':memory:') with the settings every rekey connection uses:
 * WAL so readers never block the writer, a busy timeout so two processes on one file queue
 * instead of failing, foreign keys on, and synchronous=NORMAL (durable at each WAL checkpoint,
 * safe against corruption, much faster than FULL for the re-wrap hot path), and a page cache
 * large enough that a re-wrap batch does not evict the index pages the next batch needs.
 */
export function openDatabase(path: string): SqliteDatabase {
  if (typeof path !== 'string' || path.length === 0) {
    throw new ConfigError('sqlite: database path is empty (give a file path or ":memory:")');
  }
  let db: SqliteDatabase;
  try {
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  } catch (e) {
    throw new ConfigError(`sqlite: cannot open database "${path}": ${(e as Error).message}`, { cause: e });
  }
  try {
    // Must precede the switch to WAL, which writes the first page.
    db.pragma(`page_size = ${NEW_DB_PAGE_SIZE}`);
    configure(db);
  } catch (e) {
    db.close();
    throw translateSqliteError(e, `configuring database "${path}"`);
  }
  return db;
}

/** Applies the connection pragmas; also used for a Database handed in by the caller. */
export function configure(db: SqliteDatabase): void {
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  if (!db.memory) db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma(`cache_size = -${CACHE_KIB}`);
}

const RETRYABLE = /^SQLITE_(BUSY|LOCKED)/;

/**
 * Turns a SQLite failure into a rekey error. Busy/locked are retryable (another connection
 * holds the write lock longer than the busy timeout); everything else is not.
 */
export function translateSqliteError(e: unknown, what: string): Error {
  if (e instanceof RekeyError) return e;
  if (e instanceof Database.SqliteError) {
    return new ProviderError('sqlite', e.code, `${what}: ${e.message}`, {
      retryable: RETRYABLE.test(e.code),
      cause: e,
    });
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** Runs `fn`, translating SQLite errors; keeps call sites short. */
export function guarded<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw translateSqliteError(e, what);
  }
}

/** A Buffer view over the same bytes (no copy): better-sqlite3 binds Buffers as BLOBs. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
