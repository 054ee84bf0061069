import type { CloudEvent } from '@google-cloud/functions-framework';
import { runRewrapShard } from '../../shared/core/usecases/scheduled.js';
import { isPermanent } from './failures.js';
import { errorFields, logger } from './log.js';
import { readPubSubEvent } from './pubsubEvent.js';
import { limiters, rekey } from './runtime.js';

const log = logger('rekey-rewrap');

/** Thrown so the invocation fails and Pub/Sub delivers the shard again later. */
export class RedeliverLater extends Error {}

/**
 * Re-wrap topic -> this function: works one shard (runRewrapShard). Malformed or unknown shards
 * are logged and acknowledged; a shard another worker holds (`busy`) and transient failures
 * fail the invocation, so Pub/Sub redelivers it with backoff (and, past the subscription's
 * delivery attempts, to the dead-letter topic).
 */
export async function rekeyRewrap(event: CloudEvent<unknown>): Promise<void> {
  let body: string;
  let messageId: string;
  try {
    const d = readPubSubEvent(event);
    body = d.data.toString('utf8');
    messageId = d.messageId;
  } catch (e) {
    log.write('ERROR', 'not a Pub/Sub message: acknowledged without work', {
      eventId: event?.id,
      ...errorFields(e),
    });
    return;
  }
  const { ctx } = await rekey();
  let report: Awaited<ReturnType<typeof runRewrapShard>>;
  try {
    report = await runRewrapShard(ctx, body, { limiters });
  } catch (e) {
    if (!isPermanent(e)) throw e;
    log.write('ERROR', 're-wrap shard refused: acknowledged without work', { messageId, ...errorFields(e) });
    return;
  }
  const fields = { messageId, report };
  if (report.status === 'busy') {
    log.write('INFO', 'shard held by another worker: redelivery requested', fields);
    throw new RedeliverLater(`shard ${report.jobId} is being worked on elsewhere; redeliver later`);
  }
  log.write(report.status === 'failed' ? 'ERROR' : 'INFO', `shard ${report.status}`, fields);
}
