/**
 * Provider benchmarks against the bundled emulators, through the official SDK clients.
 * `node dist/bench/providers.js aws N Q` prints one JSON line (run via bench/run.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EncryptCommand, KMSClient, ReEncryptCommand } from '@aws-sdk/client-kms';
import { parseKeyRef } from '../shared/core/domain/keyRef.js';
import type { DekRecord } from '../shared/core/ports/DekStore.js';
import { runRewrapJob } from '../shared/core/rewrap/rewrapJob.js';
import { AwsKmsProvider } from '../shared/providers/aws/AwsKmsProvider.js';
import { SqliteDekStore } from '../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../shared/stores/sqlite/SqliteStateStore.js';
import { startAwsEmulator } from '../test/emulators/aws/index.js';

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

/** Re-wrap through ReEncrypt: with a quota Q (achieved share, throttled share) and without (ratio to a raw loop). */
async function aws(n: number, quota: number) {
  const emu = await startAwsEmulator();
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
  try {
    const state = SqliteStateStore.open(join(dir, 'state.db'));
    const run = async (label: string, withQuota: boolean) => {
      const key = await provider.createKey({ name: `bench-${label}` });
      const ref = parseKeyRef(key.ref);
      const store = SqliteDekStore.open({
        id: label,
        path: join(dir, `${label}.db`),
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
      emu.faults.reset();
      if (withQuota) emu.faults.set({ cryptoRequestsPerSecond: quota, cryptoBurst: Math.max(1, quota / 10) });
      const before = emu.requestCounts['kms.ReEncrypt'] ?? 0;
      const t0 = performance.now();
      const job = await runRewrapJob({
        job: {
          id: label,
          keyRef: key.ref,
          storeId: label,
          fromVersions: [],
          toVersion: v2.id,
          status: 'running',
          cursor: null,
          counts: { scanned: 0, rewrapped: 0, verified: 0, conflicts: 0, failed: 0 },
          failures: [],
          updatedAt: new Date().toISOString(),
        },
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
      const calls = (emu.requestCounts['kms.ReEncrypt'] ?? 0) - before;
      const throttled = emu.faults.counts.quota ?? 0;
      emu.faults.reset();
      await store.close?.();
      if (job.counts.rewrapped !== n) throw new Error(`aws bench: re-wrapped ${job.counts.rewrapped}/${n}`);
      return { seconds: s, perSecond: n / s, calls, throttled, rawRate };
    };
    const q = await run('quota', true);
    const free = await run('free', false);
    await state.close?.();
    return {
      scenario: 'aws ReEncrypt re-wrap',
      n,
      quota,
      withQuota: {
        perSecond: Math.round(q.perSecond),
        ofQuota: Math.round((q.perSecond / quota) * 1000) / 1000,
        throttledShare: Math.round((q.throttled / q.calls) * 10000) / 10000,
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
    await emu.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const [name, a, b] = process.argv.slice(2);
let peak = 0;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage.rss());
}, 50);
const result = name === 'aws' ? await aws(Number(a ?? 100_000), Number(b ?? 2000)) : null;
clearInterval(sampler);
if (!result) throw new Error(`unknown provider bench ${name}`);
process.stdout.write(`${JSON.stringify({ ...result, peakRssMB: Math.round(peak / 1048576) })}\n`);
