import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, EventBridgeEvent } from 'aws-lambda';
import { COMPROMISE_EVENT_TYPE } from '../../shared/core/domain/compromiseEventType.js';
import type { KeyEvent } from '../../shared/core/domain/keyEvent.js';
import { ValidationError } from '../../shared/core/errors.js';
import { handleKeyEvent } from '../../shared/core/usecases/handleKeyEvent.js';
import { parseKmsEvent } from '../../shared/providers/aws/events.js';
import type { CompromiseResult } from './compromise.js';
import { eventBridgeBusOnFirstUse } from './onFirstUse.js';
import { awsRuntime, errorFields, makeLogger, makeMetrics } from './runtime.js';

/**
 * EventBridge rules -> key events.
 * - AWS KMS `KMS CMK Rotation` and `KMS Imported Key Material Expiration` go to handleKeyEvent
 *   (re-wrap to the new material, or rotate), once per event id (Powertools idempotency on
 *   DynamoDB: a redelivered event gets the first result back). `KMS CMK Deletion` is logged
 *   and counted.
 * - rekey's own `key.compromised` CloudEvents (the EventBridge event's `detail`) go to
 *   handleCompromiseEvent, which checks source and signature and acts once per event id.
 * A malformed or refused event is answered, not retried; other failures throw, so Lambda
 * retries the event and then hands it to the function's failure destination.
 */
const logger = makeLogger('events');
const metrics = makeMetrics();
// A provider's key event publishes nothing (handleKeyEvent re-wraps or rotates); only the
// compromise response does. The EventBridge client loads with its first publish (onFirstUse.ts).
const runtime = awsRuntime({
  idempotency: true,
  events: eventBridgeBusOnFirstUse,
});

type KmsEventBridgeEvent = EventBridgeEvent<string, unknown>;

export type EventResult =
  | {
      eventId: string;
      outcome: 'rewrapped' | 'rotated' | 'ignored' | 'key_deleted' | 'rejected';
      keyRef?: string;
      reason: string;
      rotatedTo?: string;
      rewrapped?: number;
    }
  | CompromiseResult;

/** Handles one key event; the raw event comes first, its `id` keys the idempotency record. */
async function onKeyEvent(raw: KmsEventBridgeEvent, event: KeyEvent): Promise<EventResult> {
  const ctx = await runtime.context();
  const out = await handleKeyEvent(ctx, event);
  const result: EventResult = {
    eventId: raw.id,
    outcome: out.outcome,
    keyRef: out.keyRef,
    reason: out.reason,
    ...(out.rotatedTo ? { rotatedTo: out.rotatedTo } : {}),
    rewrapped: out.jobs.reduce((n, j) => n + j.counts.rewrapped, 0),
  };
  logger.info('key event handled', { kind: event.kind, ...result });
  return result;
}

type Once = { handle: typeof onKeyEvent; config: IdempotencyConfig };
let once: Once | undefined;

/** onKeyEvent made idempotent on the event id, built on first use (its table is a setting). */
function idempotentOnKeyEvent(): Once {
  if (!once) {
    const config = new IdempotencyConfig({
      eventKeyJmesPath: 'id',
      throwOnNoIdempotencyKey: true,
      // EventBridge retries for at most 24 hours; a week covers any redelivery.
      expiresAfterSeconds: 7 * 86_400,
    });
    const persistenceStore = new DynamoDBPersistenceLayer({
      tableName: runtime.settings().idempotencyTable!,
    });
    once = { handle: makeIdempotent(onKeyEvent, { persistenceStore, config, dataIndexArgument: 0 }), config };
  }
  return once;
}

type OnCompromise = ReturnType<typeof import('./compromise.js').compromiseHandler>;
let onCompromise: Promise<OnCompromise> | undefined;

/**
 * The compromise response (its use case, CloudEvent envelopes, signature checks with jose) is
 * a chunk of its own, loaded by the first `key.compromised` event an execution environment
 * gets: KMS key events, what this function handles day to day, never load it.
 */
function compromiseResponse(): Promise<OnCompromise> {
  onCompromise ??= import('./compromise.js').then(
    ({ compromiseHandler }) => compromiseHandler({ runtime, logger, metrics }),
    (e: unknown) => {
      onCompromise = undefined;
      throw e;
    },
  );
  return onCompromise;
}

async function run(raw: KmsEventBridgeEvent, context: Context): Promise<EventResult> {
  if (raw?.['detail-type'] === COMPROMISE_EVENT_TYPE) return (await compromiseResponse())(raw);
  const eventId = typeof raw?.id === 'string' ? raw.id : '(none)';
  let notice: ReturnType<typeof parseKmsEvent>;
  try {
    notice = parseKmsEvent(raw);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    metrics.addMetric('rekey.events.rejected', MetricUnit.Count, 1);
    logger.error('event rejected', { eventId, source: String(raw?.source), ...errorFields(e) });
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
  const { handle, config } = idempotentOnKeyEvent();
  config.registerLambdaContext(context);
  const result = await handle(raw, notice.event);
  metrics.addMetric(`rekey.events.${result.outcome}`, MetricUnit.Count, 1);
  return result;
}

export const handler = middy(run)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .onError((request) => {
    logger.error('event handling failed', {
      eventId: (request.event as { id?: unknown })?.id,
      ...errorFields(request.error),
    });
  });
