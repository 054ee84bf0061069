import { NotFoundError } from '../errors.js';
import type { RewrapJob } from '../ports/StateStore.js';
import type { AdaptiveRate } from '../rewrap/adaptiveRate.js';
import { providerById, publishEvents, type RekeyContext } from './context.js';
import { rewrapCompletedEvent, settleRewrapJob, workOnRewrapJob } from './rewrap.js';
import { parseShardMessage } from './shardMessage.js';

/**
 * What a queue worker runs for one re-wrap shard, apart from the scheduled cycle
 * (scheduled.ts) so that a worker loads none of planning and applying.
 */

export interface ShardReport {
  /** done: this shard is finished; busy: another worker holds it (redeliver later). */
  status: 'done' | 'busy' | 'failed';
  jobId: string;
  counts: RewrapJob['counts'];
  /** Set when this shard finished the whole job. */
  jobCompleted?: string;
}

/**
 * Works one queued shard: claim its lease, re-wrap with checkpoints, then settle the parent job.
 * Safe under at-least-once delivery: a finished shard is a no-op, a shard another worker holds
 * reports `busy`, and the job's completion is announced exactly once.
 */
export async function runRewrapShard(
  ctx: RekeyContext,
  message: unknown,
  opts: { limiters?: Map<string, AdaptiveRate> } = {},
): Promise<ShardReport> {
  const msg = parseShardMessage(message);
  const job = await ctx.state.getRewrapJob(msg.jobId);
  if (!job) throw new NotFoundError(`re-wrap shard ${msg.jobId} not found in the state store`);
  providerById(ctx, msg.providerId);
  if (!(job.status === 'done' && job.counts.failed === 0)) {
    await workOnRewrapJob(ctx, msg.jobId, msg.providerId, {
      verify: msg.verify,
      batchSize: msg.batchSize,
      ...(msg.ratePerSecond ? { ratePerSecond: msg.ratePerSecond } : {}),
      ...(opts.limiters ? { limiters: opts.limiters } : {}),
    });
  }
  const after = (await ctx.state.getRewrapJob(msg.jobId))!;
  if (after.status !== 'done') return { status: 'busy', jobId: after.id, counts: after.counts };
  const report: ShardReport = {
    status: after.counts.failed > 0 ? 'failed' : 'done',
    jobId: after.id,
    counts: after.counts,
  };
  const parentId = after.shard?.parent ?? after.id;
  const parent = after.shard ? await settleRewrapJob(ctx, parentId) : after;
  if (parent.status === 'done' && (await announceOnce(ctx, parent, msg.providerId))) {
    report.jobCompleted = parent.id;
  }
  return report;
}

/** Audits and publishes a job's completion once, whichever worker finishes last. */
async function announceOnce(ctx: RekeyContext, job: RewrapJob, providerId: string): Promise<boolean> {
  const now = ctx.clock.now().toISOString();
  const first = await ctx.state.putRecord(
    { kind: 'rewrap-completed', id: job.id, body: { keyRef: job.keyRef, at: now }, updatedAt: now },
    0,
  );
  if (!first) return false;
  const provider = providerById(ctx, providerId);
  await ctx.audit.append({
    actor: ctx.actor,
    action: 'rewrap.completed',
    target: job.keyRef,
    details: {
      jobId: job.id,
      store: job.storeId,
      toVersion: job.toVersion,
      ...job.counts,
      failures: job.failures.slice(0, 10),
    },
  });
  const startedAt = new Date(job.createdAt ?? job.updatedAt);
  await publishEvents(ctx, [rewrapCompletedEvent(job, provider, { startedAt, finishedAt: new Date(now) })]);
  return true;
}
