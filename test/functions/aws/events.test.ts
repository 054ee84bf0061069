/**
 * The built event function on KMS events from EventBridge: a rotation re-wraps the governed
 * key's DEKs; a redelivered event is answered from the idempotency table (DynamoDB, dynalite);
 * malformed events are rejected without retries; a transient failure throws, so Lambda retries.
 */
import { randomUUID } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { EventBridgeEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import {
  type AwsStack,
  captureStdout,
  type Handler,
  lambdaContext,
  loadBundle,
  notAllowed,
  observeCalls,
  REGION,
  startStack,
} from './helpers.js';

type KmsEvent = EventBridgeEvent<string, Record<string, unknown>>;
let stack: AwsStack;
let events: Handler<KmsEvent, Record<string, unknown>>;
let state: DynamoStateStore;
let orders: string;
let other: string;
let out: ReturnType<typeof captureStdout>;
const calls = new Set<string>();

function kmsEvent(ref: string, detailType = 'KMS CMK Rotation', extra: Partial<KmsEvent> = {}): KmsEvent {
  const arn = parseKeyRef(ref).uri.slice('aws-kms://'.length);
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': detailType,
    source: 'aws.kms',
    account: stack.emu.account,
    time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: REGION,
    resources: [arn],
    detail: { 'key-id': arn.split('/').pop()! },
    ...extra,
  };
}

const audited = async (action: string) => (await state.auditRead(1, 1000)).filter((r) => r.action === action);

beforeAll(async () => {
  stack = await startStack({ keysCreatedDaysAgo: 10 });
  orders = await stack.createKey('orders', { 'data-class': 'pci' });
  other = await stack.createKey('scratch', { team: 'x' });
  await stack.seed(orders, 30);
  stack.emu.clock.set(new Date());
  stack.applyEnv();
  state = new DynamoStateStore({ table: stack.stateTable, doc: stack.dyn.client() });
  events = observeCalls(stack, await loadBundle('events'), calls);
  out = captureStdout();
});

afterAll(async () => {
  out?.stop();
  await stack?.close();
});

describe('event function', () => {
  let rotation: KmsEvent;

  it('a KMS rotation re-wraps the governed key’s DEKs to the new material', async () => {
    // AWS rotated the key (automatic or on-demand): the DEKs are under the old material.
    const v = await stack.provider.rotate(parseKeyRef(orders));
    rotation = kmsEvent(orders);
    const r = await events(rotation, lambdaContext('events'));
    expect(r).toMatchObject({
      eventId: rotation.id,
      outcome: 'rewrapped',
      rewrapped: 30,
      keyRef: parseKeyRef(orders).uri,
    });
    expect(await stack.deks.countByVersion(orders)).toEqual({ [v.id]: 30 });
    expect(await audited('event.handled')).toHaveLength(1);
  });

  it('the same event again gets the first result back and does nothing', async () => {
    const again = await events(structuredClone(rotation), lambdaContext('events'));
    expect(again).toMatchObject({ eventId: rotation.id, outcome: 'rewrapped', rewrapped: 30 });
    expect(await audited('event.handled')).toHaveLength(1);
    const items = await stack.dyn.client().send(new ScanCommand({ TableName: stack.idempotencyTable }));
    expect(items.Items?.map((i) => i.status)).toContain('COMPLETED');
  });

  it('keys no policy governs are ignored; a deleted key is a notice', async () => {
    const ignored = await events(kmsEvent(other), lambdaContext('events'));
    expect(ignored).toMatchObject({ outcome: 'ignored', reason: 'no policy governs this key' });
    const gone = await events(kmsEvent(other, 'KMS CMK Deletion'), lambdaContext('events'));
    expect(gone).toMatchObject({ outcome: 'key_deleted', keyRef: parseKeyRef(other).uri });
  });

  it('rejects malformed events, naming the field, without retries and without changes', async () => {
    const before = await state.auditRead(1, 1000);
    const wrongKey = kmsEvent(orders);
    (wrongKey.detail as Record<string, unknown>)['key-id'] = '00000000-0000-0000-0000-000000000000';
    const r1 = await events(wrongKey, lambdaContext('events'));
    expect(r1).toMatchObject({ outcome: 'rejected', reason: expect.stringContaining('detail.key-id') });
    const r2 = await events(kmsEvent(orders, 'KMS Key Fell Over'), lambdaContext('events'));
    expect(r2).toMatchObject({ outcome: 'rejected', reason: expect.stringContaining('detail-type') });
    const r3 = await events(
      kmsEvent(orders, 'KMS CMK Rotation', { source: 'aws.s3' }),
      lambdaContext('events'),
    );
    expect(r3).toMatchObject({ outcome: 'rejected', reason: expect.stringContaining('source') });
    expect(await state.auditRead(1, 1000)).toEqual(before);
  });

  it('a transient failure throws (Lambda retries) and the retry is not blocked by the first attempt', async () => {
    await stack.provider.rotate(parseKeyRef(orders));
    const ev = kmsEvent(orders);
    stack.emu.faults.failNext('DescribeKey', 'KMSInternalException', 50, 500);
    await expect(events(ev, lambdaContext('events'))).rejects.toThrow(/KMSInternalException/);
    stack.emu.faults.reset();
    const r = await events(structuredClone(ev), lambdaContext('events'));
    expect(r).toMatchObject({ outcome: 'rewrapped', rewrapped: 30 });
    const failed = out
      .lines()
      .filter((l) => l.includes('"level"'))
      .map((l) => JSON.parse(l))
      .find((l) => l.message === 'event handling failed');
    expect(failed).toMatchObject({ eventId: ev.id, errorType: 'ProviderError' });
  });

  it('called only what the events role in serverless.yml allows', () => {
    expect(calls).toContain('kms.DescribeKey');
    expect(notAllowed(calls, 'EventsRole')).toEqual([]);
  });
});
