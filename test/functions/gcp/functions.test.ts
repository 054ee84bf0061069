/**
 * The built Google Cloud Functions bundle (dist/gcp), each function in its own Functions
 * Framework server, on the Cloud KMS and Pub/Sub emulators and a real PostgreSQL (rekey's
 * state and the application's DEK table). Cloud Scheduler is a publish to the cycle topic; the
 * cycle's shards reach the worker through a push subscription (the raw push envelope, which the
 * framework turns into the messagePublished CloudEvent Eventarc would deliver).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PubSub, v1 } from '@google-cloud/pubsub';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { type GcpKmsRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import { GcpKmsProvider, gcpEndpointOptions } from '../../../shared/providers/gcp/GcpKmsProvider.js';
import { PostgresDekStore } from '../../../shared/stores/postgres/PostgresDekStore.js';
import { PostgresStateStore } from '../../../shared/stores/postgres/PostgresStateStore.js';
import { type GcpKmsEmulator, startGcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { type PubSubEmulator, startPubSubEmulator } from '../../emulators/gcp-pubsub/index.js';
import { type PgCluster, startPostgres } from '../../support/postgres.js';
import {
  type FunctionServer,
  messagePublished,
  postCloudEvent,
  requireBundle,
  startFunction,
  until,
} from './harness.js';

process.env.METADATA_SERVER_DETECTION = 'none';

const PROJECT = 'rekey-test';
const LOCATION = 'europe-west1';
const topic = (t: string) => `projects/${PROJECT}/topics/${t}`;
const subscription = (s: string) => `projects/${PROJECT}/subscriptions/${s}`;
const DEKS = 300;
const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };

let pg: PgCluster;
let kms: GcpKmsEmulator;
let pubsub: PubSubEmulator;
let ps: PubSub;
let puller: v1.SubscriberClient;
let provider: GcpKmsProvider;
let store: PostgresDekStore;
let state: PostgresStateStore;
let dir: string;
let env: Record<string, string>;
let ref: GcpKmsRef;
const plaintexts = new Map<string, Buffer>();
const fns: Record<string, FunctionServer> = {};

async function seed(prefix: string, n: number): Promise<void> {
  const recs: DekRecord[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${String(i).padStart(5, '0')}`;
    const pt = randomBytes(32);
    plaintexts.set(id, Buffer.from(pt));
    const w = await provider.wrap(ref, pt, { id });
    pt.fill(0);
    recs.push({ id, keyRef: ref.uri, version: w.version, wrapped: w.ciphertext, context: { id } });
  }
  await store.insertMany(recs);
}

async function pullAll(sub: string) {
  const out: Array<{ data: string; attributes: Record<string, string> }> = [];
  for (;;) {
    const [r] = await puller.pull({ subscription: sub, maxMessages: 100, returnImmediately: true });
    const got = r.receivedMessages ?? [];
    if (got.length === 0) return out;
    await puller.acknowledge({ subscription: sub, ackIds: got.map((m) => m.ackId!) });
    for (const m of got) {
      out.push({
        data: Buffer.from(m.message!.data as Uint8Array).toString(),
        attributes: (m.message!.attributes ?? {}) as Record<string, string>,
      });
    }
  }
}

const backlog = (sub: string) => pubsub.state.subscriptions.get(sub)?.backlog.length ?? -1;
const metricSum = (f: FunctionServer, name: string) =>
  f.logs
    .filter((l) => (l.metric as { name?: string } | undefined)?.name === name)
    .reduce((a, l) => a + Number((l.metric as { value: number }).value), 0);

async function versions() {
  const k = await provider.getKey(ref);
  return { primary: k.primaryVersion, states: Object.fromEntries(k.versions.map((v) => [v.id, v.state])) };
}

async function lostDeks(): Promise<string[]> {
  const bad: string[] = [];
  for (const [id, pt] of plaintexts) {
    const d = await store.get(id);
    if (!d) {
      bad.push(`${id}: missing`);
      continue;
    }
    const got = await provider.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
    if (!Buffer.from(got).equals(pt)) bad.push(`${id}: differs`);
    got.fill(0);
  }
  return bad;
}

beforeAll(async () => {
  requireBundle();
  pg = await startPostgres();
  const appUrl = await pg.createDatabase('app');
  // Keys made "200 days ago" are due for rotation under a 90-day policy.
  kms = await startGcpKmsEmulator({ startTime: new Date(Date.now() - 200 * 86_400_000) });
  pubsub = await startPubSubEmulator({ timeScale: 0.05 });
  ps = new PubSub({ projectId: PROJECT, apiEndpoint: pubsub.host });
  puller = new v1.SubscriberClient({
    apiEndpoint: pubsub.endpoint.host,
    port: pubsub.endpoint.port,
    sslCreds: grpc.credentials.createInsecure(),
  });
  const endpoint = `127.0.0.1:${kms.endpoint.port}`;
  provider = new GcpKmsProvider({
    id: 'gcp',
    projects: [PROJECT],
    locations: [LOCATION],
    keyRings: ['app-keys'],
    ...gcpEndpointOptions(endpoint),
    clock: kms.clock,
  });
  ref = parseKeyRef((await provider.createKey({ name: 'orders-kek' })).ref) as GcpKmsRef;
  store = new PostgresDekStore({ id: 'orders', url: appUrl, table: 'data_keys', columns: COLUMNS });
  await store.ensureTable();
  await seed('order', DEKS);
  kms.clock.set(new Date());

  dir = mkdtempSync(join(tmpdir(), 'rekey-gcp-fn-'));
  const config = join(dir, 'rekey.yaml');
  writeFileSync(
    config,
    `version: 1
providers:
  gcp: { type: gcp-kms, projects: [${PROJECT}], locations: [${LOCATION}], keyRings: [app-keys], endpoint: "${endpoint}" }
stores:
  orders:
    type: postgres
    url: env:APP_DB_URL
    table: data_keys
    columns: { id: id, key: kek_ref, version: kek_version, wrapped: wrapped_dek, context: aad }
policies:
  - name: orders
    match: { provider: [gcp] }
    rotate: { every: P90D, mode: rekey }
    rewrap: { stores: [orders], verify: full, batchSize: 50 }
    retire: { disableAfter: P0D }
`,
  );
  for (const t of ['rekey-cycle', 'rekey-rewrap', 'rekey-rewrap-dead', 'rekey-events'])
    await ps.createTopic(t);
  env = {
    REKEY_CONFIG: config,
    REKEY_STATE_URL: pg.url,
    APP_DB_URL: appUrl,
    PUBSUB_EMULATOR_HOST: pubsub.host,
    REKEY_REWRAP_TOPIC: topic('rekey-rewrap'),
    REKEY_EVENTS_TOPIC: topic('rekey-events'),
    REKEY_SHARDS: '3',
  };
  const [cycle, rewrap, keyEvents] = await Promise.all([
    startFunction('rekeyCycle', env),
    startFunction('rekeyRewrap', env),
    startFunction('rekeyKeyEvents', env),
  ]);
  Object.assign(fns, { cycle, rewrap, keyEvents });
  // What infra/gcp/main.tf sets up, with the push endpoints on the local function servers.
  await ps.topic('rekey-cycle').createSubscription('rekey-cycle-push', {
    pushConfig: { pushEndpoint: `${cycle!.url}/${topic('rekey-cycle')}` },
    ackDeadlineSeconds: 600,
  });
  await ps.topic('rekey-rewrap').createSubscription('rekey-rewrap-push', {
    pushConfig: { pushEndpoint: `${rewrap!.url}/${topic('rekey-rewrap')}` },
    ackDeadlineSeconds: 300,
    retryPolicy: { minimumBackoff: { seconds: 1 }, maximumBackoff: { seconds: 10 } },
    deadLetterPolicy: { deadLetterTopic: topic('rekey-rewrap-dead'), maxDeliveryAttempts: 10 },
  });
  await ps.topic('rekey-rewrap-dead').createSubscription('rekey-rewrap-dead-pull');
  await ps.topic('rekey-events').createSubscription('rekey-events-pull');
  state = await PostgresStateStore.open({ url: pg.url });
}, 180_000);

afterAll(async () => {
  await Promise.all(Object.values(fns).map((f) => f.stop()));
  await state?.close();
  await store?.close();
  await provider?.close();
  await puller?.close();
  await ps?.close();
  await pubsub?.close();
  await kms?.close();
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('scheduled cycle through Pub/Sub', () => {
  it('rotates, fans re-wraps out to the worker until drained, then retires the old version', async () => {
    const cycleSub = subscription('rekey-cycle-push');
    const rewrapSub = subscription('rekey-rewrap-push');
    await ps.topic('rekey-cycle').publishMessage({ data: Buffer.from('{}') }); // Cloud Scheduler's tick
    await until(() => pubsub.stats(cycleSub)!.acked === 1, 60_000, 'the first cycle');
    const first = fns.cycle!.logs.find((l) => l.message === 'cycle applied')!;
    const report = first.report as { queued: number; outcomes: Array<{ type: string; status: string }> };
    expect(report.queued).toBe(3);
    expect(Object.fromEntries(report.outcomes.map((o) => [o.type, o.status]))).toMatchObject({
      rotate: 'done',
      rewrap: 'awaiting_rewrap',
      disable_version: 'awaiting_rewrap',
    });
    await until(() => backlog(rewrapSub) === 0 && pubsub.stats(rewrapSub)!.acked >= 3, 60_000, 'the shards');
    expect(await store.countByVersion(ref.uri)).toEqual({ '2': DEKS });
    expect(await versions()).toEqual({ primary: '2', states: { '1': 'enabled', '2': 'enabled' } });

    await ps.topic('rekey-cycle').publishMessage({ data: Buffer.from('{"shards": 2}') });
    await until(() => pubsub.stats(cycleSub)!.acked === 2, 60_000, 'the second cycle');
    expect(await versions()).toEqual({ primary: '2', states: { '1': 'disabled', '2': 'enabled' } });
    expect(await lostDeks()).toEqual([]);

    // Every shard ran once and was acknowledged; nothing was dead-lettered.
    expect(pubsub.stats(rewrapSub)!.pushResults.every((r) => r === '204')).toBe(true);
    expect(await pullAll(subscription('rekey-rewrap-dead-pull'))).toEqual([]);

    const events = await pullAll(subscription('rekey-events-pull'));
    const types = events.map((e) => e.attributes['ce-type']);
    expect(types.filter((t) => t === 'KeyRotated')).toHaveLength(1);
    expect(types.filter((t) => t === 'RewrapCompleted')).toHaveLength(1);
    expect(types.filter((t) => t === 'VersionRetired')).toHaveLength(1);
    const completed = JSON.parse(events.find((e) => e.attributes['ce-type'] === 'RewrapCompleted')!.data);
    expect(completed).toMatchObject({
      keyRef: ref.uri,
      toVersion: '2',
      rewrapped: DEKS,
      failed: 0,
      verified: DEKS,
    });

    // Metrics as log entries (log-based metrics in Cloud Monitoring), the key ref outside the labels.
    expect(metricSum(fns.rewrap!, 'rekey.rewrap.rewrapped')).toBe(DEKS);
    const point = fns.rewrap!.logs.find(
      (l) => (l.metric as { name?: string })?.name === 'rekey.rewrap.rewrapped',
    )!;
    expect(point.metric).toMatchObject({
      dimensions: { runtime: 'gcp', store: 'orders', provider: 'gcp-kms' },
    });
    expect(point.properties).toMatchObject({ keyRef: ref.uri });
    expect(metricSum(fns.cycle!, 'rekey.cycle.rotated')).toBe(1);

    expect((await verifyAuditChain(state)).ok).toBe(true);
    const audit = await state.auditRead(1, 1000);
    expect(audit.filter((a) => a.action === 'rewrap.completed')).toHaveLength(1);
    expect(new Set(audit.map((a) => a.actor))).toContain('gcp:rekeyRewrap');

    // Nothing secret in any log line: no DEK, no database password.
    const all = JSON.stringify([fns.cycle!.logs, fns.rewrap!.logs, fns.cycle!.text, fns.rewrap!.text]);
    expect(all).not.toContain(pg.password);
    for (const pt of [...plaintexts.values()].slice(0, 20)) expect(all).not.toContain(pt.toString('base64'));
  }, 180_000);
});

describe('re-wrap worker, CloudEvents posted directly', () => {
  it('acknowledges malformed messages without work, in binary and structured mode', async () => {
    const f = fns.rewrap!;
    const before = f.logs.length;
    const bad = await postCloudEvent(f.url, messagePublished(topic('rekey-rewrap'), '{not json'));
    expect(bad.status).toBe(204);
    const wrongType = await postCloudEvent(
      f.url,
      { type: 'google.cloud.storage.object.v1.finalized', source: '//storage.googleapis.com/x', data: {} },
      'structured',
    );
    expect(wrongType.status).toBe(204);
    const noJob = await postCloudEvent(
      f.url,
      messagePublished(
        topic('rekey-rewrap'),
        JSON.stringify({
          kind: 'rewrap-shard',
          jobId: 'nope',
          providerId: 'gcp',
          verify: 'full',
          batchSize: 10,
        }),
      ),
      'structured',
    );
    expect(noJob.status).toBe(204);
    const logged = f.logs.slice(before).filter((l) => l.severity === 'ERROR');
    expect(logged.map((l) => (l.error as { message: string }).message)).toEqual([
      're-wrap message: body is not JSON',
      expect.stringContaining('is not google.cloud.pubsub.topic.v1.messagePublished'),
      expect.stringMatching(/nope.*not found/),
    ]);
  });

  it('fails the invocation while another worker holds the shard, so Pub/Sub redelivers it', async () => {
    // Park the worker's push subscription, rotate, and let a cycle queue new shards.
    const rewrapSub = subscription('rekey-rewrap-push');
    const parked = subscription('rekey-rewrap-parked');
    await ps.topic('rekey-rewrap').createSubscription('rekey-rewrap-parked');
    await puller.modifyPushConfig({ subscription: rewrapSub, pushConfig: {} });
    await provider.rotate(ref); // native rotation: version 3
    const cycled = await postCloudEvent(
      fns.cycle!.url,
      messagePublished(topic('rekey-cycle'), '{"shards": 2}'),
      'structured',
    );
    expect(cycled.status).toBe(204);
    const shards = await pullAll(parked);
    expect(shards).toHaveLength(2);
    await pullAll(rewrapSub);
    const [held, other] = shards.map((s) => s.data);
    const jobId = JSON.parse(held!).jobId as string;
    expect(await state.acquireLease(`rewrap:${jobId}`, 'elsewhere:1:worker', 60_000, Date.now())).toBe(true);

    const busy = await postCloudEvent(fns.rewrap!.url, messagePublished(topic('rekey-rewrap'), held!));
    expect(busy.status).toBe(500);
    expect(
      fns.rewrap!.logs.some((l) => l.message === 'shard held by another worker: redelivery requested'),
    ).toBe(true);

    await state.releaseLease(`rewrap:${jobId}`, 'elsewhere:1:worker');
    for (const body of [held!, other!]) {
      const ok = await postCloudEvent(fns.rewrap!.url, messagePublished(topic('rekey-rewrap'), body));
      expect(ok.status).toBe(204);
    }
    expect(await store.countByVersion(ref.uri)).toEqual({ '3': DEKS });
    expect(await lostDeks()).toEqual([]);
    await ps.subscription('rekey-rewrap-parked').delete();
  }, 120_000);
});

describe('Cloud KMS audit-log events (Eventarc)', () => {
  const auditEvent = (method: string, data: Record<string, unknown> = {}) => ({
    type: 'google.cloud.audit.log.v1.written',
    source: `//cloudaudit.googleapis.com/projects/${PROJECT}/logs/activity`,
    subject: `cloudkms.googleapis.com/${ref.name}`,
    methodname: method,
    servicename: 'cloudkms.googleapis.com',
    resourcename: ref.name,
    data: {
      insertId: randomBytes(6).toString('hex'),
      logName: `projects/${PROJECT}/logs/cloudaudit.googleapis.com%2Factivity`,
      protoPayload: {
        '@type': 'type.googleapis.com/google.cloud.audit.AuditLog',
        serviceName: 'cloudkms.googleapis.com',
        methodName: method,
        resourceName: ref.name,
        status: {},
        ...data,
      },
      resource: { type: 'cloudkms_cryptokey', labels: { project_id: PROJECT, location: LOCATION } },
      timestamp: new Date().toISOString(),
      severity: 'NOTICE',
    },
  });

  it('re-wraps the DEKs to the new primary after CreateCryptoKeyVersion (automatic rotation)', async () => {
    const v = await provider.rotate(ref);
    const res = await postCloudEvent(
      fns.keyEvents!.url,
      auditEvent('CreateCryptoKeyVersion', { response: { name: `${ref.name}/cryptoKeyVersions/${v.id}` } }),
    );
    expect(res.status).toBe(204);
    expect(await store.countByVersion(ref.uri)).toEqual({ [v.id]: DEKS });
    const line = fns.keyEvents!.logs.find((l) => l.message === 'key event rewrapped')!;
    expect(line).toMatchObject({ keyRef: ref.uri, outcome: 'rewrapped' });
    expect(await lostDeks()).toEqual([]);
    expect(metricSum(fns.keyEvents!, 'rekey.rewrap.rewrapped')).toBe(DEKS);
  }, 120_000);

  it('ignores other methods and failed calls; refuses malformed entries without retry', async () => {
    const before = fns.keyEvents!.logs.length;
    const other = await postCloudEvent(fns.keyEvents!.url, auditEvent('Decrypt'), 'structured');
    const failed = await postCloudEvent(
      fns.keyEvents!.url,
      auditEvent('UpdateCryptoKeyPrimaryVersion', { status: { code: 7, message: 'denied' } }),
    );
    const malformed = await postCloudEvent(fns.keyEvents!.url, {
      ...auditEvent('CreateCryptoKeyVersion'),
      data: {
        protoPayload: {
          serviceName: 'cloudkms.googleapis.com',
          methodName: 'CreateCryptoKeyVersion',
          resourceName: 'projects/x',
        },
      },
    });
    expect([other.status, failed.status, malformed.status]).toEqual([204, 204, 204]);
    const lines = fns.keyEvents!.logs.slice(before);
    expect(lines.map((l) => [l.severity, l.message])).toEqual([
      ['INFO', 'audit log entry ignored'],
      ['INFO', 'audit log entry ignored'],
      ['ERROR', 'audit log event refused'],
    ]);
    expect((lines[2]!.error as { message: string }).message).toMatch(
      /resourceName must name a Cloud KMS crypto key/,
    );
  });
});

describe('deployment settings', () => {
  it('a function without REKEY_STATE_URL fails its invocations with a message naming it', async () => {
    const { REKEY_STATE_URL: _, ...rest } = env;
    const f = await startFunction('rekeyRewrap', rest);
    try {
      const body = JSON.stringify({
        kind: 'rewrap-shard',
        jobId: 'x',
        providerId: 'gcp',
        verify: 'full',
        batchSize: 10,
      });
      const res = await postCloudEvent(f.url, messagePublished(topic('rekey-rewrap'), body));
      expect(res.status).toBe(500);
      await until(
        () =>
          f.text.some((t) => /REKEY_STATE_URL/.test(t)) ||
          f.logs.some((l) => /REKEY_STATE_URL/.test(JSON.stringify(l))),
        5_000,
        'the error',
      );
    } finally {
      await f.stop();
    }
  });

  it('a config naming an adapter the GCP build leaves out fails with a message saying so', async () => {
    const config = join(dir, 'aws.yaml');
    writeFileSync(
      config,
      `version: 1
providers:
  aws: { type: aws-kms, regions: [eu-west-1] }
policies:
  - name: all
    match: {}
    rotate: { every: P90D }
`,
    );
    const f = await startFunction('rekeyCycle', { ...env, REKEY_CONFIG: config });
    try {
      const res = await postCloudEvent(f.url, messagePublished(topic('rekey-cycle'), '{}'));
      expect(res.status).toBe(500);
      await until(
        () => f.text.some((t) => /aws-kms is not part of the Google Cloud Functions build of rekey/.test(t)),
        5_000,
        'the error',
      );
    } finally {
      await f.stop();
    }
  });
});
