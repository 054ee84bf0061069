import type { QueueClient } from '@azure/storage-queue';
import { ProviderError, RekeyError } from '../../core/errors.js';
import type { EventBus, RekeyEvent } from '../../core/ports/EventBus.js';
import { type AzureStorageConnection, translateStorageError } from '../../stores/azuretable/client.js';
import { checkQueueName, createQueueClient, eachLimit, encodeMessage, ensureQueue } from './client.js';

export type StorageQueueEventBusOptions = {
  queue: string;
  /** CloudEvents `source`. Default `/rekey`. */
  source?: string;
  encoding?: 'base64' | 'none';
} & ({ client: QueueClient } | AzureStorageConnection);

/** A rekey event as a CloudEvents 1.0 structured JSON message. */
export interface RekeyCloudEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  time: string;
  subject: string;
  datacontenttype: 'application/json';
  data: RekeyEvent['detail'];
}

export function toCloudEvent(event: RekeyEvent, source: string): RekeyCloudEvent {
  return {
    specversion: '1.0',
    id: event.id,
    source,
    type: `rekey.${event.type}`,
    time: event.time,
    subject: event.detail.keyRef,
    datacontenttype: 'application/json',
    data: event.detail,
  };
}

/**
 * rekey's events on an Azure Storage Queue, one CloudEvents 1.0 message each: what a Logic App,
 * another Function or an Event Grid forwarding function consumes. Storage Queues need no other
 * service and ship in the same storage account as the state and the work queue.
 */
export class StorageQueueEventBus implements EventBus {
  readonly client: QueueClient;
  private readonly source: string;
  private readonly encoding: 'base64' | 'none';

  constructor(opts: StorageQueueEventBusOptions) {
    checkQueueName(opts.queue, 'storage queue event bus');
    this.client = 'client' in opts ? opts.client : createQueueClient(opts, opts.queue);
    this.source = opts.source ?? '/rekey';
    this.encoding = opts.encoding ?? 'base64';
  }

  ensureQueue(): Promise<void> {
    return ensureQueue(this.client);
  }

  async publish(events: RekeyEvent[]): Promise<void> {
    const failed: { id: string; error: Error }[] = [];
    await eachLimit(events, 4, async (event) => {
      try {
        const text = encodeMessage(toCloudEvent(event, this.source), `event ${event.id}`, this.encoding);
        await this.client.sendMessage(text);
      } catch (e) {
        failed.push({
          id: `${event.type}:${event.id}`,
          error: e instanceof RekeyError ? e : translateStorageError(e, `event ${event.id}`, 'azure-queue'),
        });
      }
    });
    if (failed.length > 0) {
      const retryable = failed.every((f) => f.error instanceof ProviderError && f.error.retryable);
      throw new ProviderError(
        'azure-queue',
        'PublishFailed',
        `${failed.length} event(s) not delivered to queue ${this.client.name}: ${failed
          .slice(0, 3)
          .map((f) => `${f.id} (${f.error.message})`)
          .join('; ')}`,
        { retryable },
      );
    }
  }
}
