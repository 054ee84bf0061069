import { type ApplyReport, applyPlan } from './applyPlan.js';
import { acquireLease, type RekeyContext } from './context.js';
import { makePlan } from './planCycle.js';

/** What a scheduled run did, for the runtime's log line and metrics. */
export interface CycleReport {
  status: 'applied' | 'busy';
  planId?: string;
  actions?: number;
  findings?: number;
  apply?: ApplyReport;
  /** Re-wrap shards sent to the queue by this cycle. */
  queued: number;
}

const CYCLE_LEASE = 'cycle';

/**
 * One scheduled cycle, as every serverless runtime runs it: inventory -> plan -> apply, with
 * re-wraps split into shards and queued for workers instead of run inline. Overlapping
 * schedules do not double up: a second cycle while one holds the lease reports `busy`.
 */
export async function runScheduledCycle(
  ctx: RekeyContext,
  opts: { shards?: number } = {},
): Promise<CycleReport> {
  if (!(await acquireLease(ctx, CYCLE_LEASE))) return { status: 'busy', queued: 0 };
  try {
    const { plan } = await makePlan(ctx);
    const apply = await applyPlan(ctx, plan, {
      rewrap: 'queue',
      ...(opts.shards ? { shards: opts.shards } : {}),
    });
    const queued = apply.outcomes
      .filter((o) => o.type === 'rewrap' && o.status === 'awaiting_rewrap')
      .reduce((n, o) => n + Number(o.result?.queued ?? 0), 0);
    return {
      status: 'applied',
      planId: plan.id,
      actions: plan.actions.length,
      findings: plan.findings.length,
      apply,
      queued,
    };
  } finally {
    await ctx.state.releaseLease(CYCLE_LEASE, ctx.instanceId);
  }
}

// What queue workers run, for the runtimes that import it from here.
export { runRewrapShard, type ShardReport } from './rewrapShard.js';
export { parseShardMessage } from './shardMessage.js';
