import { IdempotencyConfig } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import { makeHandlerIdempotent } from '@aws-lambda-powertools/idempotency/middleware';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy, { type MiddlewareObj } from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { ValidationError } from '../../shared/core/errors.js';
import { handleKeyEvent } from '../../shared/core/usecases/handleKeyEvent.js';
import { parseKmsEvent } from '../../shared/providers/aws/events.js';
import { awsRuntime, errorFields, makeLogger, makeMetrics } from './runtime.js';

/**
 * EventBridge rule -> provider key events. AWS KMS `KMS CMK Rotation` and `KMS Imported Key
 * Material Expiration` go to handleKeyEvent (re-wrap to the new material, or rotate); a
 * `KMS CMK Deletion` is logged and counted. Each event id is processed once (Powertools
 * idempotency on DynamoDB): a redelivered event gets the first result back. A malformed event
 * is rejected and not retried; other failures throw, so Lambda retries the event and then
 * hands it to the function's failure destination.
 */
const logger = makeLogger('events');
const metrics = makeMetrics();
const runtime = awsRuntime({ idempotency: true });

export interface EventResult {
  eventId: string;
  outcome: 'rewrapped' | 'rotated' | 'ignored' | 'key_deleted' | 'rejected';
  keyRef?: string;
  reason: string;
  rotatedTo?: string;
  rewrapped?: number;
}

async function run(event: EventBridgeEvent<string, unknown>): Promise<EventResult> {
  const eventId = typeof event?.id === 'string' ? event.id : '(none)';
  let notice: ReturnType<typeof parseKmsEvent>;
  try {
    notice = parseKmsEvent(event);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    metrics.addMetric('rekey.events.rejected', MetricUnit.Count, 1);
    logger.error('event rejected', { eventId, source: String(event?.source), ...errorFields(e) });
    return { eventId, outcome: 'rejected', reason: e.message };
  }
  if (notice.kind === 'key_deleted') {
    metrics.addMetric('rekey.events.key_deleted', MetricUnit.Count, 1);
    logger.warn('KMS key deleted: DEKs still under it can no longer be unwrapped', { ...notice });
    return {
      eventId,
      outcome: 'key_deleted',
      keyRef: notice.keyRef,
      reason: 'the key was deleted by AWS KMS',
    };
  }
  const ctx = await runtime.context();
  const out = await handleKeyEvent(ctx, notice.event);
  const result: EventResult = {
    eventId,
    outcome: out.outcome,
    keyRef: out.keyRef,
    reason: out.reason,
    ...(out.rotatedTo ? { rotatedTo: out.rotatedTo } : {}),
    rewrapped: out.jobs.reduce((n, j) => n + j.counts.rewrapped, 0),
  };
  metrics.addMetric(`rekey.events.${out.outcome}`, MetricUnit.Count, 1);
  logger.info('key event handled', { kind: notice.event.kind, ...result });
  return result;
}

/** The idempotency middleware, built on first use: its table comes from the settings. */
function idempotentByEventId(): MiddlewareObj {
  let mw: MiddlewareObj | undefined;
  const get = (): MiddlewareObj =>
    (mw ??= makeHandlerIdempotent({
      persistenceStore: new DynamoDBPersistenceLayer({ tableName: runtime.settings().idempotencyTable! }),
      config: new IdempotencyConfig({
        eventKeyJmesPath: 'id',
        throwOnNoIdempotencyKey: true,
        // EventBridge retries for at most 24 h; a week covers any redelivery.
        expiresAfterSeconds: 7 * 86_400,
      }),
    }) as MiddlewareObj);
  return {
    before: (request) => get().before?.(request),
    after: (request) => get().after?.(request),
    onError: (request) => get().onError?.(request),
  };
}

export const handler = middy(run)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .use(idempotentByEventId())
  .onError((request) => {
    logger.error('event handling failed', {
      eventId: (request.event as { id?: unknown })?.id,
      ...errorFields(request.error),
    });
  });
