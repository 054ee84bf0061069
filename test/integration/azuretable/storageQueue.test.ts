import type { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import type { RewrapShardMessage } from '../../../shared/core/ports/WorkQueue.js';
import { parseShardMessage } from '../../../shared/core/usecases/scheduled.js';
import { StorageQueueEventBus } from '../../../shared/queues/storagequeue/StorageQueueEventBus.js';
import { StorageQueueWorkQueue } from '../../../shared/queues/storagequeue/StorageQueueWorkQueue.js';
import { type Azurite, startAzurite } from '../../support/azurite.js';

let azurite: Azurite;
let n = 0;

beforeAll(async () => {
  azurite = await startAzurite({ services: ['queue'] });
});
afterAll(async () => {
  await azurite?.stop();
});

function shard(jobId: string): RewrapShardMessage {
  return { kind: 'rewrap-shard', jobId, providerId: 'az', verify: { sample: 0.1 }, batchSize: 100 };
}

/** Everything on the queue, decoded the way the Functions host decodes a base64 queue message. */
async function drain(client: QueueClient): Promise<unknown[]> {
  const out: unknown[] = [];
  for (;;) {
    const r = await client.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 30 });
    if (r.receivedMessageItems.length === 0) return out;
    for (const m of r.receivedMessageItems) {
      out.push(JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')));
      await client.deleteMessage(m.messageId, m.popReceipt);
    }
  }
}

describe('StorageQueueWorkQueue', () => {
  it('sends each shard as a base64 JSON message a worker can parse back', async () => {
    const queue = new StorageQueueWorkQueue({
      queue: `work-${++n}`,
      connectionString: azurite.connectionString,
    });
    await queue.ensureQueue();
    const sent = ['plan:1:orders#0', 'plan:1:orders#1', 'plan:1:orders#2'].map(shard);
    await queue.send(sent);
    const got = await drain(queue.client);
    expect(got.map((m) => parseShardMessage(m)).sort((a, b) => a.jobId.localeCompare(b.jobId))).toEqual(sent);
  });

  it('refuses a batch with a message over 64 KiB, sending none of it', async () => {
    const queue = new StorageQueueWorkQueue({
      queue: `work-${++n}`,
      connectionString: azurite.connectionString,
    });
    await queue.ensureQueue();
    const huge = shard(`job-${'x'.repeat(60_000)}`);
    await expect(queue.send([shard('small'), huge])).rejects.toThrow(/at most 65536/);
    expect(await drain(queue.client)).toEqual([]);
  });

  it('a missing queue is a configuration error naming it', async () => {
    const queue = new StorageQueueWorkQueue({
      queue: 'never-created',
      connectionString: azurite.connectionString,
    });
    await expect(queue.send([shard('j')])).rejects.toMatchObject({
      code: 'CONFIG',
      message: expect.stringContaining('never-created'),
    });
    expect(() => new StorageQueueWorkQueue({ queue: 'Bad_Name', connectionString: 'x=y' })).toThrow(
      /lowercase letters/,
    );
  });
});

describe('StorageQueueEventBus', () => {
  it('publishes each event as a CloudEvents 1.0 message', async () => {
    const bus = new StorageQueueEventBus({
      queue: `events-${++n}`,
      connectionString: azurite.connectionString,
    });
    await bus.ensureQueue();
    const event: RekeyEvent = {
      type: 'KeyRotated',
      id: 'rot-1',
      time: '2026-11-28T12:00:00.000Z',
      detail: {
        keyRef: 'azure-kv://v.vault.azure.net/keys/orders',
        providerId: 'az',
        previousVersion: 'a',
        newVersion: 'b',
        reason: 'schedule',
      },
    };
    await bus.publish([event]);
    expect(await drain(bus.client)).toEqual([
      {
        specversion: '1.0',
        id: 'rot-1',
        source: '/rekey',
        type: 'rekey.KeyRotated',
        time: event.time,
        subject: event.detail.keyRef,
        datacontenttype: 'application/json',
        data: event.detail,
      },
    ]);
  });

  it('a queue that does not exist fails the publish with a provider error naming the events', async () => {
    const bus = new StorageQueueEventBus({
      queue: 'no-such-events',
      connectionString: azurite.connectionString,
    });
    await expect(
      bus.publish([
        {
          type: 'VersionRetired',
          id: 'ret-1',
          time: '2026-11-28T12:00:00.000Z',
          detail: { keyRef: 'local://k', providerId: 'l', version: '1', state: 'disabled' },
        },
      ]),
    ).rejects.toThrow(/1 event\(s\) not delivered.*VersionRetired:ret-1/);
  });
});
