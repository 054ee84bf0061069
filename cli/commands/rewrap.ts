import { spawn } from 'node:child_process';
import { type Command, Option } from 'commander';
import type { Composed } from '../../shared/compose.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import { ConfigError, ConflictError, NotFoundError } from '../../shared/core/errors.js';
import type { RekeyConfig } from '../../shared/core/policy/types.js';
import type { RewrapJob } from '../../shared/core/ports/StateStore.js';
import { acquireLease, providerForRef } from '../../shared/core/usecases/context.js';
import { takeInventory } from '../../shared/core/usecases/inventory.js';
import {
  parseVerifyMode,
  pendingDeks,
  planKeyRewrap,
  prepareRewrapJob,
  type RewrapRunOptions,
  type RewrapSpec,
  settleRewrapJob,
  sumCounts,
  workJobs,
  workOnRewrapJob,
} from '../../shared/core/usecases/rewrap.js';
import { EXIT } from '../exitCodes.js';
import { table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

interface RewrapCliOptions {
  key?: string;
  version?: string;
  store?: string[];
  provider?: string;
  verify: string;
  batch: string;
  rate?: string;
  concurrency?: string;
  workers: string;
  dryRun?: boolean;
  resume?: string;
  workerOf?: string;
  configStdin?: boolean;
}

/** Marks the config a `rekey rewrap --workers N` parent writes to each child's stdin. */
const WORKER_CONFIG_FORMAT = 'rekey-worker-config';
/**
 * Equal parts per worker that `--workers N` cuts a job into before grouping them into shards
 * of decreasing size: the last shards are 1/(32N) of the job, short enough that the workers
 * finish within a moment of each other.
 */
const SHARD_PARTS_PER_WORKER = 32;

/**
 * What a parent says on a child's standard input: first the config it validated, as one line
 * of JSON; then, by closing the stream, that the job is prepared and work may start. A child
 * is spawned before the job is split, so that its start-up overlaps the parent's.
 */
function parentChannel(): { config: Promise<RekeyConfig>; released: Promise<void> } {
  const chunks: Buffer[] = [];
  let line: ((text: string) => void) | undefined;
  const first = new Promise<string>((r) => {
    line = r;
  });
  const released = new Promise<void>((resolve) => {
    process.stdin.on('data', (c: Buffer) => {
      chunks.push(c);
      if (c.includes(0x0a)) line?.(Buffer.concat(chunks).toString('utf8').split('\n', 1)[0]!);
    });
    process.stdin.on('end', () => {
      line?.(Buffer.concat(chunks).toString('utf8').split('\n', 1)[0]!);
      resolve();
    });
  });
  return { config: first.then(parseHandoff), released };
}

/** The config handed over by the parent process (validated there); a ConfigError if it is not one. */
function parseHandoff(text: string): RekeyConfig {
  let data: { format?: unknown; config?: Partial<RekeyConfig> } | null = null;
  try {
    data = JSON.parse(text);
  } catch {
    // reported below
  }
  const c = data?.config;
  if (data?.format !== WORKER_CONFIG_FORMAT || c?.version !== 1 || typeof c.file !== 'string') {
    throw new ConfigError(
      '--config-stdin: standard input does not hold the config of a `rekey rewrap --workers N` parent',
    );
  }
  return c as RekeyConfig;
}

function intOption(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ConfigError(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  return n;
}

function runOptions(o: RewrapCliOptions): RewrapRunOptions {
  return {
    verify: parseVerifyMode(o.verify),
    batchSize: intOption('batch', o.batch, 1, 100_000),
    ...(o.rate ? { ratePerSecond: intOption('rate', o.rate, 1, 10_000_000) } : {}),
    ...(o.concurrency ? { concurrency: intOption('concurrency', o.concurrency, 1, 1024) } : {}),
  };
}

/** Every (key, store) with DEKs off the primary, from a fresh inventory. */
async function allWork(ctx: Composed, o: RewrapCliOptions) {
  const inv = await takeInventory(ctx);
  const out: Awaited<ReturnType<typeof planKeyRewrap>> = [];
  for (const k of inv.keys) {
    const specs = await planKeyRewrap(ctx, {
      keyRef: k.ref,
      provider: k.providerId,
      ...(o.store ? { stores: o.store } : {}),
    });
    out.push(...specs.filter((s) => s.pending > 0));
  }
  return out;
}

/** Runs one job: inline with one worker, or split across child processes. */
async function runJob(
  ctx: Composed,
  g: GlobalOptions,
  spec: RewrapSpec,
  o: RewrapCliOptions,
  run: RewrapRunOptions,
  workers: number,
): Promise<RewrapJob> {
  // Workers start up while this process prepares the job; they wait for its word to begin.
  const crew = workers > 1 ? spawnWorkers(ctx, g, spec, o, workers) : undefined;
  const keyLease = `key:${spec.keyRef}`;
  let leased = false;
  try {
    // Several workers claim shards as they go: many shards, large ones first (see ShardPlan).
    await prepareRewrapJob(ctx, spec, crew ? { shards: workers * SHARD_PARTS_PER_WORKER, workers } : 1);
    if (!(await acquireLease(ctx, keyLease)))
      throw new ConflictError(`another rekey process holds the lease on ${spec.keyRef}`);
    leased = true;
    const renew = async () => {
      if (!(await acquireLease(ctx, keyLease))) throw new ConflictError(`lost the lease on ${spec.keyRef}`);
    };
    if (crew) await superviseWorkers(ctx, spec, crew.release(), renew);
    // Inline: the whole job, or whatever a child left unfinished (a worker that died).
    await workOnRewrapJob(ctx, spec.jobId, spec.providerId, { ...run, onBatch: renew });
    const job = await settleRewrapJob(ctx, spec.jobId);
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'rewrap.completed',
      target: spec.keyRef,
      details: {
        job: job.id,
        store: spec.storeId,
        toVersion: job.toVersion,
        ...job.counts,
        failures: job.failures.slice(0, 10),
      },
    });
    return job;
  } finally {
    await crew?.stop();
    if (leased) await ctx.state.releaseLease(keyLease, ctx.instanceId);
  }
}

interface Crew {
  /** Tells the workers to start (the job is prepared); resolves when every one has exited. */
  release(): Promise<void>;
  /** Stops workers that are still running (this process is failing); a no-op once they exited. */
  stop(): Promise<void>;
}

/**
 * Spawns the worker processes of one job. Each gets the config this process validated, on its
 * stdin, and starts up at once (its module, session and login); it begins on the shards only
 * when the stream closes, which release() does once the job is prepared.
 */
function spawnWorkers(
  ctx: Composed,
  g: GlobalOptions,
  spec: RewrapSpec,
  o: RewrapCliOptions,
  workers: number,
): Crew {
  const args = [
    process.argv[1]!,
    ...(g.config ? ['--config', g.config] : []),
    ...(g.state ? ['--state', g.state] : []),
    '--quiet',
    'rewrap',
    '--worker-of',
    spec.jobId,
    '--provider',
    spec.providerId,
    '--verify',
    o.verify,
    '--batch',
    o.batch,
    ...(o.rate ? ['--rate', String(Math.max(1, Math.floor(Number(o.rate) / workers)))] : []),
    ...(o.concurrency ? ['--concurrency', o.concurrency] : []),
  ];
  // Each child gets the config this process validated on its stdin, instead of reading and
  // validating the file again: its start-up then loads neither the YAML parser nor the schema.
  args.push('--config-stdin');
  const handoff = `${JSON.stringify({ format: WORKER_CONFIG_FORMAT, config: ctx.config })}\n`;
  const children = Array.from({ length: workers }, () => {
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'ignore', 'inherit'], env: process.env });
    // A child that dies before reading reports through its exit code; the broken pipe is no news.
    child.stdin.on('error', () => {});
    child.stdin.write(handoff);
    return child;
  });
  const exited = Promise.all(children.map((c) => new Promise<void>((r) => c.on('exit', () => r())))).then(
    () => {},
  );
  return {
    release() {
      for (const c of children) c.stdin.end();
      return exited;
    },
    async stop() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
      await exited;
    },
  };
}

/** Reports the progress of the workers of a job until every one has exited. */
async function superviseWorkers(
  ctx: Composed,
  spec: RewrapSpec,
  exited: Promise<void>,
  renew: () => Promise<void>,
): Promise<void> {
  let running = true;
  void exited.then(() => {
    running = false;
  });
  const parent = (await ctx.state.getRewrapJob(spec.jobId))!;
  const total = parent.pending ?? (await pendingDeks(ctx, spec));
  while (running) {
    // Wake at the next poll or as soon as every worker has exited, whichever is first.
    await Promise.race([exited, new Promise((r) => setTimeout(r, 500))]);
    const counts = sumCounts(await workJobs(ctx, parent));
    ctx.onProgress?.({
      kind: 'rewrap',
      keyRef: spec.keyRef,
      storeId: spec.storeId,
      done: counts.rewrapped + counts.failed,
      total,
      failed: counts.failed,
    });
    await renew();
  }
  await exited;
}

export function registerRewrap(program: Command, globals: () => GlobalOptions): void {
  program
    .command('rewrap [keyRef]')
    .description(
      're-wrap DEKs under older key versions to the current primary (all keys with pending DEKs if none is named)',
    )
    .option('--key <ref>', 'the key (same as the positional argument)')
    .option('--version <v>', 'only DEKs under this version')
    .option('--store <id...>', 'only these stores (default: all configured)')
    .option('--provider <id>', 'configured provider id, when several of the same type exist')
    .option('--verify <mode>', 'full | none | sample(P%)', 'full')
    .option('--batch <n>', 'DEKs per batch (one checkpoint each)', '1000')
    .option('--rate <n>', 'ceiling on provider operations per second (adapts down when throttled)')
    .option('--concurrency <n>', 'provider calls in flight per worker (default 16)')
    .option('--workers <n>', 'worker processes, each on its own shards of the job', '1')
    .option('--dry-run', 'show what would move; change nothing')
    .option('--resume <job>', 'resume a job by id (after a crash or kill)')
    .addOption(new Option('--worker-of <job>').hideHelp())
    .addOption(new Option('--config-stdin').hideHelp())
    .action(async (keyArg: string | undefined, o: RewrapCliOptions) => {
      const g = globals();
      if (o.workerOf) {
        // A child of `rekey rewrap --workers N`: work on shards until none is left, and stop if
        // the parent disappears. It prices nothing, so it loads no price catalog.
        const jobId = o.workerOf;
        const channel = o.configStdin ? parentChannel() : undefined;
        const from = channel ? { config: await channel.config, without: { catalog: true } } : undefined;
        process.exitCode = await withSession(
          g,
          async (ctx) => {
            const ppid = process.ppid;
            // Ready: wait for the parent to finish preparing the job (or to go away).
            await channel?.released;
            if (process.ppid !== ppid) throw new ConflictError('parent process is gone');
            await workOnRewrapJob(ctx, jobId, o.provider!, {
              ...runOptions(o),
              onBatch: async () => {
                if (process.ppid !== ppid) throw new ConflictError('parent process is gone');
              },
            });
            return EXIT.ok;
          },
          from,
        );
        return;
      }
      const code = await withSession(g, async (ctx, out) => {
        // Flags are checked before anything is read or written.
        const run = runOptions(o);
        const workers = intOption('workers', o.workers, 1, 64);
        let specs: (RewrapSpec & { pending?: number })[];
        if (o.resume) {
          const job = await ctx.state.getRewrapJob(o.resume);
          if (!job) throw new NotFoundError(`re-wrap job ${o.resume} not found`);
          const { provider } = providerForRef(ctx, job.keyRef, o.provider);
          specs = [
            {
              jobId: job.id,
              keyRef: job.keyRef,
              providerId: provider.id,
              storeId: job.storeId,
              fromVersions: job.fromVersions,
              toVersion: job.toVersion,
            },
          ];
        } else {
          const keyRef = keyArg ?? o.key;
          if (keyRef) parseKeyRef(keyRef);
          specs = keyRef
            ? await planKeyRewrap(ctx, {
                keyRef,
                ...(o.provider ? { provider: o.provider } : {}),
                ...(o.store ? { stores: o.store } : {}),
                ...(o.version ? { version: o.version } : {}),
              })
            : await allWork(ctx, o);
        }
        if (o.dryRun) {
          out.result({ dryRun: true, jobs: specs }, () => {
            out.line(
              table(
                ['key', 'store', 'to version', 'DEKs to move', 'job'],
                specs.map((s) => [s.keyRef, s.storeId, s.toVersion, s.pending ?? '?', s.jobId]),
              ),
            );
            out.line('Dry run: nothing changed.');
          });
          return EXIT.ok;
        }
        const started = performance.now();
        const jobs: RewrapJob[] = [];
        for (const spec of specs) jobs.push(await runJob(ctx, g, spec, o, run, workers));
        const seconds = (performance.now() - started) / 1000;
        const totals = sumCounts(jobs);
        const value = {
          jobs,
          totals,
          seconds: Math.round(seconds * 1000) / 1000,
          perSecond: seconds > 0 ? Math.round(totals.rewrapped / seconds) : 0,
        };
        out.result(value, () => {
          out.line(
            table(
              [
                'job',
                'key',
                'store',
                'to',
                'rewrapped',
                'verified',
                'conflicts',
                'retried',
                'throttled',
                'failed',
              ],
              jobs.map((j) => [
                j.id,
                j.keyRef,
                j.storeId,
                j.toVersion,
                j.counts.rewrapped,
                j.counts.verified,
                j.counts.conflicts,
                j.counts.retried ?? 0,
                j.counts.throttled ?? 0,
                j.counts.failed,
              ]),
            ),
          );
          out.line(
            `${totals.rewrapped} DEK(s) re-wrapped in ${value.seconds}s (${value.perSecond}/s), ${totals.failed} failed`,
          );
          for (const j of jobs)
            for (const f of j.failures) out.note(`failed: ${j.storeId} ${f.id}: ${f.error}`);
        });
        return jobs.some((j) => j.counts.failed > 0 || j.status !== 'done') ? EXIT.failed : EXIT.ok;
      });
      process.exitCode = code;
    });
}
