import type { PubSub, Topic } from '@google-cloud/pubsub';
import { ProviderError, ValidationError } from '../../core/errors.js';
import { type EventBus, REKEY_EVENT_TYPES, type RekeyEvent } from '../../core/ports/EventBus.js';
import { type PubSubTopicOptions, pubsubClient, pubsubError } from '../../queues/pubsub/client.js';

export interface PubSubEventBusOptions extends PubSubTopicOptions {
  /** Used in errors. Default `pubsub-events`. */
  id?: string;
  /** CloudEvents `source`. Default `rekey`. */
  source?: string;
}

/** Pub/Sub's limit for one message. */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
const MAX_ATTRIBUTE_BYTES = 1024;

/**
 * Publishes rekey events to a Pub/Sub topic in the CloudEvents Pub/Sub binding (binary mode):
 * the event's context as `ce-` attributes (`ce-id`, `ce-type` = the event type, `ce-source`,
 * `ce-time`, `ce-subject` = the key ref), `content-type: application/json`, and the event's
 * detail as the message data. Eventarc and any subscriber that speaks CloudEvents read it
 * as such; a subscription can filter on `attributes.ce-type`.
 */
export class PubSubEventBus implements EventBus {
  private readonly id: string;
  private readonly client: PubSub;
  private readonly owned: boolean;
  private readonly topic: Topic;
  private readonly topicName: string;
  private readonly source: string;

  constructor(opts: PubSubEventBusOptions) {
    this.id = opts.id ?? 'pubsub-events';
    const c = pubsubClient(opts, `${this.id} topic`);
    this.client = c.client;
    this.owned = c.owned;
    this.topicName = opts.topic;
    this.source = opts.source ?? 'rekey';
    this.topic = this.client.topic(opts.topic, { batching: { maxMessages: 100, maxMilliseconds: 10 } });
  }

  async publish(events: RekeyEvent[]): Promise<void> {
    const messages = events.map((e) => this.message(e));
    const results = await Promise.allSettled(messages.map((m) => this.topic.publishMessage(m)));
    const failed = results
      .map((r, i) => ({ r, e: events[i]! }))
      .filter((x): x is { r: PromiseRejectedResult; e: RekeyEvent } => x.r.status === 'rejected');
    if (failed.length === 0) return;
    const first = pubsubError(this.id, 'publishing events', this.topicName, failed[0]!.r.reason);
    const names = failed
      .slice(0, 3)
      .map((f) => `${f.e.id} (${f.e.type})`)
      .join('; ');
    throw new ProviderError(
      this.id,
      first.providerCode,
      `${failed.length} event(s) not delivered: ${names}: ${first.message}`,
      { retryable: first.retryable, throttled: first.throttled, cause: first },
    );
  }

  private message(event: RekeyEvent): { data: Buffer; attributes: Record<string, string> } {
    if (!REKEY_EVENT_TYPES.includes(event.type)) {
      throw new ValidationError(`event ${event.id}: unknown type ${String(event.type)}`);
    }
    if (typeof event.id !== 'string' || event.id.length === 0)
      throw new ValidationError(`${event.type} event without an id`);
    const time = new Date(event.time);
    if (Number.isNaN(time.getTime()))
      throw new ValidationError(`event ${event.id}: time "${event.time}" is not a date`);
    const keyRef = (event.detail as { keyRef?: string }).keyRef;
    const attributes: Record<string, string> = {
      'ce-specversion': '1.0',
      'ce-id': event.id,
      'ce-type': event.type,
      'ce-source': this.source,
      'ce-time': time.toISOString(),
      'content-type': 'application/json',
      ...(keyRef ? { 'ce-subject': keyRef } : {}),
    };
    for (const [k, v] of Object.entries(attributes)) {
      if (Buffer.byteLength(v) > MAX_ATTRIBUTE_BYTES)
        throw new ValidationError(`event ${event.id}: ${k} is longer than ${MAX_ATTRIBUTE_BYTES} bytes`);
    }
    const data = Buffer.from(JSON.stringify(event.detail));
    if (data.length > MAX_MESSAGE_BYTES)
      throw new ValidationError(
        `event ${event.id}: ${data.length} bytes; Pub/Sub takes at most ${MAX_MESSAGE_BYTES}`,
      );
    return { data, attributes };
  }

  async close(): Promise<void> {
    await this.topic.flush().catch(() => undefined);
    if (this.owned) await this.client.close();
  }
}
