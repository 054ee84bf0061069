import {
  EventBridgeClient,
  type EventBridgeClientConfig,
  PutEventsCommand,
  type PutEventsRequestEntry,
} from '@aws-sdk/client-eventbridge';
import { ProviderError, ValidationError } from '../../core/errors.js';
import { type EventBus, REKEY_EVENT_TYPES, type RekeyEvent } from '../../core/ports/EventBus.js';

export interface EventBridgeEventBusOptions {
  /** Used in errors, e.g. `events-prod`. Default `eventbridge`. */
  id?: string;
  /** A ready client (tests, custom middleware); otherwise one is built from the fields below. */
  client?: EventBridgeClient;
  region?: string;
  endpoint?: string;
  credentials?: EventBridgeClientConfig['credentials'];
  /** SDK attempts per PutEvents call. Default 3. */
  maxAttempts?: number;
  /** Bus name or ARN. Default `default`. */
  eventBusName?: string;
  /** Event source. Default `rekey`. */
  source?: string;
  /** How many more times entries that failed with a transient error are sent again. Default 2. */
  entryRetries?: number;
  /** Base delay between entry retries, doubled each time. Default 100 ms. */
  retryDelayMs?: number;
}

/** PutEvents accepts at most 10 entries per call and 256 KB per entry. */
export const MAX_ENTRIES_PER_CALL = 10;
export const MAX_ENTRY_BYTES = 256 * 1024;

/** Per-entry error codes worth sending again; anything else is the entry's own fault. */
const TRANSIENT_ENTRY_CODES = new Set([
  'InternalFailure',
  'InternalException',
  'ThrottlingException',
  'ServiceUnavailable',
]);

export interface FailedEvent {
  eventId: string;
  type: string;
  code: string;
  message: string;
}

/** Some events could not be delivered; `failed` says which and why. */
export class EventPublishError extends ProviderError {
  readonly failed: FailedEvent[];
  constructor(provider: string, failed: FailedEvent[], retryable: boolean) {
    const sample = failed
      .slice(0, 3)
      .map((f) => `${f.eventId} (${f.type}): ${f.code}`)
      .join('; ');
    super(
      provider,
      failed[0]?.code ?? 'PutEventsFailed',
      `${failed.length} event(s) not delivered: ${sample}`,
      {
        retryable,
      },
    );
    this.failed = failed;
  }
}

/**
 * Publishes rekey events to Amazon EventBridge: Source `rekey`, DetailType = the event type,
 * Detail = `{"id": <event id>, ...detail}`, Resources = the key ARN for AWS keys.
 */
export class EventBridgeEventBus implements EventBus {
  private readonly id: string;
  private readonly client: EventBridgeClient;
  private readonly ownsClient: boolean;
  private readonly bus: string;
  private readonly source: string;
  private readonly entryRetries: number;
  private readonly retryDelayMs: number;

  constructor(opts: EventBridgeEventBusOptions = {}) {
    this.id = opts.id ?? 'eventbridge';
    this.ownsClient = !opts.client;
    this.client =
      opts.client ??
      new EventBridgeClient({
        ...(opts.region ? { region: opts.region } : {}),
        ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
        ...(opts.credentials ? { credentials: opts.credentials } : {}),
        maxAttempts: opts.maxAttempts ?? 3,
      });
    this.bus = opts.eventBusName ?? 'default';
    this.source = opts.source ?? 'rekey';
    this.entryRetries = opts.entryRetries ?? 2;
    this.retryDelayMs = opts.retryDelayMs ?? 100;
  }

  async publish(events: RekeyEvent[]): Promise<void> {
    const failed: FailedEvent[] = [];
    const ready: Array<{ event: RekeyEvent; entry: PutEventsRequestEntry }> = [];
    for (const event of events) {
      const entry = this.entry(event);
      const size = entrySize(entry);
      if (size > MAX_ENTRY_BYTES) {
        failed.push({
          eventId: event.id,
          type: event.type,
          code: 'EntryTooLarge',
          message: `entry is ${size} bytes; EventBridge takes at most ${MAX_ENTRY_BYTES}`,
        });
      } else {
        ready.push({ event, entry });
      }
    }
    let transient = false;
    for (let i = 0; i < ready.length; i += MAX_ENTRIES_PER_CALL) {
      const result = await this.sendBatch(ready.slice(i, i + MAX_ENTRIES_PER_CALL));
      failed.push(...result.failed);
      transient ||= result.transient;
    }
    if (failed.length > 0) {
      // Retryable only if every failure was transient: re-publishing cannot fix a malformed entry.
      const allTransient = transient && failed.every((f) => TRANSIENT_ENTRY_CODES.has(f.code));
      throw new EventPublishError(this.id, failed, allTransient);
    }
  }

  /** One PutEvents call, then the transiently failed entries again, a bounded number of times. */
  private async sendBatch(
    batch: Array<{ event: RekeyEvent; entry: PutEventsRequestEntry }>,
  ): Promise<{ failed: FailedEvent[]; transient: boolean }> {
    let pending = batch;
    const failed: FailedEvent[] = [];
    for (let attempt = 0; pending.length > 0; attempt++) {
      const out = await this.put(pending.map((p) => p.entry));
      const entries = out.Entries ?? [];
      if ((out.FailedEntryCount ?? 0) === 0 && entries.length === pending.length)
        return { failed, transient: false };
      const retry: typeof pending = [];
      pending.forEach((p, i) => {
        const r = entries[i];
        if (r?.EventId && !r.ErrorCode) return;
        const code = r?.ErrorCode ?? 'MissingResult';
        const f = {
          eventId: p.event.id,
          type: p.event.type,
          code,
          message: r?.ErrorMessage ?? 'no result for this entry',
        };
        if (TRANSIENT_ENTRY_CODES.has(code) && attempt < this.entryRetries) retry.push(p);
        else failed.push(f);
      });
      pending = retry;
      if (pending.length > 0) await sleep(this.retryDelayMs * 2 ** attempt);
    }
    return { failed, transient: failed.some((f) => TRANSIENT_ENTRY_CODES.has(f.code)) };
  }

  private async put(entries: PutEventsRequestEntry[]) {
    try {
      return await this.client.send(new PutEventsCommand({ Entries: entries }));
    } catch (e) {
      const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      const name = err.name ?? 'UnknownError';
      const status = err.$metadata?.httpStatusCode;
      const throttled = name === 'ThrottlingException' || status === 429;
      throw new ProviderError(this.id, name, `PutEvents to ${this.bus}: ${name}: ${err.message ?? ''}`, {
        retryable: throttled || status === undefined || status >= 500,
        throttled,
        cause: e,
      });
    }
  }

  private entry(event: RekeyEvent): PutEventsRequestEntry {
    if (!REKEY_EVENT_TYPES.includes(event.type)) {
      throw new ValidationError(`event ${event.id}: unknown type ${String(event.type)}`);
    }
    if (typeof event.id !== 'string' || event.id.length === 0)
      throw new ValidationError(`${event.type} event without an id`);
    const time = new Date(event.time);
    if (Number.isNaN(time.getTime()))
      throw new ValidationError(`event ${event.id}: time "${event.time}" is not a date`);
    const keyRef = (event.detail as { keyRef?: string }).keyRef;
    const resources = keyRef?.startsWith('aws-kms://arn:') ? [keyRef.slice('aws-kms://'.length)] : [];
    return {
      Source: this.source,
      DetailType: event.type,
      Detail: JSON.stringify({ id: event.id, ...event.detail }),
      Time: time,
      Resources: resources,
      EventBusName: this.bus,
    };
  }

  close(): void {
    if (this.ownsClient) this.client.destroy();
  }
}

/** EventBridge's entry size: Source, DetailType, Detail and Resources in UTF-8, plus 14 bytes for Time. */
export function entrySize(e: PutEventsRequestEntry): number {
  let n = e.Time ? 14 : 0;
  for (const s of [e.Source, e.DetailType, e.Detail, ...(e.Resources ?? [])])
    n += s ? Buffer.byteLength(s, 'utf8') : 0;
  return n;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
