/**
 * The SQS work queue against the emulator, driven by the official SQS client: the WorkQueue
 * contract, then what is SQS's own (batches of ten, faults).
 */
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError, ValidationError } from '../../../shared/core/errors.js';
import type { RewrapShardMessage } from '../../../shared/core/ports/WorkQueue.js';
import { MAX_BATCH_BYTES, SqsWorkQueue } from '../../../shared/queues/sqs/SqsWorkQueue.js';
import { workQueueContract } from '../../contracts/workQueue.contract.js';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { CREDENTIALS, emulator, REGION } from './helpers.js';

let emu: AwsEmulator;
let sqs: SQSClient;
let n = 0;

beforeAll(async () => {
  emu = await emulator();
  sqs = new SQSClient({ region: REGION, endpoint: emu.endpoint, credentials: CREDENTIALS, maxAttempts: 1 });
});
afterAll(async () => {
  sqs.destroy();
  await emu.close();
});

async function freshQueue() {
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: `shards-${++n}` }));
  return QueueUrl!;
}

async function drain(queueUrl: string): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const got = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60 }),
    );
    const ms = got.Messages ?? [];
    if (ms.length === 0) return bodies;
    bodies.push(...ms.map((m) => m.Body!));
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: ms.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
}

workQueueContract('sqs (emulator)', async () => {
  const queueUrl = await freshQueue();
  const queue = new SqsWorkQueue({ queueUrl, client: sqs });
  return { queue, drain: () => drain(queueUrl), maxMessageBytes: MAX_BATCH_BYTES, cleanup: async () => {} };
});

const shard = (i: number): RewrapShardMessage => ({
  kind: 'rewrap-shard',
  jobId: `job#${i}`,
  providerId: 'aws-prod',
  verify: 'full',
  batchSize: 50,
});

describe('SqsWorkQueue', () => {
  it('sends in SendMessageBatch calls of at most ten', async () => {
    const queueUrl = await freshQueue();
    const before = emu.requestCounts['sqs.SendMessageBatch'] ?? 0;
    await new SqsWorkQueue({ queueUrl, client: sqs }).send(Array.from({ length: 23 }, (_, i) => shard(i)));
    expect((emu.requestCounts['sqs.SendMessageBatch'] ?? 0) - before).toBe(3);
    expect(await drain(queueUrl)).toHaveLength(23);
  });

  it('a failed call is a ProviderError, retryable when SQS was at fault', async () => {
    const queueUrl = await freshQueue();
    emu.faults.failNext('SendMessageBatch', 'InternalError', 1, 500);
    const err = await new SqsWorkQueue({ queueUrl, client: sqs }).send([shard(1)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ provider: 'sqs', retryable: true });
    emu.faults.reset();
    const missing = await new SqsWorkQueue({ queueUrl: `${queueUrl}-gone`, client: sqs })
      .send([shard(1)])
      .catch((e: unknown) => e);
    expect(missing).toMatchObject({ providerCode: 'QueueDoesNotExist', retryable: false });
  });

  it('refuses a queue URL that is not one', () => {
    expect(() => new SqsWorkQueue({ queueUrl: 'shards' })).toThrow(ValidationError);
    expect(() => new SqsWorkQueue({ queueUrl: 'shards' })).toThrow(/queueUrl/);
  });
});
