import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { ValidationError } from '../../shared/core/errors.js';
import type { AdaptiveRate } from '../../shared/core/rewrap/adaptiveRate.js';
import { runRewrapShard } from '../../shared/core/usecases/rewrapShard.js';
import { eventBridgeBusOnFirstUse } from './onFirstUse.js';
import { awsRuntime, errorFields, isRetryable, makeLogger, makeMetrics } from './runtime.js';

/**
 * SQS -> one re-wrap shard per record, reported per record (partial batch responses). A record
 * is handed back to the queue (a batch item failure) when its shard is held by another worker
 * (`busy`), when a transient fault stopped it, or when it is malformed: SQS redelivers it until
 * the queue's maxReceiveCount, then moves it to the dead-letter queue for someone to look at.
 * A shard finished with per-DEK failures is done: those DEKs stay under their old version and
 * the job reports them; redelivering would not change that.
 */
const logger = makeLogger('worker');
const metrics = makeMetrics();
// Only the shard that completes a job publishes (RewrapCompleted): the EventBridge client loads
// with the first such shard of the execution environment (onFirstUse.ts).
const runtime = awsRuntime({
  events: eventBridgeBusOnFirstUse,
});
const processor = new BatchProcessor(EventType.SQS);
/** One rate per provider for every shard this execution environment works on. */
const limiters = new Map<string, AdaptiveRate>();

/** The record goes back to the queue; the reason is in the log. */
class HandBack extends Error {}

async function workOn(record: SQSRecord): Promise<unknown> {
  const ctx = await runtime.context();
  const where = { messageId: record.messageId, receiveCount: record.attributes.ApproximateReceiveCount };
  // A lease owner per record: two copies of one message in a batch must not share a lease.
  const rctx = { ...ctx, instanceId: `${ctx.instanceId}:${record.messageId.slice(0, 8)}` };
  let report: Awaited<ReturnType<typeof runRewrapShard>>;
  try {
    report = await runRewrapShard(rctx, record.body, { limiters });
  } catch (e) {
    if (e instanceof ValidationError) {
      metrics.addMetric('rekey.worker.malformed', MetricUnit.Count, 1);
      logger.error('malformed re-wrap message: left for the dead-letter queue', {
        ...where,
        ...errorFields(e),
      });
    } else if (isRetryable(e)) {
      metrics.addMetric('rekey.worker.retried', MetricUnit.Count, 1);
      logger.warn('re-wrap shard stopped by a transient fault: handed back', { ...where, ...errorFields(e) });
    } else {
      metrics.addMetric('rekey.worker.errors', MetricUnit.Count, 1);
      logger.error('re-wrap shard failed', { ...where, ...errorFields(e) });
    }
    throw e;
  }
  const summary = { ...where, jobId: report.jobId, status: report.status, ...report.counts };
  if (report.status === 'busy') {
    metrics.addMetric('rekey.worker.busy', MetricUnit.Count, 1);
    logger.info('re-wrap shard held by another worker: handed back', summary);
    throw new HandBack(`shard ${report.jobId} is held by another worker`);
  }
  metrics.addMetric('rekey.worker.shards', MetricUnit.Count, 1);
  if (report.status === 'failed') logger.warn('re-wrap shard done with failed DEKs', summary);
  else logger.info('re-wrap shard done', summary);
  if (report.jobCompleted) logger.info('re-wrap job completed', { jobId: report.jobCompleted });
  return summary;
}

export const handler = middy(
  (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, workOn, processor, {
      context,
      // Every record is reported on its own, even when all of them fail.
      throwOnFullBatchFailure: false,
    }),
)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }));
