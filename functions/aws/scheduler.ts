import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { ScheduledEvent } from 'aws-lambda';
import { ApprovalRequired } from '../../shared/core/usecases/approvals.js';
import { type CycleReport, runScheduledCycle } from '../../shared/core/usecases/scheduled.js';
import { eventBridgeBusOnFirstUse, workQueueOnFirstUse } from './onFirstUse.js';
import { awsRuntime, errorFields, makeLogger, makeMetrics } from './runtime.js';

/**
 * EventBridge schedule -> one rekey cycle: inventory, plan, apply. Rotations and retirements
 * run here; re-wraps are split into shards and sent to the SQS queue for the worker function.
 * A cycle still running when the next schedule fires makes the new one report `busy`.
 */
const logger = makeLogger('scheduler');
const metrics = makeMetrics();
// Only cycles that act send shards or publish events; most find nothing due. The SQS and
// EventBridge clients load with the first cycle that needs them (onFirstUse.ts).
const runtime = awsRuntime({
  queue: (queueUrl) =>
    workQueueOnFirstUse(async () => {
      const { SqsWorkQueue } = await import('../../shared/queues/sqs/SqsWorkQueue.js');
      return new SqsWorkQueue({ queueUrl });
    }),
  events: eventBridgeBusOnFirstUse,
});

export interface SchedulerResult {
  /** awaiting_approval: the config changed and the change needs approvals (nothing ran). */
  status: CycleReport['status'] | 'awaiting_approval';
  /** The approval request a changed config waits for. */
  requestId?: string;
  planId?: string;
  actions?: number;
  findings?: number;
  queued: number;
  applyStatus?: string;
  totals?: Record<string, number>;
  /** Actions by status (done, awaiting_rewrap, failed...). */
  outcomes?: Record<string, number>;
}

async function run(event: ScheduledEvent): Promise<SchedulerResult> {
  const ctx = await runtime.context();
  let report: CycleReport;
  try {
    report = await runScheduledCycle(ctx, {
      ...(runtime.settings().shards ? { shards: runtime.settings().shards } : {}),
    });
  } catch (e) {
    if (!(e instanceof ApprovalRequired)) throw e;
    // Not a failure to retry: approvers act through the approvals API, the next cycle proceeds.
    metrics.addMetric('rekey.cycle.awaiting_approval', MetricUnit.Count, 1);
    const result: SchedulerResult = {
      status: 'awaiting_approval',
      queued: 0,
      ...(e.requestId ? { requestId: e.requestId } : {}),
    };
    logger.warn('scheduled cycle awaits approval', { scheduledAt: event.time, ...result, reason: e.message });
    return result;
  }
  const result: SchedulerResult = { status: report.status, queued: report.queued };
  if (report.apply) {
    const outcomes: Record<string, number> = {};
    for (const o of report.apply.outcomes) outcomes[o.status] = (outcomes[o.status] ?? 0) + 1;
    Object.assign(result, {
      planId: report.planId,
      actions: report.actions,
      findings: report.findings,
      applyStatus: report.apply.status,
      totals: report.apply.totals,
      outcomes,
    });
    for (const o of report.apply.outcomes.filter((x) => x.status === 'failed')) {
      logger.error('action failed', { index: o.index, type: o.type, keyRef: o.keyRef, error: o.error });
    }
  }
  logger.info('scheduled cycle', { scheduledAt: event.time, ...result });
  metrics.addMetric('rekey.cycle.runs', MetricUnit.Count, 1);
  if (report.status === 'busy') metrics.addMetric('rekey.cycle.busy', MetricUnit.Count, 1);
  metrics.addMetric('rekey.cycle.actions', MetricUnit.Count, report.actions ?? 0);
  metrics.addMetric('rekey.cycle.queued_shards', MetricUnit.Count, report.queued);
  metrics.addMetric('rekey.cycle.failed_actions', MetricUnit.Count, result.outcomes?.failed ?? 0);
  return result;
}

export const handler = middy(run)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .onError((request) => {
    logger.error('scheduled cycle failed', errorFields(request.error));
  });
