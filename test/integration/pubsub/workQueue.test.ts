/**
 * PubSubWorkQueue and PubSubEventBus against the Pub/Sub emulator: what they publish, how a
 * scheduled cycle's shards travel through a topic to the workers, and how failures surface.
 */
import type { PubSub } from '@google-cloud/pubsub';
import { v1 } from '@google-cloud/pubsub';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import type { RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import type { RewrapShardMessage } from '../../../shared/core/ports/WorkQueue.js';
import {
  parseShardMessage,
  runRewrapShard,
  runScheduledCycle,
} from '../../../shared/core/usecases/scheduled.js';
import { pubsubError } from '../../../shared/queues/pubsub/client.js';
import { PubSubWorkQueue } from '../../../shared/queues/pubsub/PubSubWorkQueue.js';
import { PubSubEventBus } from '../../../shared/telemetry/pubsub/PubSubEventBus.js';
import type { PubSubEmulator } from '../../emulators/gcp-pubsub/index.js';
import { lostDeks, type TestWorkspace, testWorkspace } from '../../support/workspace.js';
import { client, emulator, PROJECT, rejectionOf } from './helpers.js';

let emu: PubSubEmulator;
let ps: PubSub;
let sub: v1.SubscriberClient;
let w: TestWorkspace | undefined;
let n = 0;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  emu = await emulator();
  ps = client(emu);
  sub = new v1.SubscriberClient({
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    sslCreds: grpc.credentials.createInsecure(),
  });
});
afterEach(async () => {
  await w?.close();
  w = undefined;
  emu.faults.reset();
});
afterAll(async () => {
  for (const c of closers) await c();
  await sub?.close();
  await ps?.close();
  await emu?.close();
});

/** A fresh topic with one pull subscription. */
async function topicWithSub(): Promise<{ topic: string; subscription: string }> {
  n += 1;
  const [t] = await ps.createTopic(`work-${n}`);
  const [s] = await t.createSubscription(`work-${n}-pull`);
  return { topic: t.name, subscription: s.name };
}

async function pullAll(subscription: string) {
  const out: Array<{ data: string; attributes: Record<string, string> }> = [];
  for (;;) {
    const [r] = await sub.pull({ subscription, maxMessages: 100, returnImmediately: true });
    const got = r.receivedMessages ?? [];
    if (got.length === 0) return out;
    await sub.acknowledge({ subscription, ackIds: got.map((m) => m.ackId!) });
    for (const m of got) {
      out.push({
        data: Buffer.from(m.message!.data as Uint8Array).toString(),
        attributes: (m.message!.attributes ?? {}) as Record<string, string>,
      });
    }
  }
}

function queue(topic: string): PubSubWorkQueue {
  const q = new PubSubWorkQueue({ topic, apiEndpoint: emu.host });
  closers.push(() => q.close());
  return q;
}

const shard = (jobId: string): RewrapShardMessage => ({
  kind: 'rewrap-shard',
  jobId,
  providerId: 'local',
  verify: 'full',
  batchSize: 50,
});

describe('PubSubWorkQueue', () => {
  it('publishes one message per shard: JSON data, kind/jobId/providerId attributes', async () => {
    const { topic, subscription } = await topicWithSub();
    await queue(topic).send([
      shard('job-a:0'),
      { ...shard('job-a:1'), verify: { sample: 0.1 }, ratePerSecond: 50 },
    ]);
    const got = await pullAll(subscription);
    expect(got.map((m) => m.attributes)).toEqual([
      { kind: 'rewrap-shard', jobId: 'job-a:0', providerId: 'local' },
      { kind: 'rewrap-shard', jobId: 'job-a:1', providerId: 'local' },
    ]);
    expect(parseShardMessage(got[1]!.data)).toEqual({
      ...shard('job-a:1'),
      verify: { sample: 0.1 },
      ratePerSecond: 50,
    });
  });

  it('carries a scheduled cycle to its workers: shards through the topic, every DEK re-wrapped once', async () => {
    const { topic, subscription } = await topicWithSub();
    w = await testWorkspace();
    const ref = await w.seed('orders', 240, { ageDays: 200 });
    w.ctx.queue = queue(topic);
    const events: RekeyEvent[] = [];
    w.ctx.events = { publish: async (e) => void events.push(...e) };
    const first = await runScheduledCycle(w.ctx, { shards: 3 });
    expect(first.queued).toBeGreaterThanOrEqual(2);
    const bodies = await pullAll(subscription);
    expect(bodies).toHaveLength(first.queued);
    const reports = [];
    for (const b of bodies) reports.push(await runRewrapShard(w.ctx, b.data));
    expect(reports.every((r) => r.status === 'done')).toBe(true);
    expect(reports.reduce((a, r) => a + r.counts.rewrapped, 0)).toBe(240);
    expect(await w.store.countByVersion(ref)).toEqual({ '2': 240 });
    expect(events.filter((e) => e.type === 'RewrapCompleted')).toHaveLength(1);
    expect(await lostDeks(w)).toEqual([]);
  });

  it('refuses a malformed topic name or message, and names a missing topic', async () => {
    expect(() => new PubSubWorkQueue({ topic: 'rewrap' })).toThrow(ConfigError);
    expect(() => new PubSubWorkQueue({ topic: 'projects/p/topics/x' })).toThrow(/not a topic name/);
    const { topic, subscription } = await topicWithSub();
    const bad = { kind: 'other', jobId: 'x' } as unknown as RewrapShardMessage;
    await expect(queue(topic).send([shard('ok'), bad])).rejects.toThrow(ValidationError);
    expect(await pullAll(subscription)).toEqual([]);
    const missing = await rejectionOf(queue(`projects/${PROJECT}/topics/no-such-topic`).send([shard('x')]));
    expect(missing).toBeInstanceOf(ProviderError);
    expect(missing).toMatchObject({ providerCode: 'NOT_FOUND', retryable: false });
    expect(missing.message).toMatch(/topic projects\/rekey-test\/topics\/no-such-topic does not exist/);
  });

  it('reports a refusal as a non-retryable ProviderError; transient codes are retryable', async () => {
    const { topic } = await topicWithSub();
    emu.faults.failNext('Publish', grpc.status.PERMISSION_DENIED, 1);
    const denied = await rejectionOf(queue(topic).send([shard('y')]));
    expect(denied).toMatchObject({ providerCode: 'PERMISSION_DENIED', retryable: false });
    expect(pubsubError('q', 'publishing', topic, { code: 14, details: 'x' })).toMatchObject({
      providerCode: 'UNAVAILABLE',
      retryable: true,
    });
    expect(pubsubError('q', 'publishing', topic, { code: 8, details: 'x' })).toMatchObject({
      retryable: true,
      throttled: true,
    });
  });
});

describe('PubSubEventBus', () => {
  const rotated: RekeyEvent = {
    type: 'KeyRotated',
    id: 'plan-1:0',
    time: '2026-11-28T12:00:00.000Z',
    detail: {
      keyRef: 'gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k',
      providerId: 'gcp',
      previousVersion: '1',
      newVersion: '2',
      reason: 'schedule',
    },
  };

  it('publishes CloudEvents in binary mode: ce- attributes, the detail as JSON data', async () => {
    const { topic, subscription } = await topicWithSub();
    const bus = new PubSubEventBus({ topic, apiEndpoint: emu.host });
    closers.push(() => bus.close());
    await bus.publish([rotated]);
    const [m] = await pullAll(subscription);
    expect(m!.attributes).toEqual({
      'ce-specversion': '1.0',
      'ce-id': 'plan-1:0',
      'ce-type': 'KeyRotated',
      'ce-source': 'rekey',
      'ce-time': '2026-11-28T12:00:00.000Z',
      'ce-subject': rotated.detail.keyRef,
      'content-type': 'application/json',
    });
    expect(JSON.parse(m!.data)).toEqual(rotated.detail);
  });

  it('refuses unknown types and bad times before publishing anything', async () => {
    const { topic, subscription } = await topicWithSub();
    const bus = new PubSubEventBus({ topic, apiEndpoint: emu.host });
    closers.push(() => bus.close());
    await expect(
      bus.publish([rotated, { ...rotated, type: 'Nope' } as unknown as RekeyEvent]),
    ).rejects.toThrow(/unknown type Nope/);
    await expect(bus.publish([{ ...rotated, time: 'yesterday' }])).rejects.toThrow(/not a date/);
    expect(await pullAll(subscription)).toEqual([]);
  });
});
