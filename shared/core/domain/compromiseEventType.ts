/**
 * The CloudEvent type of `key.compromised` events (compromiseEvent.ts), apart from the event's
 * checks so that a runtime can route on it without loading them.
 */
export const COMPROMISE_EVENT_TYPE = 'dev.rekey.key.compromised';
