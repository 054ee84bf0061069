import pg from 'pg';
import { ConfigError, ConflictError, ProviderError, RekeyError, ValidationError } from '../../core/errors.js';

export type PgPool = pg.Pool;
export type PgClient = pg.PoolClient;

export interface PgPoolOptions {
  /** Most connections the pool opens. Default 10. */
  max?: number;
  /** Milliseconds to wait for a connection before failing (retryable). Default 10,000. */
  connectionTimeoutMillis?: number;
  /** Server-side statement timeout in milliseconds; 0 = none. Default 0. */
  statementTimeoutMillis?: number;
  /** Name shown in pg_stat_activity. Default `rekey`. */
  applicationName?: string;
}

/**
 * The URL with its password replaced, for messages. The URL itself comes from a secret
 * (`env:` / `file:`) and may hold a password: it never appears in an error or a log.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // Query parameters may carry passwords or key files too.
    for (const k of [...u.searchParams.keys()]) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/**
 * Opens a pool on a resolved connection URL (`postgres://user:pass@host:port/db?...`). Nothing
 * connects until the first query. A URL that does not parse is a ConfigError that does not
 * repeat the URL (it may hold a password).
 */
export function createPool(url: string, what: string, opts: PgPoolOptions = {}): PgPool {
  if (typeof url !== 'string' || !/^postgres(ql)?:\/\//.test(url)) {
    throw new ConfigError(`${what}: url must be a postgres:// or postgresql:// URL`);
  }
  try {
    new URL(url);
  } catch {
    throw new ConfigError(`${what}: url is not a valid URL`);
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 10_000,
    application_name: opts.applicationName ?? 'rekey',
    ...(opts.statementTimeoutMillis ? { statement_timeout: opts.statementTimeoutMillis } : {}),
  });
  // An idle connection that dies (server restart, network) emits 'error' on the pool; without a
  // listener that would end the process. The next query simply gets a fresh connection.
  pool.on('error', () => {});
  return pool;
}

/** SQLSTATE classes and codes worth retrying: connection loss, serialization, resources, shutdown. */
const RETRYABLE_SQLSTATE = /^(08|40001|40P01|53|55P03|57014|57P0[1-3]|58)/;
/** Node socket errors that mean "the server was not reachable this time". */
const RETRYABLE_NODE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EAI_AGAIN',
]);

interface PgLikeError {
  code?: string;
  message?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

/**
 * Turns a pg failure into a rekey error. Unique violations are conflicts; connection failures,
 * serialization failures, deadlocks and timeouts are retryable store errors; a missing
 * table/column/database is a configuration error. Messages carry the SQLSTATE and the
 * server's message, never the URL nor the row values (`detail` may quote them).
 */
export function translatePgError(e: unknown, what: string): Error {
  if (e instanceof RekeyError) return e;
  const err = (e ?? {}) as PgLikeError;
  const code = typeof err.code === 'string' ? err.code : 'UNKNOWN';
  const msg = typeof err.message === 'string' ? err.message : String(e);
  if (code === '23505') {
    return new ConflictError(`${what}: unique constraint ${err.constraint ?? ''} violated`.trim(), {
      cause: e,
    });
  }
  if (['42P01', '42703', '3D000', '3F000', '28P01', '28000', '42501'].includes(code)) {
    return new ConfigError(`${what}: ${msg} (SQLSTATE ${code})`, { cause: e });
  }
  if (['22P02', '22003', '22021', '22001'].includes(code)) {
    return new ValidationError(`${what}: ${msg} (SQLSTATE ${code})`, { cause: e });
  }
  const timeout = /timeout exceeded when trying to connect|Connection terminated/i.test(msg);
  const retryable = RETRYABLE_SQLSTATE.test(code) || RETRYABLE_NODE.has(code) || timeout;
  return new ProviderError('postgres', code, `${what}: ${msg}`, { retryable, cause: e });
}

/** Awaits `fn`, translating pg errors; keeps call sites short. */
export async function guarded<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw translatePgError(e, what);
  }
}

/** Runs `fn` in one transaction on one connection; rolls back on any error. */
export async function inTransaction<T>(
  pool: PgPool,
  what: string,
  fn: (c: PgClient) => Promise<T>,
  isolation: 'READ COMMITTED' | 'SERIALIZABLE' = 'READ COMMITTED',
): Promise<T> {
  const client = await guarded(`${what}: connecting`, () => pool.connect());
  let broken = false;
  try {
    await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (e) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw translatePgError(e, what);
  } finally {
    client.release(broken);
  }
}

/** A Buffer view over the same bytes (no copy): pg sends Buffers as bytea. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
