import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A throwaway PostgreSQL cluster for one test file: initdb into a temp dir, start on a free
 * port on 127.0.0.1 (unix socket inside the temp dir), one database, a random superuser
 * password so URLs carry a secret the tests can look for. A machine without PostgreSQL fails
 * here with a message saying what to install: the store tests never pass by skipping.
 */
export interface PgCluster {
  /** postgres://postgres:<password>@127.0.0.1:<port>/<database> */
  url: string;
  password: string;
  port: number;
  database: string;
  dir: string;
  /** URL of another database on the same cluster (created on first call). */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

const OS_USER = 'postgres';

/** Directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/<n>/bin, else PATH. */
export function findPgBin(): string {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], 'bin');
  }
  const r = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  const found = r.stdout.trim();
  if (r.status === 0 && found) return found.replace(/\/initdb$/, '');
  throw new Error(
    'PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb and no initdb on PATH): ' +
      'run scripts/setup-postgres.sh (apt-get install postgresql) to run the PostgreSQL store tests',
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** initdb refuses to run as root: run the server tools as the `postgres` OS user then. */
function asServerUser(bin: string, args: string[]): { cmd: string; args: string[] } {
  if (process.getuid?.() === 0) return { cmd: 'runuser', args: ['-u', OS_USER, '--', bin, ...args] };
  return { cmd: bin, args };
}

function run(bin: string, args: string[], what: string): void {
  const c = asServerUser(bin, args);
  const r = spawnSync(c.cmd, c.args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    throw new Error(
      `${what} failed (exit ${r.status}): ${(r.stderr || r.stdout || '').trim().slice(0, 2000)}`,
    );
  }
}

export async function startPostgres(opts: { database?: string } = {}): Promise<PgCluster> {
  const bin = findPgBin();
  const database = opts.database ?? 'rekey_test';
  const password = randomBytes(12).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'rekey-pg-'));
  const data = join(dir, 'data');
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (process.getuid?.() === 0) {
    if (spawnSync('id', ['-u', OS_USER]).status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(
        `running as root, and initdb refuses root: there is no "${OS_USER}" user to run it as (apt-get install postgresql creates it)`,
      );
    }
    const uid = Number(execFileSync('id', ['-u', OS_USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', OS_USER], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  chmodSync(dir, 0o700);
  let started = false;
  const pgCtl = join(bin, 'pg_ctl');
  const stop = async () => {
    if (started) {
      started = false;
      try {
        run(pgCtl, ['stop', '-D', data, '-m', 'immediate', '-w'], 'pg_ctl stop');
      } catch {
        // The directory goes anyway; a server without its data dir exits on its own.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    run(
      join(bin, 'initdb'),
      [
        '-D',
        data,
        '-U',
        'postgres',
        '--pwfile',
        pwfile,
        '--auth-host=scram-sha-256',
        '--auth-local=trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
      ],
      'initdb',
    );
    const port = await freePort();
    // Durability is worth nothing in a cluster that lives for one test file.
    const serverOpts = [
      `-c listen_addresses=127.0.0.1`,
      `-c port=${port}`,
      `-c unix_socket_directories=${dir}`,
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=60',
      '-c shared_buffers=64MB',
    ].join(' ');
    run(
      pgCtl,
      ['start', '-D', data, '-w', '-t', '60', '-l', join(dir, 'server.log'), '-o', serverOpts],
      'pg_ctl start',
    );
    started = true;
    const urlFor = (db: string) => `postgres://postgres:${password}@127.0.0.1:${port}/${db}`;
    const created = new Set<string>(['postgres']);
    const createDatabase = async (name: string) => {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad test database name ${name}`);
      if (!created.has(name)) {
        const c = new pg.Client({ connectionString: urlFor('postgres') });
        await c.connect();
        try {
          await c.query(`CREATE DATABASE "${name}"`);
        } finally {
          await c.end();
        }
        created.add(name);
      }
      return urlFor(name);
    };
    await createDatabase(database);
    return { url: urlFor(database), password, port, database, dir, createDatabase, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
