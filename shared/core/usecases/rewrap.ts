import { createHash } from 'node:crypto';
import { parseKeyRef } from '../domain/keyRef.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { parseVerify } from '../policy/values.js';
import type { DekScanQuery } from '../ports/DekStore.js';
import type { RekeyEvent } from '../ports/EventBus.js';
import type { KeyProvider } from '../ports/KeyProvider.js';
import type { RewrapCounts, RewrapJob } from '../ports/StateStore.js';
import { AdaptiveRate } from '../rewrap/adaptiveRate.js';
import { newRewrapJob, runRewrapJob, type VerifyMode } from '../rewrap/rewrapJob.js';
import { acquireLease, providerById, providerForRef, type RekeyContext, storeById } from './context.js';

/** What one re-wrap job moves: one key's DEKs in one store, from older versions to `toVersion`. */
export interface RewrapSpec {
  jobId: string;
  keyRef: string;
  providerId: string;
  storeId: string;
  /** Empty: every version but the target. */
  fromVersions: string[];
  toVersion: string;
  /** DEKs to move, when the caller has just counted them. */
  pending?: number;
}

/** How a job is cut into shards. */
export interface ShardPlan {
  /** Shards to cut. */
  shards: number;
  /**
   * The shards go to this many workers that each claim the next free one: cut them large
   * first and smaller towards the end (guided scheduling), so the workers finish together.
   * `shards` is then the number of equal parts the sizes are made of.
   */
  workers?: number;
}

export interface RewrapRunOptions {
  verify: VerifyMode;
  batchSize: number;
  ratePerSecond?: number;
  concurrency?: number;
  /** Shared per-provider limiters (one AIMD bucket per provider in this process). */
  limiters?: Map<string, AdaptiveRate>;
  /** Called after each committed batch of any shard. */
  onBatch?: () => Promise<void>;
}

const zero = (): RewrapCounts => ({
  scanned: 0,
  rewrapped: 0,
  verified: 0,
  conflicts: 0,
  failed: 0,
  retried: 0,
  throttled: 0,
});

export function sumCounts(jobs: RewrapJob[]): RewrapCounts {
  const t = zero();
  for (const j of jobs) {
    for (const k of Object.keys(t) as (keyof RewrapCounts)[]) t[k] = (t[k] ?? 0) + (j.counts[k] ?? 0);
  }
  return t;
}

/** DEKs of a key in a store that the spec would move. */
export async function pendingDeks(ctx: RekeyContext, spec: Omit<RewrapSpec, 'jobId'>): Promise<number> {
  const byVersion = await storeById(ctx, spec.storeId).countByVersion(spec.keyRef);
  return Object.entries(byVersion)
    .filter(
      ([v]) => v !== spec.toVersion && (spec.fromVersions.length === 0 || spec.fromVersions.includes(v)),
    )
    .reduce((a, [, n]) => a + n, 0);
}

/** The smallest part a guided split cuts: below this a shard costs more than it balances. */
const MIN_PART_DEKS = 500;

/**
 * Sizes of shards, in equal parts, for `workers` workers that each take the next free shard:
 * each shard is the remaining parts over twice the workers, so the last shards are one part
 * each and no worker is left with a long one while the others have finished.
 */
export function guidedShardSizes(parts: number, workers: number): number[] {
  const sizes: number[] = [];
  for (let left = parts; left > 0; ) {
    const size = Math.ceil(left / (2 * workers));
    sizes.push(size);
    left -= size;
  }
  return sizes;
}

/**
 * Creates (or finds) the job record, split into id ranges when the store can split: `shards`
 * equal ranges, or a ShardPlan. Idempotent: the same spec and id always yield the same job
 * and shards.
 */
export async function prepareRewrapJob(
  ctx: RekeyContext,
  spec: RewrapSpec,
  cut: number | ShardPlan = 1,
): Promise<RewrapJob> {
  const plan = typeof cut === 'number' ? { shards: cut } : cut;
  const { id: _id, ...base } = newRewrapJob({
    id: spec.jobId,
    keyRef: spec.keyRef,
    storeId: spec.storeId,
    toVersion: spec.toVersion,
    fromVersions: spec.fromVersions,
    now: ctx.clock.now(),
  });

  const existing = await ctx.state.getRewrapJob(spec.jobId);
  if (existing) return existing;
  const store = storeById(ctx, spec.storeId);
  const query: DekScanQuery = {
    keyRef: spec.keyRef,
    notVersion: spec.toVersion,
    ...(spec.fromVersions.length ? { versions: spec.fromVersions } : {}),
  };
  const pending = spec.pending ?? (await pendingDeks(ctx, spec));
  const workers = plan.workers ?? 0;
  // Guided shards: no part smaller than MIN_PART_DEKS, and never fewer parts than workers.
  const parts =
    workers > 1 ? Math.max(workers, Math.min(plan.shards, Math.floor(pending / MIN_PART_DEKS))) : plan.shards;
  const split = parts > 1 && store.splitPoints ? await store.splitPoints(query, parts) : [];
  if (split.length === 0) return ctx.state.createRewrapJob({ id: spec.jobId, ...base, pending });
  let points = split;
  if (workers > 1) {
    // Equal parts grouped into shards of decreasing size; a cut falls on a part boundary.
    points = [];
    let at = 0;
    for (const size of guidedShardSizes(split.length + 1, workers)) {
      at += size;
      if (at <= split.length) points.push(split[at - 1]!);
    }
  }
  const bounds: (string | undefined)[] = [undefined, ...points, undefined];
  const shardIds: string[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const id = `${spec.jobId}#${i + 1}of${bounds.length - 1}`;
    shardIds.push(id);
    await ctx.state.createRewrapJob({
      id,
      ...base,
      shard: {
        parent: spec.jobId,
        index: i,
        count: bounds.length - 1,
        ...(bounds[i] !== undefined ? { idFrom: bounds[i] } : {}),
        ...(bounds[i + 1] !== undefined ? { idTo: bounds[i + 1] } : {}),
      },
    });
  }
  return ctx.state.createRewrapJob({ id: spec.jobId, ...base, shardIds, pending });
}

/** The jobs that do the work: the shards of a split job, or the job itself. */
export async function workJobs(ctx: RekeyContext, job: RewrapJob): Promise<RewrapJob[]> {
  if (!job.shardIds) return [job];
  const out: RewrapJob[] = [];
  for (const id of job.shardIds) {
    const s = await ctx.state.getRewrapJob(id);
    if (!s) throw new NotFoundError(`re-wrap shard ${id} of job ${job.id} is missing from the state store`);
    out.push(s);
  }
  return out;
}

/**
 * Works through the unfinished shards of a job that no live worker holds, until none is left.
 * Any number of workers (processes, functions) can run this on the same job at once: each
 * shard is claimed with a lease and checkpointed after every batch.
 */
export async function workOnRewrapJob(
  ctx: RekeyContext,
  jobId: string,
  providerId: string,
  o: RewrapRunOptions,
): Promise<void> {
  const parent = await ctx.state.getRewrapJob(jobId);
  if (!parent) throw new NotFoundError(`re-wrap job ${jobId} not found`);
  const provider = providerById(ctx, providerId);
  const ref = parseKeyRef(parent.keyRef);
  const store = storeById(ctx, parent.storeId);
  const limiters = o.limiters ?? new Map<string, AdaptiveRate>();
  let limiter = limiters.get(providerId);
  if (!limiter) {
    limiter = new AdaptiveRate(o.ratePerSecond ? { maxPerSecond: o.ratePerSecond } : {});
    limiters.set(providerId, limiter);
  }
  const total = parent.pending ?? (await pendingDeks(ctx, { ...parent, providerId }));
  for (const shard of await workJobs(ctx, parent)) {
    let job = (await ctx.state.getRewrapJob(shard.id)) ?? shard;
    // A finished job with failures is retried from the start: the failed DEKs are still old.
    if (job.status === 'done' && job.counts.failed > 0) {
      job = { ...job, status: 'running', cursor: null, counts: { ...job.counts, failed: 0 }, failures: [] };
    }
    if (job.status === 'done') continue;
    const lease = `rewrap:${job.id}`;
    if (!(await acquireLease(ctx, lease))) continue;
    try {
      await runRewrapJob({
        job,
        ref,
        provider,
        store,
        state: ctx.state,
        verify: o.verify,
        batchSize: o.batchSize,
        limiter,
        ...(o.concurrency ? { concurrency: o.concurrency } : {}),
        ...(ctx.metrics ? { metrics: ctx.metrics } : {}),
        dimensions: { provider: provider.type },
        total,
        now: () => ctx.clock.now(),
        onProgress: (p) => {
          ctx.onProgress?.({
            kind: 'rewrap',
            keyRef: parent.keyRef,
            storeId: parent.storeId,
            done: p.counts.rewrapped + p.counts.failed,
            total,
            failed: p.counts.failed,
          });
        },
        onBatch: async () => {
          if (!(await acquireLease(ctx, lease)))
            throw new ConflictError(`lost the lease on re-wrap ${job.id}`);
          await o.onBatch?.();
        },
      });
    } finally {
      await ctx.state.releaseLease(lease, ctx.instanceId);
    }
  }
}

/** The `RewrapCompleted` event of a finished job (inline or queued). */
export function rewrapCompletedEvent(
  job: RewrapJob,
  provider: KeyProvider,
  at: { startedAt: Date; finishedAt: Date },
): RekeyEvent {
  return {
    type: 'RewrapCompleted',
    id: job.id,
    time: at.finishedAt.toISOString(),
    detail: {
      keyRef: job.keyRef,
      providerId: provider.id,
      store: job.storeId,
      toVersion: job.toVersion,
      fromVersions: job.fromVersions,
      rewrapped: job.counts.rewrapped,
      failed: job.counts.failed,
      verified: job.counts.verified,
      mode: provider.capabilities().serverSideRewrap ? 'server-side' : 'unwrap-wrap',
      jobId: job.id,
      startedAt: at.startedAt.toISOString(),
      durationMs: Math.max(0, at.finishedAt.getTime() - at.startedAt.getTime()),
    },
  };
}

/** Marks a split job done once every shard is, and returns it with summed counts. */
export async function settleRewrapJob(ctx: RekeyContext, jobId: string): Promise<RewrapJob> {
  const job = await ctx.state.getRewrapJob(jobId);
  if (!job) throw new NotFoundError(`re-wrap job ${jobId} not found`);
  if (!job.shardIds) return job;
  const shards = await workJobs(ctx, job);
  const settled: RewrapJob = {
    ...job,
    counts: sumCounts(shards),
    failures: shards.flatMap((s) => s.failures).slice(0, 100),
    status: shards.every((s) => s.status === 'done') ? 'done' : 'running',
    updatedAt: ctx.clock.now().toISOString(),
  };
  await ctx.state.saveRewrapJob(settled);
  return settled;
}

export interface RewrapKeyOptions extends RewrapRunOptions {
  keyRef: string;
  provider?: string;
  /** Default: every configured store. */
  stores?: string[];
  /** Only DEKs under this version. */
  version?: string;
  shards?: number;
}

/** Deterministic id of an ad-hoc job: the same key, store, versions and target resume the same job. */
export function adhocJobId(
  keyRef: string,
  storeId: string,
  fromVersions: string[],
  toVersion: string,
): string {
  const h = createHash('sha256')
    .update(`${keyRef}|${storeId}|${fromVersions.join(',')}|${toVersion}`)
    .digest('hex');
  return `rw-${h.slice(0, 16)}`;
}

/** The ad-hoc jobs `rekey rewrap` would run for one key (one per store with DEKs to move). */
export async function planKeyRewrap(
  ctx: RekeyContext,
  o: Omit<RewrapKeyOptions, keyof RewrapRunOptions>,
): Promise<(RewrapSpec & { pending: number })[]> {
  const { ref, provider } = providerForRef(ctx, o.keyRef, o.provider);
  const key = await provider.getKey(ref);
  const out: (RewrapSpec & { pending: number })[] = [];
  for (const storeId of o.stores ?? [...ctx.stores.keys()]) {
    const fromVersions = o.version ? [o.version] : [];
    const spec = {
      keyRef: ref.uri,
      providerId: provider.id,
      storeId,
      fromVersions,
      toVersion: key.primaryVersion,
    };
    const pending = await pendingDeks(ctx, spec);
    out.push({ ...spec, jobId: adhocJobId(ref.uri, storeId, fromVersions, key.primaryVersion), pending });
  }
  return out;
}

/** Re-wraps one key's DEKs to its current primary in this process, under the key's lease. */
export async function rewrapKey(ctx: RekeyContext, o: RewrapKeyOptions): Promise<RewrapJob[]> {
  const specs = await planKeyRewrap(ctx, o);
  const keyRef = specs[0]?.keyRef ?? parseKeyRef(o.keyRef).uri;
  const lease = `key:${keyRef}`;
  if (!(await acquireLease(ctx, lease)))
    throw new ConflictError(`another rekey process holds the lease on ${keyRef}`);
  const jobs: RewrapJob[] = [];
  try {
    for (const spec of specs) {
      let job = await prepareRewrapJob(ctx, spec, o.shards ?? 1);
      if (job.status === 'done' && job.counts.failed === 0 && spec.pending > 0) {
        // New DEKs arrived under old versions since this job last finished: go again.
        job = { ...job, status: 'running', cursor: null, pending: job.counts.rewrapped + spec.pending };
        await ctx.state.saveRewrapJob(job);
      }
      await workOnRewrapJob(ctx, spec.jobId, spec.providerId, {
        ...o,
        onBatch: async () => {
          if (!(await acquireLease(ctx, lease))) throw new ConflictError(`lost the lease on ${keyRef}`);
        },
      });
      job = await settleRewrapJob(ctx, spec.jobId);
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'rewrap.completed',
        target: keyRef,
        details: {
          job: job.id,
          store: spec.storeId,
          toVersion: job.toVersion,
          ...job.counts,
          failures: job.failures.slice(0, 10),
        },
      });
      jobs.push(job);
    }
  } finally {
    await ctx.state.releaseLease(lease, ctx.instanceId);
  }
  return jobs;
}

/** Parses `full`, `none` or `sample(P%)` (the policy file's syntax). */
export function parseVerifyMode(text: string): VerifyMode {
  const v = parseVerify(text);
  return v.mode === 'sample' ? { sample: v.fraction } : v.mode;
}
