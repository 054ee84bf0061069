import type { PubSub, Topic } from '@google-cloud/pubsub';
import { ValidationError } from '../../core/errors.js';
import type { WorkMessage, WorkQueue } from '../../core/ports/WorkQueue.js';
import { type PubSubTopicOptions, pubsubClient, pubsubError } from './client.js';

export interface PubSubWorkQueueOptions extends PubSubTopicOptions {
  /** Used in errors. Default `pubsub`. */
  id?: string;
}

/** Attribute values are at most 1,024 bytes; job ids are far shorter, but never send a bad message. */
const MAX_ATTRIBUTE_BYTES = 1024;

/**
 * The re-wrap work queue on a Pub/Sub topic: one message per shard, the shard message as JSON
 * data, and `kind` / `jobId` / `providerId` attributes so subscriptions can filter and
 * operators can read a dead-lettered message without decoding it. Workers receive them by push
 * (a Cloud Function behind an Eventarc trigger) or pull.
 */
export class PubSubWorkQueue implements WorkQueue {
  private readonly id: string;
  private readonly client: PubSub;
  private readonly owned: boolean;
  private readonly topic: Topic;
  readonly topicName: string;

  constructor(opts: PubSubWorkQueueOptions) {
    this.id = opts.id ?? 'pubsub';
    const c = pubsubClient(opts, `${this.id} work queue topic`);
    this.client = c.client;
    this.owned = c.owned;
    this.topicName = opts.topic;
    this.topic = this.client.topic(opts.topic, { batching: { maxMessages: 100, maxMilliseconds: 10 } });
  }

  /** Publishes every message; resolves once Pub/Sub accepted all of them (and has their ids). */
  async send(messages: WorkMessage[]): Promise<void> {
    const prepared = messages.map((m, i) => {
      if (m?.kind !== 'rewrap-shard' || typeof m.jobId !== 'string' || m.jobId.length === 0) {
        throw new ValidationError(`work message ${i}: not a re-wrap shard message with a job id`);
      }
      const attributes = { kind: m.kind, jobId: m.jobId, providerId: m.providerId };
      for (const [k, v] of Object.entries(attributes)) {
        if (Buffer.byteLength(v) > MAX_ATTRIBUTE_BYTES)
          throw new ValidationError(`work message ${i}: ${k} is longer than ${MAX_ATTRIBUTE_BYTES} bytes`);
      }
      return { data: Buffer.from(JSON.stringify(m)), attributes };
    });
    const results = await Promise.allSettled(prepared.map((p) => this.topic.publishMessage(p)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      const first = pubsubError(
        this.id,
        `publishing ${failed.length} of ${messages.length} shard message(s)`,
        this.topicName,
        failed[0]!.reason,
      );
      throw first;
    }
  }

  async close(): Promise<void> {
    await this.topic.flush().catch(() => undefined);
    if (this.owned) await this.client.close();
  }
}
