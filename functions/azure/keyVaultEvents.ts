import type { EventGridEvent, InvocationContext } from '@azure/functions';
import { ValidationError } from '../../shared/core/errors.js';
import { handleKeyEvent } from '../../shared/core/usecases/handleKeyEvent.js';
import { parseKeyVaultEvent } from '../../shared/providers/azure/events.js';
import { log } from './log.js';
import { invoke } from './runtime.js';

/**
 * Event Grid trigger for Key Vault key events (KeyNewVersionCreated, KeyNearExpiry,
 * KeyExpired). A malformed or foreign event is logged and dropped: Event Grid would redeliver
 * it unchanged, so retrying cannot help. Anything else throws, and Event Grid retries with
 * backoff (then dead-letters, when the subscription has a dead-letter destination).
 */
export function keyVaultEvents(event: EventGridEvent, context: InvocationContext) {
  return invoke(context, async ({ ctx }) => {
    let parsed: ReturnType<typeof parseKeyVaultEvent>;
    try {
      parsed = parseKeyVaultEvent(event);
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      log('warn', 'event refused', {
        id: event?.id ?? null,
        eventType: event?.eventType ?? null,
        error: e.message,
      });
      return { outcome: 'refused', reason: e.message };
    }
    const out = await handleKeyEvent(ctx, parsed);
    log('info', 'key event', {
      id: out.eventId,
      kind: parsed.kind,
      keyRef: out.keyRef,
      outcome: out.outcome,
      reason: out.reason,
      ...(out.rotatedTo ? { rotatedTo: out.rotatedTo } : {}),
      rewrapped: out.jobs.reduce((n, j) => n + j.counts.rewrapped, 0),
    });
    return { outcome: out.outcome, reason: out.reason };
  });
}
