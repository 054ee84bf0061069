/**
 * The built bundle's governance functions (dist/gcp), each in its own Functions Framework
 * server, on the Cloud KMS and Pub/Sub emulators and PostgreSQL: rekeyCompromise contains a key
 * from a signed key.compromised event published to the incidents topic and pushed to it, refuses
 * everything else with nothing changed, and fails (for redelivery) while an incident stays open;
 * rekeyApprovals serves the approvals API over HTTP, composed without any key or DEK store;
 * rekeyCosts writes the cost metrics.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PubSub, v1 } from '@google-cloud/pubsub';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { type CloudEvent, COMPROMISE_EVENT_TYPE } from '../../../shared/core/domain/compromiseEvent.js';
import { type GcpKmsRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { HmacEventSigner } from '../../../shared/core/governance/signature.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import { mintApproverToken } from '../../../shared/governance/tokens.js';
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
const DEKS = 120;
const SOURCE = 'https://siem.example.com/rules/kms';
const INCIDENT_SECRET = 'incident-signing-secret-for-the-gcp-test-0123456';
const TOKEN_SECRET = 'approver-token-secret-for-the-gcp-test-78901234';
const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };
type Name = 'payments' | 'ledger' | 'vault';

let pg: PgCluster;
let kms: GcpKmsEmulator;
let pubsub: PubSubEmulator;
let ps: PubSub;
let puller: v1.SubscriberClient;
let provider: GcpKmsProvider;
let store: PostgresDekStore;
let state: PostgresStateStore;
let dir: string;
const refs = {} as Record<Name, GcpKmsRef>;
const plaintexts = new Map<string, { name: Name; pt: Buffer }>();
const fns: Record<string, FunctionServer> = {};
const signer = new HmacEventSigner(Buffer.from(INCIDENT_SECRET));

async function seed(name: Name, labels: Record<string, string> = {}): Promise<void> {
  refs[name] = parseKeyRef((await provider.createKey({ name, tags: labels })).ref) as GcpKmsRef;
  const recs: DekRecord[] = [];
  for (let i = 0; i < DEKS; i++) {
    const id = `${name}-${String(i).padStart(5, '0')}`;
    const pt = randomBytes(32);
    plaintexts.set(id, { name, pt: Buffer.from(pt) });
    const w = await provider.wrap(refs[name], pt, { id });
    pt.fill(0);
    recs.push({ id, keyRef: refs[name].uri, version: w.version, wrapped: w.ciphertext, context: { id } });
  }
  await store.insertMany(recs);
}

async function versions(name: Name) {
  const k = await provider.getKey(refs[name]);
  return { primary: k.primaryVersion, states: Object.fromEntries(k.versions.map((v) => [v.id, v.state])) };
}

async function lostDeks(name: Name): Promise<string[]> {
  const bad: string[] = [];
  for (const [id, { name: n, pt }] of plaintexts) {
    if (n !== name) continue;
    const d = (await store.get(id))!;
    const got = await provider.unwrap(refs[name], { version: d.version, ciphertext: d.wrapped }, d.context);
    if (!Buffer.from(got).equals(pt)) bad.push(id);
    got.fill(0);
  }
  return bad;
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

function compromise(name: Name, version: string, over: Partial<CloudEvent> = {}): CloudEvent {
  return {
    specversion: '1.0',
    type: COMPROMISE_EVENT_TYPE,
    source: SOURCE,
    id: randomUUID(),
    time: new Date(Date.now() - 30_000).toISOString(),
    datacontenttype: 'application/json',
    data: { keyRef: refs[name].uri, version, reason: 'seen in a heap dump', reportedBy: 'siem:rule-4711' },
    ...over,
  };
}

/** A CloudEvent as a Pub/Sub message in structured mode. */
const structured = (e: CloudEvent) => ({
  data: Buffer.from(JSON.stringify(e)),
  attributes: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
});

/** The same CloudEvent in binary mode: context attributes as ce-* attributes, data as the body. */
function binary(e: CloudEvent) {
  const attributes: Record<string, string> = { 'content-type': 'application/json' };
  for (const [k, v] of Object.entries(e))
    if (k !== 'data' && k !== 'datacontenttype') attributes[`ce-${k}`] = String(v);
  return { data: Buffer.from(JSON.stringify(e.data)), attributes };
}

/** Posts a Pub/Sub message to the compromise function as Eventarc would deliver it. */
const deliver = (m: { data: Buffer; attributes: Record<string, string> }) =>
  postCloudEvent(fns.compromise!.url, messagePublished(topic('rekey-compromise'), m.data, m.attributes));

/** The entries a function logged that match, once there are at least `n` (stdout arrives on its own time). */
function logged(f: FunctionServer, match: (l: Record<string, unknown>) => boolean, n = 1) {
  return until(
    () => {
      const found = f.logs.filter(match);
      return found.length >= n ? found : undefined;
    },
    5_000,
    `${n} log entries of ${f.target}`,
  );
}

const snapshot = async (name: Name) => ({
  versions: await versions(name),
  deks: await store.countByVersion(refs[name].uri),
  incidents: (await state.listRecords('incident', { limit: 100 })).length,
  accepted: (await state.listRecords('incident-event', { limit: 100 })).length,
  marks: (await state.listRecords('compromised', { limit: 100 })).length,
});

beforeAll(async () => {
  requireBundle();
  pg = await startPostgres();
  const appUrl = await pg.createDatabase('app');
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
  store = new PostgresDekStore({ id: 'orders', url: appUrl, table: 'data_keys', columns: COLUMNS });
  await store.ensureTable();
  await seed('payments', { tier: 'payments' });
  await seed('ledger');
  await seed('vault');
  kms.clock.set(new Date());

  dir = mkdtempSync(join(tmpdir(), 'rekey-gcp-gov-'));
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
incidents:
  sources: [${SOURCE}]
  signing: { hmac: { secretEnv: REKEY_INCIDENT_KEY } }
approvals:
  approvers: [sec-alice, sec-bob, ops-carol]
  quorum: 2
  expiry: P1D
  tokens: { hmac: { secretEnv: REKEY_APPROVAL_TOKEN_KEY } }
policies:
  - name: payments
    match: { provider: [gcp], tags: { tier: payments } }
    rotate: { every: P90D, mode: rekey }
    rewrap: { stores: [orders], verify: full, batchSize: 40 }
    retire: { disableAfter: P0D, destroyAfter: P0D, destroyDelay: P30D, approvals: 2 }
  - name: others
    match: { provider: [gcp] }
    rotate: { every: P1Y, mode: rekey }
    rewrap: { stores: [orders], verify: full, batchSize: 40 }
`,
  );
  for (const t of [
    'rekey-cycle',
    'rekey-rewrap',
    'rekey-events',
    'rekey-compromise',
    'rekey-compromise-dead',
  ])
    await ps.createTopic(t);
  const base = {
    REKEY_CONFIG: config,
    REKEY_STATE_URL: pg.url,
    PUBSUB_EMULATOR_HOST: pubsub.host,
    REKEY_EVENTS_TOPIC: topic('rekey-events'),
    REKEY_SHARDS: '2',
  };
  const [cycle, rewrap, compromiseFn, approvals, costs] = await Promise.all([
    startFunction('rekeyCycle', { ...base, APP_DB_URL: appUrl, REKEY_REWRAP_TOPIC: topic('rekey-rewrap') }),
    startFunction('rekeyRewrap', { ...base, APP_DB_URL: appUrl }),
    startFunction('rekeyCompromise', { ...base, APP_DB_URL: appUrl, REKEY_INCIDENT_KEY: INCIDENT_SECRET }),
    // What Terraform gives the approvals function: the state and the token secret, no DEK store.
    startFunction(
      'rekeyApprovals',
      { REKEY_CONFIG: config, REKEY_STATE_URL: pg.url, REKEY_APPROVAL_TOKEN_KEY: TOKEN_SECRET },
      'http',
    ),
    startFunction('rekeyCosts', { ...base, APP_DB_URL: appUrl }),
  ]);
  Object.assign(fns, { cycle, rewrap, compromise: compromiseFn, approvals, costs });
  await ps.topic('rekey-rewrap').createSubscription('rekey-rewrap-push', {
    pushConfig: { pushEndpoint: `${rewrap!.url}/${topic('rekey-rewrap')}` },
    ackDeadlineSeconds: 300,
  });
  // What infra/gcp/main.tf sets up for incidents: a push subscription with retries and dead letters.
  await ps.topic('rekey-compromise').createSubscription('rekey-compromise-push', {
    pushConfig: { pushEndpoint: `${compromiseFn!.url}/${topic('rekey-compromise')}` },
    ackDeadlineSeconds: 600,
    retryPolicy: { minimumBackoff: { seconds: 1 }, maximumBackoff: { seconds: 10 } },
    deadLetterPolicy: { deadLetterTopic: topic('rekey-compromise-dead'), maxDeliveryAttempts: 5 },
  });
  await ps.topic('rekey-compromise-dead').createSubscription('rekey-compromise-dead-hold');
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

describe('rekeyCompromise (incidents topic, push)', () => {
  const push = subscription('rekey-compromise-push');
  let handled: CloudEvent;

  it('a signed event published to the topic contains the key: rotated, DEKs re-wrapped and verified, version disabled', async () => {
    handled = signer.sign(compromise('ledger', '1'));
    await ps.topic('rekey-compromise').publishMessage(structured(handled));
    await until(() => pubsub.stats(push)!.acked === 1, 60_000, 'the event to be handled');
    expect(await versions('ledger')).toEqual({ primary: '2', states: { '1': 'disabled', '2': 'enabled' } });
    expect(await store.countByVersion(refs.ledger.uri)).toEqual({ '2': DEKS });
    expect(await lostDeks('ledger')).toEqual([]);
    const [line] = await logged(fns.compromise!, (l) => l.message === 'compromise event handled');
    expect(line).toMatchObject({
      severity: 'NOTICE',
      eventId: handled.id,
      source: SOURCE,
      transport: 'pubsub',
      incident: {
        keyRef: refs.ledger.uri,
        version: '1',
        status: 'contained',
        newVersion: '2',
        deksMoved: DEKS,
      },
    });
    const [incident] = await state.listRecords('incident', { limit: 10 });
    expect(incident!.body).toMatchObject({
      status: 'contained',
      origin: { source: SOURCE, eventId: handled.id },
      stores: { orders: { rewrapped: DEKS, verified: DEKS, failed: 0 } },
    });
    const types = (await pullAll(subscription('rekey-events-pull'))).map((e) => e.attributes['ce-type']);
    expect(types).toEqual(expect.arrayContaining(['KeyRotated', 'VersionRetired', 'CompromiseContained']));
    expect((await verifyAuditChain(state)).ok).toBe(true);
    const all = JSON.stringify([fns.compromise!.logs, fns.compromise!.text]);
    for (const secret of [INCIDENT_SECRET, pg.password, handled.rekeysignature as string])
      expect(all).not.toContain(secret);
  }, 120_000);

  it('the same event again, in binary mode, is acknowledged and changes nothing', async () => {
    const before = await snapshot('ledger');
    await ps.topic('rekey-compromise').publishMessage(binary(handled));
    await until(() => pubsub.stats(push)!.acked === 2, 60_000, 'the redelivery');
    expect(await snapshot('ledger')).toEqual(before);
    expect(await logged(fns.compromise!, (l) => l.message === 'compromise event duplicate')).toHaveLength(1);
    expect(await pullAll(subscription('rekey-events-pull'))).toEqual([]);
  });

  it('refuses forged, unsigned, foreign, reused-id and malformed events: acknowledged, nothing changed', async () => {
    const before = await snapshot('payments');
    const auditBefore = (await state.auditTail())!.seq;
    const tampered = signer.sign(compromise('payments', '1'));
    (tampered.data as { reason: string }).reason = 'edited after signing';
    const cases: { data: Buffer; attributes: Record<string, string> }[] = [
      structured(compromise('payments', '1')),
      structured(
        new HmacEventSigner(Buffer.from('some-other-secret-of-sufficient-length-00')).sign(
          compromise('payments', '1'),
        ),
      ),
      structured(tampered),
      binary(signer.sign(compromise('payments', '1', { source: 'https://attacker.example.com' }))),
      structured(signer.sign(compromise('payments', '1', { id: handled.id }))),
      structured({ ...signer.sign(compromise('payments', '1')), time: undefined } as unknown as CloudEvent),
      { data: Buffer.from('{"hello": "world"}'), attributes: {} },
    ];
    for (const c of cases) expect((await deliver(c)).status).toBe(204);
    // Through the topic too: acknowledged at once, never dead-lettered.
    await ps.topic('rekey-compromise').publishMessage(structured(compromise('payments', '1')));
    await until(() => pubsub.stats(push)!.acked === 3, 60_000, 'the refused event');
    const refusals = (await logged(fns.compromise!, (l) => l.message === 'compromise event refused', 8)).map(
      (l) => l.refusal,
    );
    expect(refusals).toEqual([
      'signature',
      'signature',
      'signature',
      'source',
      'replayed',
      'malformed',
      'malformed',
      'signature',
    ]);
    expect(await snapshot('payments')).toEqual(before);
    const audit = await state.auditRead(auditBefore + 1, 100);
    expect(audit.map((a) => a.action)).toEqual(Array(7).fill('incident.event_refused'));
    expect(pubsub.stats(push)!.pushResults.every((r) => r === '204')).toBe(true);
    expect(await pullAll(subscription('rekey-compromise-dead-hold'))).toEqual([]);
  }, 120_000);

  it('an incident that cannot be contained yet fails the delivery; the redelivery resumes and contains it', async () => {
    // One DEK whose ciphertext no longer opens: it cannot be moved, so the version stays enabled.
    const victim = 'vault-00007';
    const original = (await store.get(victim))!;
    const broken = Buffer.from(original.wrapped);
    broken[broken.length - 1]! ^= 0xff;
    expect(await store.replace(victim, broken, original.version, original.wrapped)).toBe(true);
    const event = messagePublished(
      topic('rekey-compromise'),
      structured(signer.sign(compromise('vault', '1'))).data,
      {
        'content-type': 'application/cloudevents+json',
      },
    );
    const first = await postCloudEvent(fns.compromise!.url, event);
    expect(first.status).toBe(500);
    expect((await versions('vault')).states['1']).toBe('enabled');
    expect(await store.countByVersion(refs.vault.uri)).toEqual({ '1': 1, '2': DEKS - 1 });
    const [open] = await logged(
      fns.compromise!,
      (l) => l.message === 'compromise event handled' && l.severity === 'ERROR',
    );
    expect(open!.incident).toMatchObject({ status: 'open', keyRef: refs.vault.uri });

    // The application's copy is restored; Pub/Sub delivers the event again.
    expect(await store.replace(victim, original.wrapped, original.version, broken)).toBe(true);
    const again = await postCloudEvent(fns.compromise!.url, event);
    expect(again.status).toBe(204);
    expect(await versions('vault')).toEqual({ primary: '2', states: { '1': 'disabled', '2': 'enabled' } });
    expect(await lostDeks('vault')).toEqual([]);
    const incidents = (await state.listRecords('incident', { limit: 10 })).map(
      (r) => r.body as { keyRef: string; runs: number; status: string },
    );
    expect(incidents.find((i) => i.keyRef === refs.vault.uri)).toMatchObject({
      status: 'contained',
      runs: 2,
    });
    await pullAll(subscription('rekey-events-pull'));
  }, 120_000);
});

describe('rekeyApprovals (HTTP)', () => {
  let requestId: string;
  const token = (identity: string, key = TOKEN_SECRET) =>
    mintApproverToken({ key: Buffer.from(key), alg: 'HS256', identity, now: new Date(), ttlSeconds: 600 });
  async function api(path: string, opts: { method?: string; token?: string; body?: unknown } = {}) {
    const res = await fetch(`${fns.approvals!.url}${path}`, {
      method: opts.method ?? 'GET',
      headers: {
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : null };
  }
  const cycle = async () => {
    const res = await postCloudEvent(
      fns.cycle!.url,
      messagePublished(topic('rekey-cycle'), '{}'),
      'structured',
    );
    expect(res.status).toBe(204);
  };

  it('a destroy in the plan opens a request once the version is retired', async () => {
    const rewrapSub = subscription('rekey-rewrap-push');
    await cycle();
    await until(
      () =>
        pubsub.stats(rewrapSub)!.acked >= 2 &&
        pubsub.state.subscriptions.get(rewrapSub)!.backlog.length === 0,
      60_000,
      'the shards',
    );
    expect(await store.countByVersion(refs.payments.uri)).toEqual({ '2': DEKS });
    await cycle();
    expect(await versions('payments')).toEqual({ primary: '2', states: { '1': 'disabled', '2': 'enabled' } });
    const line = (await logged(fns.cycle!, (l) => l.message === 'cycle applied', 2)).at(-1)!;
    const outcomes = (line.report as { outcomes: { type: string; status: string }[] }).outcomes;
    expect(outcomes).toContainEqual({
      type: 'schedule_destroy',
      keyRef: refs.payments.uri,
      status: 'awaiting_approval',
    });
    const [request] = await state.listRecords('approval', { limit: 10 });
    requestId = request!.id;
    expect(request!.body).toMatchObject({
      action: 'destroy',
      status: 'pending',
      requestedBy: 'gcp:rekeyCycle',
    });
  }, 120_000);

  it('answers 401 to a missing or forged token, before anything else, and changes nothing', async () => {
    const before = await state.getRecord('approval', requestId);
    const none = await api(`/approvals/${requestId}/approve`, { method: 'POST', body: {} });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="rekey-approvals"');
    const forged = await api(`/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-alice', 'a-forger-does-not-know-the-token-secret-0'),
    });
    expect(forged.status).toBe(401);
    expect(forged.json.error.code).toBe('UNAUTHENTICATED');
    expect(await state.getRecord('approval', requestId)).toEqual(before);
    const [last] = await state.auditRead((await state.auditTail())!.seq, 1);
    expect(last!.action).toBe('approval.auth_failed');
  });

  it('two approvers approve over HTTP; the next cycle schedules the destruction', async () => {
    const pending = await api('/approvals?status=pending', { token: await token('ops-carol') });
    expect(pending.status).toBe(200);
    expect(pending.json.approvals).toEqual([
      expect.objectContaining({ id: requestId, action: 'destroy', target: refs.payments.uri }),
    ]);
    const alice = await api(`/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-alice'),
      body: { comment: 'no DEK left under version 1' },
    });
    expect(alice.status).toBe(200);
    expect(alice.json.status).toBe('pending');
    const bob = await api(`/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-bob'),
    });
    expect(bob.json.status).toBe('approved');
    await cycle();
    expect((await versions('payments')).states['1']).toBe('destroy_scheduled');
    expect((await state.getRecord('approval', requestId))!.body).toMatchObject({ status: 'used' });
    expect((await verifyAuditChain(state)).ok).toBe(true);

    const lines = await logged(fns.approvals!, (l) => l.message === 'approvals request', 5);
    expect(lines.map((l) => (l.httpRequest as { status: number }).status)).toEqual([401, 401, 200, 200, 200]);
    const all = JSON.stringify([fns.approvals!.logs, fns.approvals!.text]);
    expect(all).not.toContain(TOKEN_SECRET);
    expect(all).not.toMatch(/eyJ[\w-]+\.eyJ/);
  }, 120_000);
});

describe('rekeyCosts (scheduler)', () => {
  it('writes each key cost as a metric entry, the key ref outside the labels; a bad message is refused', async () => {
    const res = await postCloudEvent(fns.costs!.url, messagePublished(topic('rekey-costs'), '{}'));
    expect(res.status).toBe(204);
    const [report] = await logged(fns.costs!, (l) => l.message === 'costs reported');
    const monthly = fns.costs!.logs.filter(
      (l) => (l.metric as { name?: string })?.name === 'rekey.cost.monthly',
    );
    expect(monthly).toHaveLength(3);
    expect(monthly.map((m) => (m.properties as { keyRef: string }).keyRef).sort()).toEqual(
      Object.values(refs)
        .map((r) => r.uri)
        .sort(),
    );
    for (const m of monthly) {
      expect((m.metric as { dimensions: Record<string, string> }).dimensions).toMatchObject({
        runtime: 'gcp',
        provider: 'gcp-kms',
      });
      expect(Object.values((m.metric as { dimensions: object }).dimensions)).not.toContain(
        (m.properties as { keyRef: string }).keyRef,
      );
    }
    expect(report!.report).toMatchObject({ keys: 3, period: new Date().toISOString().slice(0, 7) });

    const bad = await postCloudEvent(
      fns.costs!.url,
      messagePublished(topic('rekey-costs'), '{"period": "May"}'),
    );
    expect(bad.status).toBe(204);
    const [refused] = await logged(
      fns.costs!,
      (l) => l.message === 'scheduler message refused; no cost report',
    );
    expect(refused).toMatchObject({
      severity: 'ERROR',
      error: { message: 'scheduler message: period must be a month, YYYY-MM' },
    });
  });
});
