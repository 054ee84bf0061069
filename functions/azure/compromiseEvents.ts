import type { InvocationContext } from '@azure/functions';
import { ValidationError } from '../../shared/core/errors.js';
import { type Extracted, extractCloudEvents } from '../../shared/core/governance/envelopes.js';
import {
  type CompromiseEventOutcome,
  EventRefused,
  handleCompromiseEvent,
} from '../../shared/core/usecases/handleCompromise.js';
import { log } from './log.js';
import { invoke } from './runtime.js';

/** Thrown for an incident that could not be contained yet, so Event Grid delivers the event again. */
export class IncidentStillOpen extends Error {}

export type CompromiseResult =
  | { eventId: string; outcome: CompromiseEventOutcome['outcome']; incidentId: string; status: string }
  | { eventId: string | null; outcome: 'refused'; refusal: string; reason: string };

/**
 * Event Grid trigger for rekey's `key.compromised` CloudEvents, from the incidents topic in the
 * CloudEvents schema (the event itself) or the Event Grid schema (the event as `data`). Refused
 * events (malformed, unsigned or forged, a foreign source, a reused id, too old) are logged and
 * completed: delivering them again cannot change the answer. An incident that is still open, a
 * busy key or any other failure throws, so Event Grid retries; the retry resumes the same
 * incident, and a delivery of an event already handled changes nothing.
 */
export function compromiseEvents(delivery: unknown, context: InvocationContext) {
  return invoke(context, async (rt): Promise<CompromiseResult[]> => {
    let events: Extracted[];
    try {
      events = extractCloudEvents(delivery);
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      log('warn', 'compromise event refused', { refusal: 'malformed', error: e.message });
      return [{ eventId: null, outcome: 'refused', refusal: 'malformed', reason: e.message }];
    }
    const verify = await rt.eventVerifier();
    const results: CompromiseResult[] = [];
    for (const { event, transport, carrierId } of events) {
      const ids = { eventId: event.id, source: event.source, transport, carrierId: carrierId ?? null };
      let out: CompromiseEventOutcome;
      try {
        out = await handleCompromiseEvent(rt.ctx, event, { verify });
      } catch (e) {
        if (!(e instanceof EventRefused)) throw e;
        log('warn', 'compromise event refused', { ...ids, refusal: e.refusal, error: e.message });
        results.push({ eventId: event.id, outcome: 'refused', refusal: e.refusal, reason: e.message });
        continue;
      }
      const inc = out.incident;
      log(inc.status === 'open' ? 'warn' : 'info', 'compromise event', {
        ...ids,
        outcome: out.outcome,
        incident: inc.id,
        keyRef: inc.keyRef,
        version: inc.version,
        status: inc.status,
        newVersion: inc.newVersion ?? null,
        deksMoved: inc.deksMoved,
        timeToContainMs: inc.timeToContainMs ?? null,
        failures: inc.failures,
      });
      if (inc.status === 'open') {
        throw new IncidentStillOpen(
          `incident ${inc.id} for ${inc.keyRef} version ${inc.version} is still open; the event will be delivered again`,
        );
      }
      results.push({ eventId: event.id, outcome: out.outcome, incidentId: inc.id, status: inc.status });
    }
    return results;
  });
}
