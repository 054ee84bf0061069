/**
 * Benchmark scenarios, one per child process so each peak RSS is its own. Prints one JSON line.
 * Run through bench/run.ts (`npm run bench`), not directly.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ManagedKey } from '../shared/core/domain/key.js';
import { parseKeyRef } from '../shared/core/domain/keyRef.js';
import { ProviderError } from '../shared/core/errors.js';
import { evaluate } from '../shared/core/plan/evaluate.js';
import { loadConfig } from '../shared/core/policy/load.js';
import type { DekRecord } from '../shared/core/ports/DekStore.js';
import { newRewrapJob, runRewrapJob, type VerifyMode } from '../shared/core/rewrap/rewrapJob.js';
import { LocalKmsProvider } from '../shared/providers/local/LocalKmsProvider.js';
import { SqliteDekStore } from '../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../shared/stores/sqlite/SqliteStateStore.js';

type Result = Record<string, number | string>;

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
}, 50);

function emit(r: Result): void {
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  process.stdout.write(`${JSON.stringify({ ...r, peakRssMB: Math.round(peakRss / 1048576) })}\n`);
}

const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };

/** Raw baseline: AES-256-GCM decrypt then encrypt of a 32-byte key, in a loop. */
function aesBaseline(n: number): Result {
  const kek = randomBytes(32);
  const pool = 4096;
  const iv = randomBytes(12);
  const cts: { ct: Buffer; tag: Buffer }[] = [];
  for (let i = 0; i < pool; i++) {
    const c = createCipheriv('aes-256-gcm', kek, iv);
    const ct = Buffer.concat([c.update(randomBytes(32)), c.final()]);
    cts.push({ ct, tag: c.getAuthTag() });
  }
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const { ct, tag } = cts[i % pool]!;
    const d = createDecipheriv('aes-256-gcm', kek, iv);
    d.setAuthTag(tag);
    const pt = Buffer.concat([d.update(ct), d.final()]);
    const e = createCipheriv('aes-256-gcm', kek, randomBytes(12));
    Buffer.concat([e.update(pt), e.final()]);
    e.getAuthTag();
    pt.fill(0);
  }
  const s = (performance.now() - t0) / 1000;
  return { scenario: 'aes-baseline', n, seconds: s, perSecond: Math.round(n / s) };
}

/** Raw baseline: compare-and-swap UPDATEs of n rows in transactions of 1,000. */
function sqliteBaseline(n: number): Result {
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-'));
  try {
    const db = new Database(join(dir, 'b.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(
      'CREATE TABLE data_keys (id TEXT PRIMARY KEY, kek_ref TEXT, kek_version TEXT, wrapped_dek BLOB, aad TEXT); CREATE INDEX i ON data_keys (kek_ref, kek_version, id)',
    );
    const ins = db.prepare('INSERT INTO data_keys VALUES (?, ?, ?, ?, ?)');
    const blob = randomBytes(62);
    db.transaction(() => {
      for (let i = 0; i < n; i++)
        ins.run(`dek-${String(i).padStart(8, '0')}`, 'local://bench', '1', blob, '{}');
    })();
    const upd = db.prepare(
      'UPDATE data_keys SET wrapped_dek = ?, kek_version = ? WHERE id = ? AND wrapped_dek = ?',
    );
    const next = randomBytes(62);
    const t0 = performance.now();
    for (let start = 0; start < n; start += 1000) {
      db.transaction(() => {
        for (let i = start; i < Math.min(n, start + 1000); i++)
          upd.run(next, '2', `dek-${String(i).padStart(8, '0')}`, blob);
      })();
    }
    const s = (performance.now() - t0) / 1000;
    db.close();
    return { scenario: 'sqlite-baseline', n, seconds: s, perSecond: Math.round(n / s) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** rekey's re-wrap: local KMS + SQLite stores, through the engine the CLI uses. */
async function rekeyRewrap(n: number, verifyText: string): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-'));
  try {
    const provider = new LocalKmsProvider({
      id: 'local',
      keystorePath: join(dir, 'kms.db'),
      masterKey: randomBytes(32),
    });
    const store = SqliteDekStore.open({
      id: 'app',
      path: join(dir, 'app.db'),
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    const state = SqliteStateStore.open(join(dir, 'state.db'));
    const key = await provider.createKey({ name: 'bench' });
    const ref = parseKeyRef(key.ref);
    const t0 = performance.now();
    for (let start = 0; start < n; start += 5000) {
      const batch: DekRecord[] = [];
      for (let i = start; i < Math.min(n, start + 5000); i++) {
        const pt = randomBytes(32);
        const ctx = { tenant: `t${i % 100}` };
        const w = await provider.wrap(ref, pt, ctx);
        pt.fill(0);
        batch.push({
          id: `dek-${String(i).padStart(8, '0')}`,
          keyRef: key.ref,
          version: w.version,
          wrapped: w.ciphertext,
          context: ctx,
        });
      }
      await store.insertMany(batch);
    }
    const seedSeconds = (performance.now() - t0) / 1000;
    const v2 = await provider.rotate(ref);
    const verify: VerifyMode =
      verifyText === 'full' || verifyText === 'none'
        ? verifyText
        : { sample: Number(verifyText.replace(/[^0-9.]/g, '')) / 100 };
    const t1 = performance.now();
    const job = await runRewrapJob({
      job: newRewrapJob({ id: 'bench', keyRef: key.ref, storeId: 'app', toVersion: v2.id, now: new Date() }),
      ref,
      provider,
      store,
      state,
      verify,
      batchSize: 1000,
      now: () => new Date(),
    });
    const s = (performance.now() - t1) / 1000;
    if (job.counts.rewrapped !== n || job.counts.failed !== 0)
      throw new Error(`bench: re-wrapped ${job.counts.rewrapped}/${n}`);
    await provider.close();
    await store.close?.();
    await state.close?.();
    return {
      scenario: `rekey-rewrap verify=${verifyText}`,
      n,
      seconds: s,
      perSecond: Math.round(n / s),
      seedSeconds,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The shipped command: `rekey rewrap --workers W` on a workspace holding n DEKs (local KMS +
 * SQLite), so process start-up, sharding and SQLite write contention are all counted.
 */
async function cliRewrap(n: number, workers: number, verifyText: string): Promise<Result> {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const bin = fileURLToPath(new URL('../../bin/rekey.js', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-cli-'));
  try {
    const run = (...args: string[]) => {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`rekey ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    run('init', '--dir', dir);
    const cfg = join(dir, 'rekey.yaml');
    run('--config', cfg, 'keys', 'create', 'bench');
    const provider = await LocalKmsProvider.open({
      id: 'local',
      keystorePath: join(dir, 'kms.db'),
      masterKeyRef: 'file:master.key',
      baseDir: dir,
    });
    const store = SqliteDekStore.open({
      id: 'app',
      path: join(dir, 'app.db'),
      table: 'data_keys',
      columns: COLUMNS,
    });
    const ref = parseKeyRef('local://bench');
    for (let start = 0; start < n; start += 10_000) {
      const batch: DekRecord[] = [];
      for (let i = start; i < Math.min(n, start + 10_000); i++) {
        const ctx = { tenant: `t${i % 100}` };
        const w = await provider.wrap(ref, randomBytes(32), ctx);
        batch.push({
          id: `dek-${String(i).padStart(8, '0')}`,
          keyRef: ref.uri,
          version: w.version,
          wrapped: w.ciphertext,
          context: ctx,
        });
      }
      await store.insertMany(batch);
    }
    await provider.close();
    await store.close?.();
    run('--config', cfg, 'keys', 'rotate', ref.uri);
    const out = JSON.parse(
      run(
        '--config',
        cfg,
        '--json',
        '-q',
        'rewrap',
        ref.uri,
        '--workers',
        String(workers),
        '--verify',
        verifyText,
      ),
    );
    if (out.totals.rewrapped !== n) throw new Error(`bench: re-wrapped ${out.totals.rewrapped}/${n}`);
    return {
      scenario: `rekey rewrap --workers ${workers} verify=${verifyText}`,
      n,
      seconds: out.seconds,
      perSecond: out.perSecond,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A provider that allows exactly `perSecond` operations per second and throttles the rest. */
function quotaProvider(
  inner: LocalKmsProvider,
  perSecond: number,
): { provider: LocalKmsProvider; stats: { ok: number; throttled: number } } {
  const stats = { ok: 0, throttled: 0 };
  let tokens = perSecond / 10;
  let last = performance.now();
  const take = () => {
    const t = performance.now();
    tokens = Math.min(perSecond / 10, tokens + ((t - last) / 1000) * perSecond);
    last = t;
    if (tokens < 1) {
      stats.throttled++;
      throw new ProviderError('quota', 'ThrottlingException', 'rate exceeded', {
        retryable: true,
        throttled: true,
      });
    }
    tokens -= 1;
    stats.ok++;
  };
  const provider = Object.create(inner) as LocalKmsProvider;
  // A quota counts single operations (like a cloud KMS): no batch call.
  (provider as { rewrapMany?: unknown }).rewrapMany = undefined;
  provider.rewrap = async (...a) => {
    take();
    return inner.rewrap(...a);
  };
  provider.unwrap = async (...a) => {
    take();
    return inner.unwrap(...a);
  };
  provider.wrap = async (...a) => {
    take();
    return inner.wrap(...a);
  };
  return { provider, stats };
}

/** Rate-limit accuracy: `rate: R` against a provider allowing exactly R/s. */
async function rateAccuracy(n: number, rate: number, configured: boolean): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-'));
  try {
    const inner = new LocalKmsProvider({
      id: 'local',
      keystorePath: join(dir, 'kms.db'),
      masterKey: randomBytes(32),
    });
    const store = SqliteDekStore.open({
      id: 'app',
      path: join(dir, 'app.db'),
      table: 'data_keys',
      columns: COLUMNS,
      create: true,
    });
    const state = SqliteStateStore.open(join(dir, 'state.db'));
    const key = await inner.createKey({ name: 'bench' });
    const ref = parseKeyRef(key.ref);
    const batch: DekRecord[] = [];
    for (let i = 0; i < n; i++) {
      const w = await inner.wrap(ref, randomBytes(32), {});
      batch.push({
        id: `dek-${String(i).padStart(8, '0')}`,
        keyRef: key.ref,
        version: w.version,
        wrapped: w.ciphertext,
        context: {},
      });
    }
    await store.insertMany(batch);
    const v2 = await inner.rotate(ref);
    const { provider, stats } = quotaProvider(inner, rate);
    const t0 = performance.now();
    const job = await runRewrapJob({
      job: newRewrapJob({ id: 'rate', keyRef: key.ref, storeId: 'app', toVersion: v2.id, now: new Date() }),
      ref,
      provider,
      store,
      state,
      verify: 'none',
      batchSize: 500,
      concurrency: 32,
      ...(configured ? { ratePerSecond: rate } : {}),
      now: () => new Date(),
    });
    const s = (performance.now() - t0) / 1000;
    if (job.counts.rewrapped !== n) throw new Error(`bench: re-wrapped ${job.counts.rewrapped}/${n}`);
    await inner.close();
    const calls = stats.ok + stats.throttled;
    return {
      scenario: configured ? `rate-accuracy R=${rate}/s` : `aimd, quota ${rate}/s, no rate set`,
      n,
      seconds: s,
      perSecond: Math.round(stats.ok / s),
      ofQuota: Math.round((stats.ok / s / rate) * 1000) / 1000,
      throttledShare: Math.round((stats.throttled / calls) * 10000) / 10000,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Plan evaluation: k keys against p policies, pure. */
function planEval(k: number, p: number): Result {
  const providers = ['local-a', 'local-b', 'local-c', 'local-d'];
  const classes = ['pci', 'pii', 'internal', 'public', 'secret'];
  const yaml = [
    'version: 1',
    'providers:',
    ...providers.map((id) => `  ${id}: { type: local, keystore: ${id}.db, masterKey: env:MK }`),
    'stores:',
    '  app: { type: sqlite, path: app.db, table: data_keys }',
    'policies:',
    ...Array.from({ length: p }, (_, i) =>
      [
        `  - name: p${i}`,
        `    match: { provider: [${providers[i % providers.length]}], tags: { data-class: ${classes[i % classes.length]} }, name: ["svc${i % 7}-*"] }`,
        `    rotate: { every: P${30 + i * 10}D${i % 3 === 0 ? ', window: "Sat 02:00-06:00 UTC"' : ''} }`,
        '    rewrap: { stores: [app], verify: sample(1%) }',
        '    retire: { disableAfter: P30D, destroyAfter: P90D, approvals: 2 }',
      ].join('\n'),
    ),
  ].join('\n');
  const config = loadConfig(yaml, 'bench.yaml');
  const now = new Date('2026-11-28T12:00:00Z');
  const keys: ManagedKey[] = [];
  for (let i = 0; i < k; i++) {
    const age = (i * 7919) % 900;
    const versions = Array.from({ length: 1 + (i % 4) }, (_, v) => ({
      id: String(v + 1),
      state: 'enabled' as const,
      createdAt: new Date(now.getTime() - (age + (3 - v) * 60) * 86_400_000).toISOString(),
    }));
    keys.push({
      ref: `local://svc${i % 7}-key-${i}`,
      providerType: 'local',
      providerId: providers[i % providers.length]!,
      name: `svc${i % 7}-key-${i}`,
      tags: { 'data-class': classes[(i >> 2) % classes.length]!, team: `t${i % 13}` },
      protection: 'software',
      algorithm: 'AES_256',
      enabled: true,
      primaryVersion: versions[versions.length - 1]!.id,
      versions,
      createdAt: versions[0]!.createdAt,
    });
  }
  const census = new Map<string, Record<string, Record<string, number>>>();
  for (let i = 0; i < k; i += 3) census.set(keys[i]!.ref, { app: { '1': 10, '2': 5 } });
  const capabilities = Object.fromEntries(
    providers.map((id) => [
      id,
      {
        autoRotation: { minDays: 1, maxDays: 36500 },
        serverSideRewrap: true,
        choosePrimary: false,
        destroyDelayDays: { min: 0, max: 120 },
        lastUsed: true,
      },
    ]),
  );
  const t0 = performance.now();
  const plan = evaluate({ keys, config, now, census, capabilities, inventoryId: 'bench' });
  const s = (performance.now() - t0) / 1000;
  return {
    scenario: `plan-eval ${p} policies`,
    n: k,
    seconds: s,
    perSecond: Math.round(k / s),
    actions: plan.actions.length,
  };
}

const [name, a, b] = process.argv.slice(2);
const n = Number(a);
switch (name) {
  case 'aes':
    emit(aesBaseline(n));
    break;
  case 'sqlite':
    emit(sqliteBaseline(n));
    break;
  case 'rewrap':
    emit(await rekeyRewrap(n, b ?? 'full'));
    break;
  case 'cli':
    emit(await cliRewrap(n, Number(b ?? 2), process.argv[5] ?? 'none'));
    break;
  case 'cost': {
    const { costBench } = await import('./cost.js');
    emit(costBench(n) as unknown as Result);
    break;
  }
  case 'rate':
    emit(await rateAccuracy(n, Number(b ?? 2000), true));
    break;
  case 'aimd':
    emit(await rateAccuracy(n, Number(b ?? 2000), false));
    break;
  case 'plan':
    emit(planEval(n, Number(b ?? 20)));
    break;
  default:
    throw new Error(`unknown scenario ${name}`);
}
