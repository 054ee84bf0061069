/**
 * Provider benchmarks against the bundled emulators, through the official SDK clients.
 * `node dist/bench/providers.js aws N Q` prints one JSON line (run via bench/run.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EncryptCommand, KMSClient, ReEncryptCommand } from '@aws-sdk/client-kms';
import { parseKeyRef } from '../shared/core/domain/keyRef.js';
import type { DekRecord } from '../shared/core/ports/DekStore.js';
import type { KeyCreator, KeyProvider } from '../shared/core/ports/KeyProvider.js';
import { newRewrapJob, runRewrapJob } from '../shared/core/rewrap/rewrapJob.js';
import { AwsKmsProvider } from '../shared/providers/aws/AwsKmsProvider.js';
import { LocalKmsProvider } from '../shared/providers/local/LocalKmsProvider.js';
import { SqliteDekStore } from '../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../shared/stores/sqlite/SqliteStateStore.js';

const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };
const CONCURRENCY = 32;

async function pool<T>(n: number, inFlight: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

/**
 * The AWS emulator in its own process (as users run it: `npm run emulator:aws`), so the client
 * and the server do not share one core; controlled through its HTTP control API.
 */
async function startEmulatorProcess(): Promise<{
  endpoint: string;
  control(path: string, body?: unknown): Promise<{ counts: Record<string, number> }>;
  stop(): void;
}> {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const main = fileURLToPath(new URL('../test/emulators/aws/main.js', import.meta.url));
  const child = spawn(process.execPath, [main, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const endpoint = await new Promise<string>((resolveUrl, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
      if (m) resolveUrl(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`emulator exited (${code})`)));
  });
  return {
    endpoint,
    async control(path, body) {
      const r = await fetch(
        `${endpoint}/_emulator/${path}`,
        body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) },
      );
      return (await r.json()) as { counts: Record<string, number> };
    },
    stop: () => child.kill(),
  };
}

/** Re-wrap through ReEncrypt: with a quota Q (achieved share, throttled share) and without (ratio to a raw loop). */
async function aws(n: number, quota: number) {
  const emu = await startEmulatorProcess();
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-aws-'));
  const credentials = { accessKeyId: 'bench', secretAccessKey: 'bench' };
  const client = new KMSClient({ region: 'us-east-1', endpoint: emu.endpoint, credentials, maxAttempts: 1 });
  // maxAttempts 1: throttling reaches rekey's own limiter instead of hiding in SDK retries.
  const provider = new AwsKmsProvider({
    id: 'aws',
    regions: ['us-east-1'],
    endpoint: emu.endpoint,
    credentials,
    maxAttempts: 1,
  });
  const reEncrypts = async () => ((await emu.control('requests')).counts['kms.ReEncrypt'] ?? 0) as number;
  try {
    const state = SqliteStateStore.open(join(dir, 'state.db'));
    /** A new key with n DEKs encrypted under it by KMS, in a SQLite DEK store at `path`. */
    const seed = async (label: string, path: string) => {
      const key = await provider.createKey({ name: `bench-${label}` });
      const ref = parseKeyRef(key.ref);
      const store = SqliteDekStore.open({
        id: label,
        path,
        table: 'data_keys',
        columns: COLUMNS,
        create: true,
      });
      const keyId = key.ref.split('/').pop()!;
      const blobs = await pool(n, 64, async () => {
        const r = await client.send(
          new EncryptCommand({ KeyId: keyId, Plaintext: new Uint8Array(32).fill(7) }),
        );
        return r.CiphertextBlob!;
      });
      const recs: DekRecord[] = blobs.map((b, i) => ({
        id: `d${String(i).padStart(7, '0')}`,
        keyRef: key.ref,
        version: key.primaryVersion,
        wrapped: b,
        context: {},
      }));
      for (let i = 0; i < recs.length; i += 10_000) await store.insertMany(recs.slice(i, i + 10_000));
      return { key, ref, keyId, store, blobs };
    };
    const run = async (label: string, withQuota: boolean) => {
      const { key, ref, keyId, store, blobs } = await seed(label, join(dir, `${label}.db`));
      const v2 = await provider.rotate(ref);
      let rawRate = 0;
      if (!withQuota) {
        // The raw baseline: the same client, the same concurrency, ReEncrypt in a loop, no store.
        const t = performance.now();
        await pool(n, CONCURRENCY, (i) =>
          client.send(new ReEncryptCommand({ CiphertextBlob: blobs[i], DestinationKeyId: keyId })),
        );
        rawRate = n / ((performance.now() - t) / 1000);
      }
      await emu.control(
        'faults',
        withQuota
          ? { cryptoRequestsPerSecond: quota, cryptoBurst: Math.max(1, quota / 10) }
          : { cryptoRequestsPerSecond: null, cryptoBurst: null },
      );
      const throttled0 = ((await emu.control('faults')).counts.quota ?? 0) as number;
      const before = await reEncrypts();
      const t0 = performance.now();
      const job = await runRewrapJob({
        job: newRewrapJob({ id: label, keyRef: key.ref, storeId: label, toVersion: v2.id, now: new Date() }),
        ref,
        provider,
        store,
        state,
        verify: 'none',
        batchSize: 1000,
        concurrency: CONCURRENCY,
        ...(withQuota ? { ratePerSecond: quota } : {}),
        now: () => new Date(),
      });
      const s = (performance.now() - t0) / 1000;
      const calls = (await reEncrypts()) - before;
      const throttled = (((await emu.control('faults')).counts.quota ?? 0) as number) - throttled0;
      await emu.control('faults', { cryptoRequestsPerSecond: null, cryptoBurst: null });
      await store.close?.();
      if (job.counts.rewrapped !== n) throw new Error(`aws bench: re-wrapped ${job.counts.rewrapped}/${n}`);
      return { seconds: s, perSecond: n / s, calls, throttled, rawRate };
    };
    // The unlimited run first: it warms the emulator and the client, so the quota run
    // measures quota-keeping rather than JIT warm-up.
    const free = await run('free', false);
    const q = await run('quota', true);
    await state.close?.();

    // The shipped command under the same quota: `rekey rewrap --workers 2 --rate Q` (two
    // processes, each with its own SDK client and half the rate, on id-range shards).
    const ws = join(dir, 'cli');
    mkdirSync(ws);
    const { key, ref: cliRef, store } = await seed('cli', join(ws, 'app.db'));
    await store.close?.();
    await provider.rotate(cliRef);
    writeFileSync(
      join(ws, 'rekey.yaml'),
      `version: 1\nproviders:\n  aws: { type: aws-kms, regions: [us-east-1], endpoint: "${emu.endpoint}" }\n` +
        'stores:\n  app: { type: sqlite, path: app.db, table: data_keys }\n',
    );
    await emu.control('faults', { cryptoRequestsPerSecond: quota, cryptoBurst: Math.max(1, quota / 10) });
    const cliThrottled0 = ((await emu.control('faults')).counts.quota ?? 0) as number;
    const cliBefore = await reEncrypts();
    // Not spawnSync: the bench's own event loop must keep running (its connections to the
    // emulator's control port would otherwise time out under it).
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const { fileURLToPath } = await import('node:url');
    const bin = fileURLToPath(new URL('../../bin/rekey.js', import.meta.url));
    const r = await promisify(execFile)(
      process.execPath,
      [
        bin,
        '--config',
        join(ws, 'rekey.yaml'),
        '--json',
        '-q',
        'rewrap',
        key.ref,
        '--verify',
        'none',
        '--workers',
        '2',
        '--rate',
        String(quota),
      ],
      {
        encoding: 'utf8',
        maxBuffer: 1 << 24,
        env: {
          ...process.env,
          AWS_ACCESS_KEY_ID: 'bench',
          AWS_SECRET_ACCESS_KEY: 'bench',
          AWS_REGION: 'us-east-1',
        },
      },
    );
    const two = JSON.parse(r.stdout) as { totals: { rewrapped: number }; perSecond: number };
    if (two.totals.rewrapped !== n) throw new Error(`aws cli bench: re-wrapped ${two.totals.rewrapped}/${n}`);
    const cliCalls = (await reEncrypts()) - cliBefore;
    const cliThrottled = (((await emu.control('faults')).counts.quota ?? 0) as number) - cliThrottled0;
    await emu.control('faults', { cryptoRequestsPerSecond: null, cryptoBurst: null });
    return {
      scenario: 'aws ReEncrypt re-wrap (emulator in its own process)',
      n,
      quota,
      withQuota: {
        perSecond: Math.round(q.perSecond),
        ofQuota: Math.round((q.perSecond / quota) * 1000) / 1000,
        throttledShare: Math.round((q.throttled / Math.max(1, q.calls)) * 10000) / 10000,
      },
      twoWorkersWithQuota: {
        perSecond: Math.round(two.perSecond),
        ofQuota: Math.round((two.perSecond / quota) * 1000) / 1000,
        throttledShare: Math.round((cliThrottled / Math.max(1, cliCalls)) * 10000) / 10000,
      },
      noQuota: {
        perSecond: Math.round(free.perSecond),
        rawLoopPerSecond: Math.round(free.rawRate),
        ratioToRaw: Math.round((free.perSecond / free.rawRate) * 100) / 100,
      },
    };
  } finally {
    await provider.close?.();
    client.destroy();
    emu.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** PostgreSQL: rekey's re-wrap (local KMS, DEKs in Postgres) vs raw batched CAS UPDATEs on the same server. */
async function postgres(n: number) {
  const { startPostgres } = await import('../test/support/postgres.js');
  const { PostgresDekStore } = await import('../shared/stores/postgres/PostgresDekStore.js');
  const pgLib = (await import('pg')).default;
  const cluster = await startPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-pg-'));
  const client = new pgLib.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    // Raw baselines: batched compare-and-swap UPDATEs of n rows, 1,000 per statement, each row
    // with its own old and new ciphertext sent as parameters, as a tuned application would.
    // `raw` runs on a table with the same schema and indexes as the DEK table rekey re-wraps
    // (the version column is indexed so scans can find old DEKs, which makes every update touch
    // that index); `rawHeapOnly` on a bare table without that index, the cheapest possible case.
    const oldBlob = (i: number) =>
      Buffer.concat([Buffer.from(String(i).padStart(12, '0')), Buffer.alloc(50, 0xab)]);
    const newBlob = (i: number) =>
      Buffer.concat([Buffer.from(String(i).padStart(12, '0')), Buffer.alloc(50, 0xcd)]);
    const rawIds = (i: number, size: number) =>
      Array.from({ length: Math.min(size, n - i) }, (_, k) => i + k);
    const rawId = (k: number) => `d${String(k).padStart(8, '0')}`;
    const makeRawTable = async (table: string) => {
      const rawTable = new PostgresDekStore({ id: 'raw', url: cluster.url, table, columns: COLUMNS });
      await rawTable.ensureTable();
      await rawTable.close();
    };
    await makeRawTable('raw_indexed');
    await client.query('CREATE TABLE raw_keys (id text PRIMARY KEY, kek text, ver text, blob bytea)');
    const rawRun = async (table: string, cols: { key: string; ver: string; blob: string }) => {
      for (let i = 0; i < n; i += 10_000) {
        const ids = rawIds(i, 10_000);
        await client.query(
          `INSERT INTO ${table} (id, ${cols.key}, ${cols.ver}, ${cols.blob})
           SELECT u.id, 'local://bench', '1', u.blob FROM unnest($1::text[], $2::bytea[]) AS u(id, blob)`,
          [ids.map(rawId), ids.map(oldBlob)],
        );
      }
      await client.query(`VACUUM ANALYZE ${table}`);
      const t0 = performance.now();
      for (let i = 0; i < n; i += 1000) {
        const ids = rawIds(i, 1000);
        await client.query(
          `UPDATE ${table} r SET ${cols.blob} = u.nw, ${cols.ver} = '2'
           FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(id, old, nw)
           WHERE r.id = u.id AND r.${cols.blob} = u.old`,
          [ids.map(rawId), ids.map(oldBlob), ids.map(newBlob)],
        );
      }
      return n / ((performance.now() - t0) / 1000);
    };
    const rawHeapOnly = await rawRun('raw_keys', { key: 'kek', ver: 'ver', blob: 'blob' });
    const indexedCols = { key: 'kek_ref', ver: 'kek_version', blob: 'wrapped_dek' };
    const rawBefore = await rawRun('raw_indexed', indexedCols);

    const provider = new LocalKmsProvider({
      id: 'local',
      keystorePath: join(dir, 'kms.db'),
      masterKey: randomBytes(32),
    });
    const store = new PostgresDekStore({ id: 'pg', url: cluster.url, table: 'data_keys', columns: COLUMNS });
    await store.ensureTable();
    const state = SqliteStateStore.open(join(dir, 'state.db'));
    const key = await provider.createKey({ name: 'bench' });
    const ref = parseKeyRef(key.ref);
    for (let start = 0; start < n; start += 10_000) {
      const batch: DekRecord[] = [];
      for (let i = start; i < Math.min(n, start + 10_000); i++) {
        const w = await provider.wrap(ref, randomBytes(32), { t: String(i % 100) });
        batch.push({
          id: `d${String(i).padStart(8, '0')}`,
          keyRef: key.ref,
          version: w.version,
          wrapped: w.ciphertext,
          context: { t: String(i % 100) },
        });
      }
      await store.insertMany(batch);
    }
    // A live application table has statistics; a freshly bulk-loaded one needs them gathered.
    await client.query('VACUUM ANALYZE data_keys');
    const v2 = await provider.rotate(ref);
    const t1 = performance.now();
    const job = await runRewrapJob({
      job: newRewrapJob({ id: 'pg', keyRef: key.ref, storeId: 'pg', toVersion: v2.id, now: new Date() }),
      ref,
      provider,
      store,
      state,
      verify: 'none',
      batchSize: 1000,
      now: () => new Date(),
    });
    const s = (performance.now() - t1) / 1000;
    if (job.counts.rewrapped !== n) throw new Error(`pg bench: re-wrapped ${job.counts.rewrapped}/${n}`);
    await store.close();
    await provider.close();
    await state.close?.();

    // The shipped command on the same table: `rekey rewrap --workers 2` (two processes on
    // id-range shards, each with its own connection pool).
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const { createMasterKeyFile } = await import('../shared/providers/local/masterKey.js');
    const bin = fileURLToPath(new URL('../../bin/rekey.js', import.meta.url));
    const ws = join(dir, 'ws');
    mkdirSync(ws);
    createMasterKeyFile(join(ws, 'master.key'));
    const cli2 = new LocalKmsProvider({
      id: 'local',
      keystorePath: join(ws, 'kms.db'),
      masterKey: readFileSync(join(ws, 'master.key')),
    });
    const k2 = await cli2.createKey({ name: 'bench2' });
    const ref2 = parseKeyRef(k2.ref);
    const store2 = new PostgresDekStore({ id: 'pg', url: cluster.url, table: 'data_keys', columns: COLUMNS });
    for (let start = 0; start < n; start += 10_000) {
      const batch: DekRecord[] = [];
      for (let i = start; i < Math.min(n, start + 10_000); i++) {
        const w = await cli2.wrap(ref2, randomBytes(32), { t: String(i % 100) });
        batch.push({
          id: `e${String(i).padStart(8, '0')}`,
          keyRef: k2.ref,
          version: w.version,
          wrapped: w.ciphertext,
          context: { t: String(i % 100) },
        });
      }
      await store2.insertMany(batch);
    }
    await cli2.rotate(ref2);
    await cli2.close();
    await store2.close();
    await client.query('VACUUM ANALYZE data_keys');
    writeFileSync(
      join(ws, 'rekey.yaml'),
      `version: 1\nproviders:\n  local: { type: local }\nstores:\n  pg: { type: postgres, url: env:REKEY_BENCH_PG, table: data_keys }\n`,
    );
    const r = spawnSync(
      process.execPath,
      [
        bin,
        '--config',
        join(ws, 'rekey.yaml'),
        '--json',
        '-q',
        'rewrap',
        k2.ref,
        '--verify',
        'none',
        '--workers',
        '2',
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, REKEY_BENCH_PG: cluster.url },
      },
    );
    if (r.status !== 0) throw new Error(`rekey rewrap on postgres failed: ${r.stderr}`);
    const two = JSON.parse(r.stdout) as { totals: { rewrapped: number }; perSecond: number };
    if (two.totals.rewrapped !== n) throw new Error(`pg cli bench: re-wrapped ${two.totals.rewrapped}/${n}`);
    // The server's and the machine's speed drift over a run: the raw baseline is taken again
    // after the re-wrap runs, on a fresh table of the same shape, and the two are averaged.
    await makeRawTable('raw_indexed_after');
    const rawAfter = await rawRun('raw_indexed_after', indexedCols);
    const raw = (rawBefore + rawAfter) / 2;
    return {
      scenario: 'postgres re-wrap',
      n,
      perSecond: Math.round(n / s),
      rawCasPerSecond: Math.round(raw),
      rawCasBeforeAfter: [Math.round(rawBefore), Math.round(rawAfter)],
      ratioToRaw: Math.round((n / s / raw) * 100) / 100,
      rawHeapOnlyCasPerSecond: Math.round(rawHeapOnly),
      ratioToHeapOnlyRaw: Math.round((n / s / rawHeapOnly) * 100) / 100,
      twoWorkersPerSecond: two.perSecond,
      twoWorkersRatioToRaw: Math.round((two.perSecond / raw) * 100) / 100,
    };
  } finally {
    await client.end();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const newJob = (id: string, keyRef: string, toVersion: string) =>
  newRewrapJob({ id, keyRef, storeId: id, toVersion, now: new Date() });

/**
 * A provider without server-side re-encrypt (GCP, Azure): seed, rotate, then re-wrap with a
 * quota (achieved share, rejected share) and without (ratio to a raw loop of the same calls).
 */
async function inMemoryProviderBench(o: {
  label: string;
  n: number;
  quotaPerSecond: number;
  provider: KeyProvider & KeyCreator;
  setQuota(on: boolean): void;
  rejected(): number;
  calls(): number;
  raw(items: DekRecord[], keyRef: string): Promise<void>;
}) {
  const dir = mkdtempSync(join(tmpdir(), `rekey-bench-${o.label}-`));
  try {
    const state = SqliteStateStore.open(join(dir, 'state.db'));
    const run = async (label: string, withQuota: boolean) => {
      const key = await o.provider.createKey({ name: `bench-${label}` });
      const ref = parseKeyRef(key.ref);
      const store = SqliteDekStore.open({
        id: label,
        path: join(dir, `${label}.db`),
        table: 'data_keys',
        columns: COLUMNS,
        create: true,
      });
      const recs = await pool(o.n, 64, async (i) => {
        const ctx = { t: String(i % 50) };
        const w = await o.provider.wrap(ref, randomBytes(32), ctx);
        return {
          id: `d${String(i).padStart(7, '0')}`,
          keyRef: key.ref,
          version: w.version,
          wrapped: w.ciphertext,
          context: ctx,
        } as DekRecord;
      });
      for (let i = 0; i < recs.length; i += 10_000) await store.insertMany(recs.slice(i, i + 10_000));
      let rawRate = 0;
      if (!withQuota) {
        const t = performance.now();
        await o.raw(recs, key.ref);
        rawRate = o.n / ((performance.now() - t) / 1000);
      }
      const v2 = await o.provider.rotate(ref);
      o.setQuota(withQuota);
      const rejected0 = o.rejected();
      const calls0 = o.calls();
      const t0 = performance.now();
      const job = await runRewrapJob({
        job: newJob(label, key.ref, v2.id),
        ref,
        provider: o.provider,
        store,
        state,
        verify: 'none',
        batchSize: 1000,
        concurrency: CONCURRENCY,
        ...(withQuota ? { ratePerSecond: o.quotaPerSecond } : {}),
        now: () => new Date(),
      });
      const s = (performance.now() - t0) / 1000;
      const rejected = o.rejected() - rejected0;
      const calls = o.calls() - calls0;
      o.setQuota(false);
      await store.close?.();
      if (job.counts.rewrapped !== o.n)
        throw new Error(`${o.label} bench: re-wrapped ${job.counts.rewrapped}/${o.n}`);
      return { seconds: s, perSecond: o.n / s, opsPerSecond: (2 * o.n) / s, rejected, calls, rawRate };
    };
    const q = await run('quota', true);
    const free = await run('free', false);
    await state.close?.();
    return {
      scenario: `${o.label} re-wrap (unwrap + wrap)`,
      n: o.n,
      quotaOpsPerSecond: o.quotaPerSecond,
      withQuota: {
        dekPerSecond: Math.round(q.perSecond),
        opsPerSecond: Math.round(q.opsPerSecond),
        ofQuota: Math.round((q.opsPerSecond / o.quotaPerSecond) * 1000) / 1000,
        rejectedShare: Math.round((q.rejected / Math.max(1, q.calls)) * 10000) / 10000,
      },
      noQuota: {
        dekPerSecond: Math.round(free.perSecond),
        rawLoopPerSecond: Math.round(free.rawRate),
        ratioToRaw: Math.round((free.perSecond / free.rawRate) * 100) / 100,
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function gcp(n: number, perMinute: number) {
  process.env.METADATA_SERVER_DETECTION = 'none';
  const { startGcpKmsEmulator } = await import('../test/emulators/gcp-kms/index.js');
  const { GcpKmsProvider, gcpEndpointOptions } = await import('../shared/providers/gcp/GcpKmsProvider.js');
  const emu = await startGcpKmsEmulator();
  const provider = new GcpKmsProvider({
    id: 'gcp',
    projects: ['rekey-bench'],
    locations: ['europe-west1'],
    keyRings: ['b'],
    ...gcpEndpointOptions(`${emu.endpoint.host}:${emu.endpoint.port}`),
    libraryRetries: false,
  });
  type Rpc = (req: Record<string, unknown>) => Promise<[{ plaintext?: Uint8Array }]>;
  const client = (provider as unknown as { client: { decrypt: Rpc; encrypt: Rpc } }).client;
  try {
    return await inMemoryProviderBench({
      label: 'gcp',
      n,
      quotaPerSecond: perMinute / 60,
      provider,
      setQuota: (on) => emu.faults.set({ cryptoRequestsPerMinute: on ? perMinute : null }),
      rejected: () => emu.faults.counts.quota ?? 0,
      calls: () => (emu.requestCounts.Decrypt ?? 0) + (emu.requestCounts.Encrypt ?? 0),
      raw: async (items, keyRef) => {
        const name = keyRef.slice('gcp-kms://'.length);
        await pool(items.length, CONCURRENCY, async (i) => {
          const d = items[i]!;
          const aad = Buffer.from(JSON.stringify(d.context));
          const [r] = await client.decrypt({ name, ciphertext: d.wrapped, additionalAuthenticatedData: aad });
          await client.encrypt({ name, plaintext: r.plaintext, additionalAuthenticatedData: aad });
        });
      },
    });
  } finally {
    await provider.close();
    await emu.close();
  }
}

async function azure(n: number, per10s: number) {
  const { startAzureKeyVaultEmulator } = await import('../test/emulators/azure-keyvault/index.js');
  const { StaticTokenCredential } = await import('../test/emulators/azure-keyvault/credential.js');
  const { AzureKeyVaultProvider } = await import('../shared/providers/azure/AzureKeyVaultProvider.js');
  const { CryptographyClient, KeyClient } = await import('@azure/keyvault-keys');
  const host = 'bench.managedhsm.azure.net';
  const emu = await startAzureKeyVaultEmulator({ vaults: [host] });
  const credential = new StaticTokenCredential();
  const provider = new AzureKeyVaultProvider({
    id: 'azure',
    vaults: [host],
    endpoints: emu.endpoints,
    credential,
    ca: emu.ca,
    retry: { maxRetries: 0 },
  });
  const opts = {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: emu.ca },
    retryOptions: { maxRetries: 0 },
  };
  try {
    return await inMemoryProviderBench({
      label: 'azure',
      n,
      quotaPerSecond: per10s / 10,
      provider,
      setQuota: (on) => emu.faults.set({ quota: on, quotaPer10s: { hsm: per10s } }),
      rejected: () => emu.faults.counts.quota ?? 0,
      calls: () => (emu.requests.unwrapKey ?? 0) + (emu.requests.wrapKey ?? 0),
      raw: async (items, keyRef) => {
        // The same SDK calls, without rekey's context framing: unwrapKey with the old version, wrapKey with the current.
        const name = keyRef.split('/').pop()!;
        const keys = new KeyClient(emu.endpoints[host]!, credential, opts);
        const key = await keys.getKey(name);
        const crypto = new CryptographyClient(key.id!, credential, opts);
        await pool(items.length, CONCURRENCY, async (i) => {
          const u = await crypto.unwrapKey('A256KW', items[i]!.wrapped);
          await crypto.wrapKey('A256KW', u.result);
        });
      },
    });
  } finally {
    await provider.close?.();
    await emu.close();
  }
}

const [name, a, b] = process.argv.slice(2);
let peak = 0;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage.rss());
}, 50);
const result =
  name === 'aws'
    ? await aws(Number(a ?? 100_000), Number(b ?? 2000))
    : name === 'postgres'
      ? await postgres(Number(a ?? 1_000_000))
      : name === 'gcp'
        ? await gcp(Number(a ?? 100_000), Number(b ?? 60_000))
        : name === 'azure'
          ? await azure(Number(a ?? 50_000), Number(b ?? 4000))
          : null;
clearInterval(sampler);
if (!result) throw new Error(`unknown provider bench ${name}`);
process.stdout.write(`${JSON.stringify({ ...result, peakRssMB: Math.round(peak / 1048576) })}\n`);
