/**
 * The Pub/Sub emulator, driven by the unmodified @google-cloud/pubsub client: topic and
 * subscription administration with the service's error codes and messages, publish and pull
 * (unary and streaming) with ack deadlines, and push delivery with its retry and dead-letter
 * rules.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PubSub } from '@google-cloud/pubsub';
import { v1 } from '@google-cloud/pubsub';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PubSubEmulator } from '../../emulators/gcp-pubsub/index.js';
import { client, emulator, PROJECT, pushEndpoint, rejectionOf, until } from './helpers.js';

let emu: PubSubEmulator;
let ps: PubSub;
let n = 0;
const id = (p: string) => `${p}-${++n}`;
const topicName = (t: string) => `projects/${PROJECT}/topics/${t}`;

beforeAll(async () => {
  emu = await emulator();
  ps = client(emu);
});
beforeEach(() => emu.faults.reset());
afterAll(async () => {
  await ps?.close();
  await emu?.close();
});

describe('topics', () => {
  it('creates, gets, lists and deletes; a deleted topic leaves its subscriptions on _deleted-topic_', async () => {
    const t = id('orders');
    const [topic] = await ps.createTopic({ name: t, labels: { team: 'pay' } });
    expect(topic.name).toBe(topicName(t));
    const [meta] = await topic.getMetadata();
    expect(meta).toMatchObject({ name: topicName(t), labels: { team: 'pay' }, state: 'ACTIVE' });
    const [topics] = await ps.getTopics();
    expect(topics.map((x) => x.name)).toContain(topicName(t));
    const [sub] = await topic.createSubscription(id('orders-sub'));
    await topic.delete();
    expect((await topic.exists())[0]).toBe(false);
    const [subMeta] = await sub.getMetadata();
    expect(subMeta.topic).toBe('_deleted-topic_');
  });

  it('answers ALREADY_EXISTS, NOT_FOUND and INVALID_ARGUMENT with the service wording', async () => {
    const t = id('dup');
    await ps.createTopic(t);
    const dup = await rejectionOf(ps.createTopic(t));
    expect(dup.code).toBe(status.ALREADY_EXISTS);
    expect(dup.details).toBe(`Resource already exists in the project (resource=${t}).`);
    const missing = await rejectionOf(ps.topic('nowhere').publishMessage({ data: Buffer.from('x') }));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(missing.details).toBe('Resource not found (resource=nowhere).');
    for (const bad of ['ab', 'goog-topic', '9starts-with-digit', 'has/slash']) {
      const e = await rejectionOf(ps.createTopic(bad));
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.details).toMatch(/^Invalid resource name given \(name=.*\)\. Refer to /);
    }
  });

  it('pages ListTopics', async () => {
    const pub = new v1.PublisherClient({
      apiEndpoint: emu.endpoint.host,
      port: emu.endpoint.port,
      sslCreds: insecure(),
    });
    for (let i = 0; i < 5; i++) await ps.createTopic(id('page'));
    const [first, , resp] = await pub.listTopics(
      { project: `projects/${PROJECT}`, pageSize: 2 },
      { autoPaginate: false },
    );
    expect(first).toHaveLength(2);
    expect(resp?.nextPageToken).toBeTruthy();
    const all = await pub.listTopics({ project: `projects/${PROJECT}` });
    expect(all[0].length).toBeGreaterThanOrEqual(5);
    await pub.close();
  });
});

describe('publish and pull', () => {
  it('assigns message ids and publish times, keeps attributes and ordering keys; Pull, ack, nack, deadline expiry', async () => {
    const t = id('jobs');
    const [topic] = await ps.createTopic(t);
    const [sub] = await topic.createSubscription(id('jobs-pull'), { ackDeadlineSeconds: 10 });
    const ids = [
      await topic.publishMessage({ data: Buffer.from('one'), attributes: { kind: 'a' } }),
      await topic.publishMessage({ json: { n: 2 } }),
    ];
    expect(new Set(ids).size).toBe(2);
    for (const x of ids) expect(x).toMatch(/^\d+$/);
    const ordered = ps.topic(t, { messageOrdering: true });
    const okId = await ordered.publishMessage({ data: Buffer.from('o'), orderingKey: 'k1' });
    expect(okId).toMatch(/^\d+$/);

    const subClient = new v1.SubscriberClient({
      apiEndpoint: emu.endpoint.host,
      port: emu.endpoint.port,
      sslCreds: insecure(),
    });
    const [pulled] = await subClient.pull({ subscription: sub.name, maxMessages: 10 });
    const msgs = pulled.receivedMessages ?? [];
    expect(msgs.map((m) => m.message?.messageId)).toEqual([...ids, okId]);
    expect(msgs[0]?.message?.attributes).toEqual({ kind: 'a' });
    expect(Buffer.from(msgs[0]!.message!.data as Uint8Array).toString()).toBe('one');
    expect(msgs[2]?.message?.orderingKey).toBe('k1');
    expect(Number(msgs[0]?.message?.publishTime?.seconds)).toBeGreaterThan(0);
    expect(msgs[0]?.deliveryAttempt).toBe(0); // only counted with a dead-letter policy

    // Outstanding: a second pull gets nothing until something is nacked or expires.
    const [none] = await subClient.pull({ subscription: sub.name, maxMessages: 10, returnImmediately: true });
    expect(none.receivedMessages ?? []).toHaveLength(0);
    await subClient.acknowledge({ subscription: sub.name, ackIds: [msgs[0]!.ackId!] });
    await subClient.modifyAckDeadline({
      subscription: sub.name,
      ackIds: [msgs[1]!.ackId!],
      ackDeadlineSeconds: 0,
    });
    const [again] = await subClient.pull({ subscription: sub.name, maxMessages: 10 });
    expect(again.receivedMessages?.map((m) => m.message?.messageId)).toEqual([ids[1]]);
    // The third message's 10 s deadline lasts 100 ms at this time scale: it comes back by itself.
    const [expired] = await subClient.pull({ subscription: sub.name, maxMessages: 10 });
    expect(expired.receivedMessages?.map((m) => m.message?.messageId)).toContain(okId);
    await subClient.close();
    await sub.delete();
  });

  it('refuses empty messages, reserved attribute keys, mixed ordering keys and bad ack deadlines', async () => {
    const pub = new v1.PublisherClient({
      apiEndpoint: emu.endpoint.host,
      port: emu.endpoint.port,
      sslCreds: insecure(),
    });
    const t = id('strict');
    await ps.createTopic(t);
    const cases: Array<[object[], RegExp]> = [
      [[], /at least one message/],
      [[{}], /Message 0 is empty/],
      [[{ data: Buffer.from('x'), attributes: { googKey: 'v' } }], /reserved/],
      [
        [
          { data: Buffer.from('a'), orderingKey: 'x' },
          { data: Buffer.from('b'), orderingKey: 'y' },
        ],
        /same ordering key/,
      ],
    ];
    for (const [messages, why] of cases) {
      const e = await rejectionOf(pub.publish({ topic: topicName(t), messages }));
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.details).toMatch(why);
    }
    const big = await rejectionOf(
      pub.publish({ topic: topicName(t), messages: [{ data: Buffer.alloc(10 * 1024 * 1024 + 1) }] }),
    );
    expect(big.details).toMatch(/payload size exceeds the limit/);
    const badDeadline = await rejectionOf(ps.topic(t).createSubscription(id('s'), { ackDeadlineSeconds: 5 }));
    expect(badDeadline.code).toBe(status.INVALID_ARGUMENT);
    expect(badDeadline.details).toMatch(/between 10 and 600 seconds/);
    const noTopic = await rejectionOf(ps.topic('no-such-topic').createSubscription(id('s')));
    expect(noTopic.code).toBe(status.NOT_FOUND);
    expect(noTopic.details).toBe('Resource not found (resource=no-such-topic).');
    const dlq = await rejectionOf(
      ps.topic(t).createSubscription(id('s'), {
        deadLetterPolicy: { deadLetterTopic: topicName(t), maxDeliveryAttempts: 3 },
      }),
    );
    expect(dlq.details).toMatch(/max_delivery_attempts: must be between 5 and 100/);
    const remote = await rejectionOf(
      ps.topic(t).createSubscription(id('s'), { pushConfig: { pushEndpoint: 'https://example.com/push' } }),
    );
    expect(remote.details).toMatch(/Invalid push endpoint given/);
    await pub.close();
  });

  it('streams messages to subscription.on("message") and takes its acks', async () => {
    const t = id('stream');
    const [topic] = await ps.createTopic(t);
    const [sub] = await topic.createSubscription(id('stream-sub'));
    // Delivery is at least once: count distinct messages.
    const got = new Set<string>();
    let nacked = 0;
    sub.on('message', (m) => {
      if (nacked === 0 && m.data.toString() === 'm1') {
        nacked += 1;
        m.nack();
        return;
      }
      got.add(m.data.toString());
      m.ack();
    });
    for (let i = 0; i < 5; i++) await topic.publishMessage({ data: Buffer.from(`m${i}`) });
    await until(() => got.size >= 5, 10_000, 'five messages');
    await until(() => emu.state.subscriptions.get(sub.name)!.backlog.length === 0, 5_000, 'acks');
    await sub.close();
    expect([...got].sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(nacked).toBe(1);
    expect(emu.stats(sub.name)!.nacked).toBeGreaterThanOrEqual(1);
    await sub.delete();
  });
  it('ends a stream on a subscription that does not exist with NOT_FOUND', async () => {
    const sub = ps.subscription('never-created');
    const err = await new Promise<Error & { code?: number }>((resolve) => {
      sub.on('error', resolve);
      sub.on('message', () => undefined);
    });
    await sub.close();
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.message).toMatch(/Resource not found \(resource=never-created\)/);
  });
});

describe('push delivery', () => {
  it('POSTs the push envelope and takes 2xx as an ack', async () => {
    const ep = await pushEndpoint(() => 200);
    const t = id('push');
    const [topic] = await ps.createTopic(t);
    const [sub] = await topic.createSubscription(id('push-sub'), {
      pushConfig: { pushEndpoint: `${ep.url}/projects/${PROJECT}/topics/${t}` },
    });
    const msgId = await topic.publishMessage({ data: Buffer.from('{"a":1}'), attributes: { kind: 'x' } });
    await until(() => ep.received.length === 1, 5_000, 'one push');
    const r = ep.received[0]!;
    expect(r.path).toBe(`/projects/${PROJECT}/topics/${t}`);
    expect(r.headers['content-type']).toBe('application/json');
    const env = JSON.parse(r.body);
    expect(env).toEqual({
      message: {
        data: Buffer.from('{"a":1}').toString('base64'),
        attributes: { kind: 'x' },
        messageId: msgId,
        message_id: msgId,
        publishTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        publish_time: env.message.publishTime,
      },
      subscription: sub.name,
    });
    await until(() => emu.state.subscriptions.get(sub.name)!.backlog.length === 0, 5_000, 'the ack');
    const [meta] = await sub.getMetadata();
    expect(meta.pushConfig?.pushEndpoint).toContain(ep.url);
    expect(meta.pushConfig?.attributes).toEqual({ 'x-goog-version': 'v1' });
    await sub.delete();
    await ep.close();
  });

  it('retries non-2xx answers and timeouts with exponential backoff, then dead-letters', async () => {
    const failing = await pushEndpoint((_r, i) => (i === 1 ? 0 : 503));
    const t = id('flaky');
    const dead = id('dead');
    const [topic] = await ps.createTopic(t);
    const [deadTopic] = await ps.createTopic(dead);
    const [deadSub] = await deadTopic.createSubscription(id('dead-sub'));
    const [sub] = await topic.createSubscription(id('flaky-sub'), {
      pushConfig: { pushEndpoint: `${failing.url}/push` },
      ackDeadlineSeconds: 10,
      retryPolicy: { minimumBackoff: { seconds: 1 }, maximumBackoff: { seconds: 4 } },
      deadLetterPolicy: { deadLetterTopic: topicName(dead), maxDeliveryAttempts: 5 },
    });
    await topic.publishMessage({ data: Buffer.from('poison'), attributes: { a: 'b' } });
    await until(() => emu.stats(sub.name)?.deadLettered === 1, 10_000, 'dead-lettering');
    const stats = emu.stats(sub.name)!;
    expect(stats.pushResults).toEqual(['timeout', '503', '503', '503', '503']);
    // The retry policy's backoff doubles from 1 s up to 4 s (here scaled by 0.01).
    const state = emu.state.subscriptions.get(sub.name)!;
    expect([1, 2, 3, 4].map((a) => emu.state.backoff(state, a, true))).toEqual([10, 20, 40, 40]);
    const attempts = failing.received.map((r) => JSON.parse(r.body).deliveryAttempt);
    expect(attempts).toEqual([1, 2, 3, 4, 5]);

    const subClient = new v1.SubscriberClient({
      apiEndpoint: emu.endpoint.host,
      port: emu.endpoint.port,
      sslCreds: insecure(),
    });
    const [pulled] = await subClient.pull({ subscription: deadSub.name, maxMessages: 1 });
    const m = pulled.receivedMessages?.[0]?.message;
    expect(Buffer.from(m!.data as Uint8Array).toString()).toBe('poison');
    expect(m?.attributes).toMatchObject({
      a: 'b',
      CloudPubSubDeadLetterSourceDeliveryCount: '5',
      CloudPubSubDeadLetterSourceSubscription: sub.name.split('/').pop(),
      CloudPubSubDeadLetterSourceSubscriptionProject: PROJECT,
    });
    await subClient.close();
    await sub.delete();
    await failing.close();
  });

  it('with noWrapper, POSTs the bare data and, asked to, the metadata as headers', async () => {
    const ep = await pushEndpoint(() => 204);
    const t = id('bare');
    const [topic] = await ps.createTopic(t);
    const [sub] = await topic.createSubscription(id('bare-sub'), {
      pushConfig: { pushEndpoint: `${ep.url}/bare`, noWrapper: { writeMetadata: true } },
    });
    const msgId = await topic.publishMessage({
      data: Buffer.from('raw bytes'),
      attributes: { color: 'blue' },
    });
    await until(() => ep.received.length === 1, 5_000, 'one push');
    const r = ep.received[0]!;
    expect(r.body).toBe('raw bytes');
    expect(r.headers).toMatchObject({
      'x-goog-pubsub-message-id': msgId,
      'x-goog-pubsub-subscription-name': sub.name,
      color: 'blue',
    });
    await sub.delete();
    await ep.close();
  });

  it('keeps ordering keys in order: the next message of a key waits until the previous one is acked', async () => {
    const seen: string[] = [];
    const ep = await pushEndpoint((r) => {
      const d = Buffer.from(JSON.parse(r.body).message.data, 'base64').toString();
      seen.push(d);
      return d === 'k-1' && seen.filter((x) => x === 'k-1').length === 1 ? 500 : 204;
    });
    const t = id('ordered');
    const [topic] = await ps.createTopic(t);
    const [sub] = await topic.createSubscription(id('ordered-sub'), {
      pushConfig: { pushEndpoint: `${ep.url}/push` },
      enableMessageOrdering: true,
      retryPolicy: { minimumBackoff: { seconds: 1 }, maximumBackoff: { seconds: 1 } },
    });
    const ordered = ps.topic(t, { messageOrdering: true });
    for (let i = 1; i <= 3; i++)
      await ordered.publishMessage({ data: Buffer.from(`k-${i}`), orderingKey: 'k' });
    await until(() => emu.state.subscriptions.get(sub.name)!.backlog.length === 0, 5_000, 'drain');
    expect(seen).toEqual(['k-1', 'k-1', 'k-2', 'k-3']);
    await sub.delete();
    await ep.close();
  });

  it('injected faults reach the client as gRPC statuses: UNAVAILABLE is retried, PERMISSION_DENIED is not', async () => {
    const t = id('faulty');
    const [topic] = await ps.createTopic(t);
    const before = emu.requestCounts.Publish ?? 0;
    emu.faults.failNext('Publish', status.UNAVAILABLE, 2);
    expect(await topic.publishMessage({ data: Buffer.from('x') })).toMatch(/^\d+$/);
    expect((emu.requestCounts.Publish ?? 0) - before).toBe(3);
    emu.faults.failNext('GetTopic', status.PERMISSION_DENIED, 1);
    const e = await rejectionOf(topic.getMetadata());
    expect(e.code).toBe(status.PERMISSION_DENIED);
  });
});

describe('out of process', () => {
  it('runs as `node dist/test/emulators/gcp-pubsub/main.js --port P` for PUBSUB_EMULATOR_HOST', async () => {
    const main = join(process.cwd(), 'dist/test/emulators/gcp-pubsub/main.js');
    if (!existsSync(main)) throw new Error('dist/ is missing: run `npm run build` first');
    const child = spawn(process.execPath, [main, '--port', '0', '--control-port', '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (b: Buffer) => resolve(b.toString()));
        child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)));
      });
      const host = /listening on (127\.0\.0\.1:\d+)/.exec(line)?.[1];
      expect(host).toBeTruthy();
      const { PubSub } = await import('@google-cloud/pubsub');
      const saved = process.env.PUBSUB_EMULATOR_HOST;
      process.env.PUBSUB_EMULATOR_HOST = host;
      const remote = new PubSub({ projectId: PROJECT });
      if (saved === undefined) delete process.env.PUBSUB_EMULATOR_HOST;
      else process.env.PUBSUB_EMULATOR_HOST = saved;
      const [topic] = await remote.createTopic('remote-topic');
      expect(await topic.publishMessage({ data: Buffer.from('hi') })).toMatch(/^\d+$/);
      await remote.close();
      const control = /control API at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)?.[1];
      const counts = (await (await fetch(`${control}/requests`)).json()) as { counts: object };
      expect(counts.counts).toMatchObject({ CreateTopic: 1, Publish: 1 });
    } finally {
      child.kill('SIGTERM');
    }
  });
});

function insecure() {
  return grpc.credentials.createInsecure();
}
