/**
 * The built re-wrap worker's partial batch responses: exactly the records that must come back
 * (a malformed one, a shard another worker holds, one a transient fault stopped) are reported;
 * the rest are done, and redelivering a done shard changes nothing.
 */
import { randomUUID } from 'node:crypto';
import type { Message } from '@aws-sdk/client-sqs';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { ScheduledEvent, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import {
  type AwsStack,
  captureStdout,
  type Handler,
  lambdaContext,
  loadBundle,
  REGION,
  sqsEvent,
  startStack,
} from './helpers.js';

let stack: AwsStack;
let worker: Handler<SQSEvent, SQSBatchResponse>;
let state: DynamoStateStore;
let messages: Message[];
let orders: string;
let out: ReturnType<typeof captureStdout>;

const fake = (body: string, id = randomUUID()): Message => ({
  MessageId: id,
  ReceiptHandle: Buffer.from(`${id}:x`).toString('base64'),
  Body: body,
  MD5OfBody: '0'.repeat(32),
  Attributes: { ApproximateReceiveCount: '1' },
});

beforeAll(async () => {
  stack = await startStack({ keysCreatedDaysAgo: 200 });
  orders = await stack.createKey('orders', { 'data-class': 'pci' });
  await stack.seed(orders, 60);
  stack.emu.clock.set(new Date());
  stack.applyEnv({ REKEY_SHARDS: '3' });
  state = new DynamoStateStore({ table: stack.stateTable, doc: stack.dyn.client() });
  const scheduler = await loadBundle<ScheduledEvent, { queued: number }>('scheduler');
  worker = await loadBundle('worker');
  const r = await scheduler(
    {
      version: '0',
      id: randomUUID(),
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      account: '111122223333',
      time: new Date().toISOString(),
      region: REGION,
      resources: [],
      detail: {},
    },
    lambdaContext('scheduler'),
  );
  expect(r.queued).toBe(3);
  const got = await stack.sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: stack.queueUrl,
      MaxNumberOfMessages: 10,
      VisibilityTimeout: 900,
      MessageSystemAttributeNames: ['All'],
    }),
  );
  messages = got.Messages ?? [];
  expect(messages).toHaveLength(3);
  out = captureStdout();
});

afterAll(async () => {
  out?.stop();
  await stack?.close();
});

const jobOf = (m: Message) => JSON.parse(m.Body!).jobId as string;

describe('re-wrap worker: partial batch responses', () => {
  it('reports exactly the malformed record and the busy shard; the others are done', async () => {
    const [a, b, c] = messages as [Message, Message, Message];
    // Another worker (another execution environment) holds shard b.
    const other = 'lambda:other-stream:0000abcd';
    expect(await state.acquireLease(`rewrap:${jobOf(b)}`, other, 600_000, Date.now())).toBe(true);
    const malformed = fake(JSON.stringify({ kind: 'rewrap-shard', jobId: jobOf(a) }));
    const notJson = fake('{not json');
    const res = await worker(sqsEvent(stack, [a, malformed, b, notJson, c]), lambdaContext('worker'));
    expect(res.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(
      [malformed.MessageId, b.MessageId, notJson.MessageId].sort(),
    );
    for (const m of [a, c]) expect((await state.getRewrapJob(jobOf(m)))?.status).toBe('done');
    expect((await state.getRewrapJob(jobOf(b)))?.status).not.toBe('done');

    const lines = out
      .lines()
      .filter((l) => l.includes('"level"'))
      .map((l) => JSON.parse(l));
    const bad = lines.filter((l) => l.message.startsWith('malformed re-wrap message'));
    expect(bad.map((l) => l.messageId).sort()).toEqual([malformed.MessageId, notJson.MessageId].sort());
    expect(bad.find((l) => l.messageId === malformed.MessageId).error).toMatch(/providerId/);
    expect(
      lines.some((l) => l.message.includes('held by another worker') && l.messageId === b.MessageId),
    ).toBe(true);

    // Once the other worker lets go, the redelivered shard is worked and the job completes.
    await state.releaseLease(`rewrap:${jobOf(b)}`, other);
    const again = await worker(sqsEvent(stack, [b]), lambdaContext('worker'));
    expect(again.batchItemFailures).toEqual([]);
    expect(await stack.deks.countByVersion(orders)).toEqual({
      [(await stack.provider.getKey(parseKeyRef(orders))).primaryVersion]: 60,
    });
  });

  it('a redelivered finished shard is a no-op and announces nothing again', async () => {
    const before = stack.emu.events.events({ detailType: 'RewrapCompleted' }).length;
    expect(before).toBe(1);
    const res = await worker(sqsEvent(stack, [messages[0]!, messages[0]!]), lambdaContext('worker'));
    expect(res.batchItemFailures).toEqual([]);
    expect(stack.emu.events.events({ detailType: 'RewrapCompleted' })).toHaveLength(1);
  });

  it('hands back a record a transient fault stopped, and reports every record when all fail', async () => {
    const [a] = messages as [Message];
    // DynamoDB goes away: reading the shard's job fails with a connection error.
    await stack.dyn.stop();
    const res = await worker(sqsEvent(stack, [a, fake('[]'), fake('null')]), lambdaContext('worker'));
    expect(res.batchItemFailures).toHaveLength(3);
    const lines = out
      .lines()
      .filter((l) => l.includes('"level"'))
      .map((l) => JSON.parse(l));
    expect(lines.some((l) => l.messageId === a.MessageId && /transient fault/.test(l.message))).toBe(true);
  });
});
