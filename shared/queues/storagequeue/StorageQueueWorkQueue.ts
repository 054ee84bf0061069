import type { QueueClient } from '@azure/storage-queue';
import { ValidationError } from '../../core/errors.js';
import type { WorkMessage, WorkQueue } from '../../core/ports/WorkQueue.js';
import { type AzureStorageConnection, guarded } from '../../stores/azuretable/client.js';
import { checkQueueName, createQueueClient, eachLimit, encodeMessage, ensureQueue } from './client.js';

export type StorageQueueWorkQueueOptions = {
  queue: string;
  /** `base64` (default) is what a Functions queue trigger decodes; `none` sends the JSON as is. */
  encoding?: 'base64' | 'none';
  /** Messages sent at once (one HTTP request each). Default 8. */
  concurrency?: number;
} & ({ client: QueueClient } | AzureStorageConnection);

/**
 * Re-wrap shards on an Azure Storage Queue, for the Functions queue trigger to pick up. Every
 * message is checked against the 64 KiB limit before anything is sent, so a batch with one
 * oversized message sends none. Delivery is at least once; the shard work is idempotent.
 */
export class StorageQueueWorkQueue implements WorkQueue {
  readonly client: QueueClient;
  private readonly encoding: 'base64' | 'none';
  private readonly concurrency: number;

  constructor(opts: StorageQueueWorkQueueOptions) {
    checkQueueName(opts.queue, 'storage work queue');
    this.client = 'client' in opts ? opts.client : createQueueClient(opts, opts.queue);
    this.encoding = opts.encoding ?? 'base64';
    this.concurrency = opts.concurrency ?? 8;
  }

  ensureQueue(): Promise<void> {
    return ensureQueue(this.client);
  }

  async send(messages: WorkMessage[]): Promise<void> {
    const texts = messages.map((m, i) => {
      if (m?.kind !== 'rewrap-shard') {
        throw new ValidationError(`work message [${i}]: kind must be "rewrap-shard"`);
      }
      return { jobId: m.jobId, text: encodeMessage(m, `re-wrap message for ${m.jobId}`, this.encoding) };
    });
    await eachLimit(texts, this.concurrency, ({ jobId, text }) =>
      guarded(
        `sending re-wrap message for ${jobId} to queue ${this.client.name}`,
        () => this.client.sendMessage(text).then(() => undefined),
        'azure-queue',
      ),
    );
  }
}
