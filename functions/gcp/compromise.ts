import type { CloudEvent } from '@google-cloud/functions-framework';
import { ValidationError } from '../../shared/core/errors.js';
import { type Extracted, extractCloudEvents } from '../../shared/core/governance/envelopes.js';
import {
  type CompromiseEventOutcome,
  EventRefused,
  handleCompromiseEvent,
} from '../../shared/core/usecases/handleCompromise.js';
import { errorFields, logger } from './log.js';
import { eventVerifier, rekey } from './runtime.js';

const log = logger('rekey-compromise');

/** Thrown for an incident that is not contained yet, so Pub/Sub delivers the event again. */
export class IncidentStillOpen extends Error {}

/**
 * Incidents topic -> this function: rekey's `key.compromised` CloudEvents, published to Pub/Sub
 * in structured mode (`content-type: application/cloudevents+json`, the event as the data) or
 * binary mode (`ce-*` attributes), pushed here and turned into a `messagePublished` CloudEvent
 * by the Functions Framework. Refused events (malformed, unsigned or forged, a source not
 * listed, a reused id, too old) are logged and acknowledged: a redelivery would be refused
 * again. An incident still open, a busy key or any other failure fails the invocation, so
 * Pub/Sub redelivers with backoff (then dead-letters); each delivery resumes the same incident,
 * and an event already handled is answered from its record without acting again.
 */
export async function rekeyCompromise(delivery: CloudEvent<unknown>): Promise<void> {
  let events: Extracted[];
  try {
    events = extractCloudEvents(delivery);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    log.write('ERROR', 'compromise event refused', {
      deliveryId: delivery?.id,
      refusal: 'malformed',
      ...errorFields(e),
    });
    return;
  }
  const { ctx } = await rekey();
  const verify = await eventVerifier(ctx);
  for (const { event, transport, carrierId } of events) {
    const ids = { eventId: event.id, source: event.source, transport, messageId: carrierId ?? null };
    let out: CompromiseEventOutcome;
    try {
      out = await handleCompromiseEvent(ctx, event, { verify });
    } catch (e) {
      if (!(e instanceof EventRefused)) throw e;
      log.write('ERROR', 'compromise event refused', { ...ids, refusal: e.refusal, ...errorFields(e) });
      continue;
    }
    const inc = out.incident;
    log.write(inc.status === 'open' ? 'ERROR' : 'NOTICE', `compromise event ${out.outcome}`, {
      ...ids,
      outcome: out.outcome,
      incident: {
        id: inc.id,
        keyRef: inc.keyRef,
        version: inc.version,
        status: inc.status,
        newVersion: inc.newVersion ?? null,
        deksMoved: inc.deksMoved,
        timeToContainMs: inc.timeToContainMs ?? null,
        failures: inc.failures,
      },
    });
    if (inc.status === 'open') {
      throw new IncidentStillOpen(
        `incident ${inc.id} for ${inc.keyRef} version ${inc.version} is still open; the event will be delivered again`,
      );
    }
  }
}
