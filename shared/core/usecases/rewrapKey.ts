import { createHash } from 'node:crypto';
import { ConflictError } from '../errors.js';
import { parseVerify } from '../policy/values.js';
import type { RewrapJob } from '../ports/StateStore.js';
import { runRewrapJob, type VerifyMode } from '../rewrap/rewrapJob.js';
import { providerForRef, type RekeyContext, storeById } from './context.js';

export interface RewrapKeyOptions {
  keyRef: string;
  provider?: string;
  /** Default: every configured store. */
  stores?: string[];
  verify: VerifyMode;
  batchSize: number;
  ratePerSecond?: number;
  /** Resume this job id instead of starting a new one. */
  jobId?: string;
}

/** Ad-hoc re-wrap of one key's DEKs to its current primary, outside a plan. */
export async function rewrapKey(ctx: RekeyContext, o: RewrapKeyOptions): Promise<RewrapJob[]> {
  const { ref, provider } = providerForRef(ctx, o.keyRef, o.provider);
  const key = await provider.getKey(ref);
  const stores = o.stores ?? [...ctx.stores.keys()];
  const lease = `key:${ref.uri}`;
  if (!(await ctx.state.acquireLease(lease, ctx.instanceId, 10 * 60_000, ctx.clock.now().getTime()))) {
    throw new ConflictError(`another rekey process holds the lease on ${ref.uri}`);
  }
  const jobs: RewrapJob[] = [];
  try {
    for (const storeId of stores) {
      const store = storeById(ctx, storeId);
      const id =
        o.jobId ??
        `adhoc:${createHash('sha256').update(`${ref.uri}|${storeId}|${key.primaryVersion}`).digest('hex').slice(0, 16)}`;
      let job = await ctx.state.createRewrapJob({
        id,
        keyRef: ref.uri,
        storeId,
        fromVersions: [],
        toVersion: key.primaryVersion,
        status: 'running',
        cursor: null,
        counts: { scanned: 0, rewrapped: 0, verified: 0, conflicts: 0, failed: 0 },
        failures: [],
        updatedAt: ctx.clock.now().toISOString(),
      });
      // A finished job for the same primary is restarted: new DEKs may have arrived since.
      if (job.status === 'done') {
        job = { ...job, status: 'running', cursor: null, counts: { ...job.counts, failed: 0 }, failures: [] };
      }
      const total = Object.entries(await store.countByVersion(ref.uri))
        .filter(([v]) => v !== key.primaryVersion)
        .reduce((a, [, n]) => a + n, 0);
      job = await runRewrapJob({
        job,
        ref,
        provider,
        store,
        state: ctx.state,
        verify: o.verify,
        batchSize: o.batchSize,
        ...(o.ratePerSecond ? { ratePerSecond: o.ratePerSecond } : {}),
        now: () => ctx.clock.now(),
        onProgress: (p) =>
          ctx.onProgress?.({
            kind: 'rewrap',
            keyRef: ref.uri,
            storeId,
            done: p.counts.rewrapped + p.counts.failed,
            total,
            failed: p.counts.failed,
          }),
        onBatch: async () => {
          await ctx.state.acquireLease(lease, ctx.instanceId, 10 * 60_000, ctx.clock.now().getTime());
        },
      });
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'rewrap.completed',
        target: ref.uri,
        details: {
          job: job.id,
          store: storeId,
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
