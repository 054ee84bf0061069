/**
 * The built Lambda bundles end to end, in this process, against the AWS emulator (KMS, SQS,
 * EventBridge) and dynalite (DynamoDB): the scheduler rotates and queues re-wrap shards, the
 * worker drains the queue as Lambda's SQS event source would, the next scheduled run finishes
 * the plan. Then the cost reporter prices what the inventory holds.
 */
import { randomUUID } from 'node:crypto';
import type { ScheduledEvent, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import {
  type AwsStack,
  captureStdout,
  drainQueue,
  emfDocuments,
  type Handler,
  lambdaContext,
  loadBundle,
  notAllowed,
  observeCalls,
  queueDepth,
  REGION,
  startStack,
} from './helpers.js';

let stack: AwsStack;
let scheduler: Handler<ScheduledEvent, Record<string, unknown>>;
let worker: Handler<SQSEvent, SQSBatchResponse>;
let costs: Handler<ScheduledEvent, Record<string, unknown>>;
let orders: string;
let logs: string;
let out: ReturnType<typeof captureStdout>;
/** What each function called on the emulated services, checked against its role at the end. */
const calls = { scheduler: new Set<string>(), worker: new Set<string>(), costs: new Set<string>() };

const schedule = (): ScheduledEvent => ({
  version: '0',
  id: randomUUID(),
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '111122223333',
  time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
  region: REGION,
  resources: [`arn:aws:events:${REGION}:111122223333:rule/rekey-test-schedule`],
  detail: {},
});

beforeAll(async () => {
  stack = await startStack({ keysCreatedDaysAgo: 200 });
  orders = await stack.createKey('orders', { 'data-class': 'pci' });
  logs = await stack.createKey('logs', { 'data-class': 'internal' });
  await stack.seed(orders, 120);
  await stack.seed(logs, 10);
  // The keys were made 200 days ago; from now on the emulator keeps real time.
  stack.emu.clock.set(new Date());
  stack.applyEnv({ REKEY_SHARDS: '3' });
  scheduler = observeCalls(stack, await loadBundle('scheduler'), calls.scheduler);
  worker = observeCalls(stack, await loadBundle('worker'), calls.worker);
  costs = observeCalls(stack, await loadBundle('costs'), calls.costs);
  out = captureStdout();
});

afterAll(async () => {
  out?.stop();
  await stack?.close();
});

describe('AWS functions, end to end', () => {
  let firstPrimary: string;
  let newPrimary: string;

  it('the scheduler rotates the overdue key and queues its re-wrap as shards', async () => {
    firstPrimary = (await stack.provider.getKey(parseKeyRef(orders))).primaryVersion;
    const r = await scheduler(schedule(), lambdaContext('scheduler'));
    expect(r).toMatchObject({ status: 'applied', applyStatus: expect.any(String) });
    expect(r.queued).toBeGreaterThanOrEqual(2);
    expect(await queueDepth(stack)).toBe(r.queued);
    expect(r.outcomes).toMatchObject({ awaiting_rewrap: expect.any(Number) });
    newPrimary = (await stack.provider.getKey(parseKeyRef(orders))).primaryVersion;
    expect(newPrimary).not.toBe(firstPrimary);
    // The key no policy governs is left alone.
    expect((await stack.provider.getKey(parseKeyRef(logs))).versions).toHaveLength(1);
  });

  it('the worker drains the queue with no failed records', async () => {
    const responses = await drainQueue(stack, worker, { batchSize: 2 });
    expect(responses.length).toBeGreaterThanOrEqual(1);
    for (const r of responses) expect(r.batchItemFailures).toEqual([]);
    expect(await queueDepth(stack)).toBe(0);
  });

  it('the next scheduled run finishes the plan and queues nothing', async () => {
    const r = await scheduler(schedule(), lambdaContext('scheduler'));
    expect(r).toMatchObject({ status: 'applied', queued: 0 });
    expect((r.outcomes as Record<string, number>).failed ?? 0).toBe(0);
    expect((r.outcomes as Record<string, number>).awaiting_rewrap ?? 0).toBe(0);
  });

  it('every DEK is under the new key material and unwraps to what it was', async () => {
    expect(await stack.deks.countByVersion(orders)).toEqual({ [newPrimary]: 120 });
    const ref = parseKeyRef(orders);
    for (const [id, pt] of stack.plaintexts) {
      const d = (await stack.deks.get(id))!;
      if (d.keyRef !== ref.uri) continue;
      const got = Buffer.from(
        await stack.provider.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context),
      );
      expect(got.equals(pt)).toBe(true);
      got.fill(0);
    }
    const logsVersions = await stack.deks.countByVersion(logs);
    expect(Object.values(logsVersions)).toEqual([10]);
  });

  it('rekey events went to the configured EventBridge bus, the completion once', async () => {
    const events = stack.emu.events.events({ source: 'rekey' });
    expect(new Set(events.map((e) => e.eventBusName))).toEqual(new Set([stack.bus]));
    const types = events.map((e) => e['detail-type']);
    expect(types).toContain('KeyRotated');
    expect(types.filter((t) => t === 'RewrapCompleted')).toHaveLength(1);
    const done = events.find((e) => e['detail-type'] === 'RewrapCompleted')!;
    expect(done.resources).toEqual([parseKeyRef(orders).uri.slice('aws-kms://'.length)]);
    expect(done.detail).toMatchObject({ rewrapped: 120, failed: 0, verified: 120, toVersion: newPrimary });
  });

  it('wrote EMF metrics: re-wrap progress and cycle figures, no key ref as a dimension', () => {
    const docs = emfDocuments(out.lines());
    const named = (name: string) =>
      docs.filter((d) => d._aws.CloudWatchMetrics.some((m) => m.Metrics.some((x) => x.Name === name)));
    const rewrapped = named('rekey.rewrap.rewrapped').reduce(
      (n, d) => n + (d['rekey.rewrap.rewrapped'] as number),
      0,
    );
    expect(rewrapped).toBe(120);
    expect(named('rekey.cycle.runs')).toHaveLength(2);
    expect(named('ColdStart').length).toBeGreaterThanOrEqual(2);
    for (const d of docs) {
      expect(d._aws.CloudWatchMetrics[0]!.Namespace).toBe('rekey');
      for (const dims of d._aws.CloudWatchMetrics[0]!.Dimensions) {
        for (const dim of dims) expect(String(d[dim])).not.toMatch(/arn:aws/);
      }
    }
    // The key ref travels as metadata.
    expect(named('rekey.rewrap.rewrapped')[0]!.keyRef).toBe(parseKeyRef(orders).uri);
  });

  it('logs are structured and never carry a DEK', () => {
    const lines = out.lines();
    const logs = lines.filter((l) => l.includes('"level"'));
    expect(logs.some((l) => JSON.parse(l).message === 'scheduled cycle')).toBe(true);
    expect(logs.some((l) => JSON.parse(l).message === 're-wrap job completed')).toBe(true);
    const all = lines.join('\n');
    for (const pt of stack.plaintexts.values()) {
      expect(all).not.toContain(pt.toString('hex'));
      expect(all).not.toContain(pt.toString('base64'));
    }
  });

  it('the audit chain in DynamoDB verifies', async () => {
    const state = new DynamoStateStore({ table: stack.stateTable, doc: stack.dyn.client() });
    const v = await verifyAuditChain(state);
    expect(v.ok).toBe(true);
  });

  it('the cost reporter prices the latest inventory and emits a figure per key', async () => {
    const r = await costs(schedule(), lambdaContext('costs'));
    expect(r).toMatchObject({ keys: 2, currency: 'USD', period: new Date().toISOString().slice(0, 7) });
    expect(r.knownTotal).toBeGreaterThan(0);
    const perKey = emfDocuments(out.lines()).filter((d) => 'rekey.cost.monthly' in d);
    expect(perKey.map((d) => d.keyRef).sort()).toEqual(
      [parseKeyRef(orders).uri, parseKeyRef(logs).uri].sort(),
    );
    const pci = perKey.find((d) => d.keyRef === parseKeyRef(orders).uri)!;
    expect(pci).toMatchObject({
      provider: 'aws-kms',
      protection: 'hsm',
      policy: 'pci',
      account: stack.emu.account,
    });
  });

  it('each function called only what its role in serverless.yml allows', () => {
    expect(calls.scheduler).toContain('kms.RotateKeyOnDemand');
    // verify: full takes the unwrap, wrap, verify path.
    expect(calls.worker).toContain('kms.Encrypt');
    expect(notAllowed(calls.scheduler, 'SchedulerRole')).toEqual([]);
    expect(notAllowed(calls.worker, 'WorkerRole')).toEqual([]);
    expect(notAllowed(calls.costs, 'CostsRole')).toEqual([]);
  });
});
