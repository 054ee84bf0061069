import type { CloudEvent } from '@google-cloud/functions-framework';
import { handleKeyEvent } from '../../shared/core/usecases/handleKeyEvent.js';
import { parseKmsAuditEvent } from '../../shared/providers/gcp/auditEvents.js';
import { isPermanent } from './failures.js';
import { errorFields, logger } from './log.js';
import { rekey } from './runtime.js';

const log = logger('rekey-key-events');

/**
 * Eventarc (Cloud Audit Logs, cloudkms.googleapis.com) -> this function: a key got a new
 * version or a new primary, so the DEKs of the policy's stores are re-wrapped to it
 * (handleKeyEvent). Other methods and failed calls are logged and ignored.
 */
export async function rekeyKeyEvents(event: CloudEvent<unknown>): Promise<void> {
  let parsed: ReturnType<typeof parseKmsAuditEvent>;
  try {
    parsed = parseKmsAuditEvent(event);
  } catch (e) {
    log.write('ERROR', 'audit log event refused', { eventId: event?.id, ...errorFields(e) });
    return;
  }
  if ('ignored' in parsed) {
    log.write('INFO', 'audit log entry ignored', { eventId: event.id, reason: parsed.ignored });
    return;
  }
  const { ctx } = await rekey();
  try {
    const out = await handleKeyEvent(ctx, parsed.event);
    log.write('INFO', `key event ${out.outcome}`, {
      eventId: out.eventId,
      keyRef: out.keyRef,
      outcome: out.outcome,
      reason: out.reason,
      ...(out.rotatedTo ? { rotatedTo: out.rotatedTo } : {}),
      jobs: out.jobs.map((j) => ({ id: j.id, store: j.storeId, status: j.status, counts: j.counts })),
    });
  } catch (e) {
    if (!isPermanent(e)) throw e;
    log.write('ERROR', 'key event could not be handled', { eventId: event.id, ...errorFields(e) });
  }
}
