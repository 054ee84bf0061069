import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { type CloudEvent, COMPROMISE_EVENT_TYPE } from '../../../shared/core/domain/compromiseEvent.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { HmacEventSigner } from '../../../shared/core/governance/signature.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import { mintApproverToken } from '../../../shared/governance/tokens.js';
import type { AzureKeyVaultProvider } from '../../../shared/providers/azure/AzureKeyVaultProvider.js';
import { AzureTableStateStore } from '../../../shared/stores/azuretable/AzureTableStateStore.js';
import { PostgresDekStore } from '../../../shared/stores/postgres/PostgresDekStore.js';
import { EMULATOR_TOKEN } from '../../emulators/azure-keyvault/credential.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { provider as azureProvider, certificates, emulator, VAULT } from '../../integration/azure/helpers.js';
import { extraCaCertsEnv } from '../../support/azureCert.js';
import { type Azurite, startAzurite } from '../../support/azurite.js';
import { type PgCluster, startPostgres } from '../../support/postgres.js';
import { deployBuiltApp, type FunctionsHost, jsonLines, startFunctionsHost } from './functionsHost.js';
import { receiveAll, startIdentityEndpoint, timer } from './support.js';

/**
 * The built Function App's governance functions end to end, on Azurite, the Key Vault emulator
 * and PostgreSQL: `compromiseEvents` (Event Grid, both schemas) contains a key from a signed
 * key.compromised event and refuses everything else untouched; `approvals` is served over HTTP
 * as the host serves it, and two approvers' tokens let a guarded disable through on the next
 * cycle; `costReport` writes the cost metrics.
 */
const DEKS = 120;
const DAY = 86_400_000;
const SOURCE = 'https://siem.example.com/rules/kms';
const INCIDENT_SECRET = 'incident-signing-secret-for-the-azure-test-0123';
const TOKEN_SECRET = 'approver-token-secret-for-the-azure-test-456789';
const SETTINGS = {
  REKEY_STATE_TABLE: 'rekeygov',
  REKEY_WORK_QUEUE: 'rekey-gov-rewrap',
  REKEY_EVENTS_QUEUE: 'rekey-gov-events',
  REKEY_SCHEDULE: '0 0 * * * *',
  REKEY_COST_SCHEDULE: '0 0 6 * * *',
  REKEY_SHARDS: '2',
  WEBSITE_SITE_NAME: 'rekey-gov',
};

let azurite: Azurite;
let pg: PgCluster;
let emu: AzureKeyVaultEmulator;
let identity: Server;
let app: { dir: string; cleanup(): void };
let host: FunctionsHost;
let kv: AzureKeyVaultProvider;
let deks: PostgresDekStore;
let state: AzureTableStateStore;
let work: QueueClient;
let events: QueueClient;
const keys: Record<'payments' | 'ledger', { ref: string; first: string }> = {} as never;
const plaintexts = new Map<string, { keyRef: string; pt: Buffer }>();
const signer = new HmacEventSigner(Buffer.from(INCIDENT_SECRET));

beforeAll(async () => {
  [azurite, pg] = await Promise.all([startAzurite({ services: ['table', 'queue'] }), startPostgres()]);
  // Keys made 200 days ago: the payments policy (90 days) finds its key due, the ledger's (1 year) not.
  emu = await emulator({ vaults: [VAULT], now: new Date(Date.now() - 200 * DAY) });
  kv = azureProvider(emu, {
    id: 'azure-prod',
    vaults: [VAULT],
    endpoints: { [VAULT]: emu.endpoints[VAULT]! },
  });
  deks = new PostgresDekStore({
    id: 'orders',
    url: pg.url,
    table: 'public.data_keys',
    columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
  });
  await deks.ensureTable();
  for (const [name, tags] of [
    ['payments', { tier: 'payments' }],
    ['ledger', {}],
  ] as const) {
    const key = await kv.createKey({ name, tags });
    keys[name] = { ref: key.ref, first: key.primaryVersion };
    const recs: DekRecord[] = [];
    for (let i = 0; i < DEKS; i++) {
      const id = `${name}-${String(i).padStart(4, '0')}`;
      const pt = randomBytes(32);
      plaintexts.set(id, { keyRef: key.ref, pt: Buffer.from(pt) });
      const w = await kv.wrap(parseKeyRef(key.ref), pt, { row: id });
      pt.fill(0);
      recs.push({ id, keyRef: key.ref, version: w.version, wrapped: w.ciphertext, context: { row: id } });
    }
    await deks.insertMany(recs);
  }
  emu.clock.set(new Date());

  state = new AzureTableStateStore({
    table: SETTINGS.REKEY_STATE_TABLE,
    connectionString: azurite.connectionString,
  });
  await state.ensureTable();
  work = new QueueClient(azurite.connectionString, SETTINGS.REKEY_WORK_QUEUE);
  events = new QueueClient(azurite.connectionString, SETTINGS.REKEY_EVENTS_QUEUE);
  await work.create();
  await events.create();

  const identityHeader = randomBytes(16).toString('hex');
  identity = await startIdentityEndpoint(identityHeader);
  app = deployBuiltApp();
  const config = join(app.dir, 'test-rekey.yaml');
  writeFileSync(
    config,
    `version: 1
providers:
  azure-prod:
    type: azure-kv
    vaults: [${VAULT}]
    endpoints: { ${VAULT}: ${emu.endpoints[VAULT]} }
stores:
  orders:
    type: postgres
    url: env:ORDERS_DATABASE_URL
    table: public.data_keys
incidents:
  sources: [${SOURCE}]
  signing: { hmac: { secretEnv: REKEY_INCIDENT_KEY } }
  maxAge: PT1H
approvals:
  approvers: [sec-alice, sec-bob, ops-carol]
  quorum: 2
  expiry: P1D
  tokens: { hmac: { secretEnv: REKEY_APPROVAL_TOKEN_KEY } }
policies:
  - name: payments
    match: { provider: [azure-prod], tags: { tier: payments } }
    approvals: { require: [disable] }
    rotate: { every: P90D, mode: rekey }
    rewrap: { stores: [orders], verify: full, batchSize: 40 }
    retire: { disableAfter: P0D }
  - name: ledger
    match: { provider: [azure-prod] }
    rotate: { every: P1Y, mode: rekey }
    rewrap: { stores: [orders], verify: full, batchSize: 40 }
`,
  );
  host = await startFunctionsHost(app.dir, {
    ...SETTINGS,
    REKEY_STORAGE: azurite.connectionString,
    REKEY_CONFIG: config,
    ORDERS_DATABASE_URL: pg.url,
    // Key Vault references in a deployment; plain app settings here.
    REKEY_INCIDENT_KEY: INCIDENT_SECRET,
    REKEY_APPROVAL_TOKEN_KEY: TOKEN_SECRET,
    IDENTITY_ENDPOINT: `http://127.0.0.1:${(identity.address() as AddressInfo).port}/msi/token`,
    IDENTITY_HEADER: identityHeader,
    NODE_EXTRA_CA_CERTS: extraCaCertsEnv(certificates()),
  });
});

afterAll(async () => {
  await host?.stop();
  app?.cleanup();
  await deks?.close();
  await kv?.close?.();
  await emu?.close();
  await new Promise((r) => (identity ? identity.close(r) : r(undefined)));
  await Promise.all([azurite?.stop(), pg?.stop()]);
});

function compromise(keyRef: string, version: string, over: Partial<CloudEvent> = {}): CloudEvent {
  return {
    specversion: '1.0',
    type: COMPROMISE_EVENT_TYPE,
    source: SOURCE,
    id: randomUUID(),
    time: new Date(Date.now() - 30_000).toISOString(),
    datacontenttype: 'application/json',
    data: { keyRef, version, reason: 'material seen in a heap dump', reportedBy: 'siem:rule-4711' },
    ...over,
  };
}

/** The same event in the Event Grid schema, as a topic with that input schema delivers it. */
const inEventGridSchema = (e: CloudEvent) => ({
  id: randomUUID(),
  topic: '/subscriptions/0000/resourceGroups/rekey-rg/providers/Microsoft.EventGrid/topics/rekey-incidents',
  subject: 'keys/ledger',
  eventType: e.type,
  eventTime: new Date().toISOString(),
  data: e,
  dataVersion: '1.0',
  metadataVersion: '1',
});

async function versionsOf(name: 'payments' | 'ledger') {
  const k = await kv.getKey(parseKeyRef(keys[name].ref));
  return { primary: k.primaryVersion, states: Object.fromEntries(k.versions.map((v) => [v.id, v.state])) };
}

async function lostDeks(keyRef: string): Promise<string[]> {
  const bad: string[] = [];
  for (const [id, { keyRef: ref, pt }] of plaintexts) {
    if (ref !== keyRef) continue;
    const d = (await deks.get(id))!;
    const got = await kv.unwrap(parseKeyRef(ref), { version: d.version, ciphertext: d.wrapped }, d.context);
    if (!Buffer.from(got).equals(pt)) bad.push(id);
  }
  return bad;
}

const token = (identity: string, key = TOKEN_SECRET) =>
  mintApproverToken({
    key: Buffer.from(key),
    alg: 'HS256',
    identity,
    now: new Date(),
    ttlSeconds: 600,
  });

async function api(path: string, opts: { method?: string; token?: string; body?: unknown } = {}) {
  const res = await fetch(`${host.httpUrl}${path}`, {
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

describe('compromiseEvents (Event Grid)', () => {
  let handled: CloudEvent;

  it('a signed key.compromised event contains the key: rotated, its DEKs re-wrapped and verified, the version disabled', async () => {
    const { ref, first } = keys.ledger;
    handled = signer.sign(compromise(ref, first));
    // Event Grid's CloudEvents schema: the event itself, extension attributes and all.
    const r = await host.invoke('compromiseEvents', handled);
    expect(r.error).toBeUndefined();
    expect(r.result).toEqual([
      {
        eventId: handled.id,
        outcome: 'handled',
        incidentId: expect.stringMatching(/^inc-/),
        status: 'contained',
      },
    ]);
    const after = await versionsOf('ledger');
    expect(after.primary).not.toBe(first);
    expect(after.states[first]).toBe('disabled');
    expect(await deks.countByVersion(ref)).toEqual({ [after.primary]: DEKS });
    expect(await lostDeks(ref)).toEqual([]);
    const [line] = jsonLines(r.logs).filter((l) => l.msg === 'compromise event');
    expect(line).toMatchObject({
      eventId: handled.id,
      source: SOURCE,
      transport: 'cloudevents',
      outcome: 'handled',
      status: 'contained',
      keyRef: ref,
      version: first,
      newVersion: after.primary,
      deksMoved: DEKS,
    });
    const incidents = await state.listRecords('incident', { limit: 10 });
    expect(incidents).toHaveLength(1);
    expect(incidents[0]!.body).toMatchObject({
      status: 'contained',
      origin: { source: SOURCE, eventId: handled.id },
      stores: { orders: { rewrapped: DEKS, verified: DEKS, failed: 0 } },
    });
    const published = (await receiveAll(events)).map((m) => (m.body as { type: string }).type);
    expect(published).toEqual(
      expect.arrayContaining(['rekey.KeyRotated', 'rekey.VersionRetired', 'rekey.CompromiseContained']),
    );
  });

  it('the same event again, in the Event Grid schema, is a no-op that returns the earlier incident', async () => {
    const before = await versionsOf('ledger');
    const r = await host.invoke('compromiseEvents', inEventGridSchema(handled));
    expect(r.error).toBeUndefined();
    expect(r.result).toEqual([
      {
        eventId: handled.id,
        outcome: 'duplicate',
        incidentId: expect.stringMatching(/^inc-/),
        status: 'contained',
      },
    ]);
    expect(await versionsOf('ledger')).toEqual(before);
    expect(await state.listRecords('incident', { limit: 10 })).toHaveLength(1);
    expect(await receiveAll(events)).toEqual([]);
  });

  it('refuses unsigned, forged, tampered, foreign-source, reused-id and malformed events, changing nothing', async () => {
    const { ref, first } = keys.payments;
    const snapshot = async () => ({
      versions: await versionsOf('payments'),
      deks: await deks.countByVersion(ref),
      incidents: (await state.listRecords('incident', { limit: 10 })).length,
      accepted: (await state.listRecords('incident-event', { limit: 10 })).length,
      marks: (await state.listRecords('compromised', { limit: 10 })).length,
    });
    const before = await snapshot();
    const auditBefore = (await state.auditTail())!.seq;
    const tampered = signer.sign(compromise(ref, first));
    (tampered.data as { reason: string }).reason = 'edited after signing';
    const cases: [unknown, string][] = [
      [compromise(ref, first), 'signature'],
      [
        new HmacEventSigner(Buffer.from('a-different-secret-of-enough-length-000000')).sign(
          compromise(ref, first),
        ),
        'signature',
      ],
      [tampered, 'signature'],
      [
        inEventGridSchema(signer.sign(compromise(ref, first, { source: 'https://attacker.example.com' }))),
        'source',
      ],
      // A new event under an id already used by the handled one.
      [signer.sign(compromise(ref, first, { id: handled.id })), 'replayed'],
      [{ specversion: '1.0', type: COMPROMISE_EVENT_TYPE, source: SOURCE, id: 'x', data: {} }, 'malformed'],
      [{ hello: 'world' }, 'malformed'],
    ];
    for (const [delivery, refusal] of cases) {
      const r = await host.invoke('compromiseEvents', delivery);
      // Completed, not thrown: Event Grid must not deliver these again.
      expect(r.ok, refusal).toBe(true);
      expect(r.result, refusal).toEqual([expect.objectContaining({ outcome: 'refused', refusal })]);
      expect(jsonLines(r.logs).filter((l) => l.msg === 'compromise event refused')).toHaveLength(1);
    }
    expect(await snapshot()).toEqual(before);
    const audit = await state.auditRead(auditBefore + 1, 100);
    expect(audit.map((a) => a.action)).toEqual(Array(6).fill('incident.event_refused'));
    expect(await receiveAll(events)).toEqual([]);
    expect((await verifyAuditChain(state)).ok).toBe(true);
  });
});

describe('approvals (HTTP)', () => {
  let requestId: string;

  it('a guarded disable waits for approvals after the re-wrap', async () => {
    const { ref, first } = keys.payments;
    const first_ = await host.invoke('scheduledCycle', timer);
    expect(first_.error).toBeUndefined();
    const rotated = (await versionsOf('payments')).primary;
    expect(rotated).not.toBe(first);
    for (const m of await receiveAll(work)) {
      const r = await host.invoke('rewrapWorker', m.body, { dequeueCount: m.dequeueCount });
      expect(r.error).toBeUndefined();
    }
    expect(await deks.countByVersion(ref)).toEqual({ [rotated]: DEKS });
    const second = await host.invoke('scheduledCycle', timer);
    const outcomes = (
      second.result as {
        apply: { outcomes: { type: string; status: string; result?: { requestId?: string } }[] };
      }
    ).apply.outcomes;
    const disable = outcomes.find((o) => o.type === 'disable_version')!;
    expect(disable.status).toBe('awaiting_approval');
    requestId = disable.result!.requestId!;
    expect(requestId).toMatch(/^apr-/);
    expect((await versionsOf('payments')).states[first]).toBe('enabled');
  });

  it('refuses a missing or forged token with 401 before anything else, and changes nothing', async () => {
    const before = await state.getRecord('approval', requestId);
    const none = await api(`/api/approvals/${requestId}/approve`, { method: 'POST', body: {} });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="rekey-approvals"');
    const forged = await api(`/api/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-alice', 'not-the-configured-token-secret-000000000'),
      body: {},
    });
    expect(forged.status).toBe(401);
    expect(forged.json.error.code).toBe('UNAUTHENTICATED');
    const list = await api('/api/approvals', { token: await token('sec-alice', 'x'.repeat(40)) });
    expect(list.status).toBe(401);
    expect(await state.getRecord('approval', requestId)).toEqual(before);
    // A token that does not verify is audited (without the token); a missing one is just refused.
    const audit = await state.auditRead((await state.auditTail())!.seq - 1, 10);
    expect(audit.map((a) => a.action)).toEqual(Array(2).fill('approval.auth_failed'));
  });

  it('two approvers approve over HTTP; the next cycle disables the version', async () => {
    const pending = await api('/api/approvals?status=pending', { token: await token('ops-carol') });
    expect(pending.status).toBe(200);
    expect(pending.json.approvals).toEqual([
      expect.objectContaining({ id: requestId, action: 'disable', status: 'pending' }),
    ]);
    const one = await api(`/api/approvals/${requestId}`, { token: await token('ops-carol') });
    expect(one.json).toMatchObject({ id: requestId, target: keys.payments.ref });
    // The cycle asked; it cannot approve its own request.
    const self = await api(`/api/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('azure-function:rekey-gov'),
    });
    expect(self.status).toBe(403);
    const alice = await api(`/api/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-alice'),
      body: { comment: 'DEKs verified' },
    });
    expect(alice.status).toBe(200);
    expect(alice.json).toMatchObject({
      status: 'pending',
      approvals: [{ by: 'sec-alice', comment: 'DEKs verified' }],
    });
    const again = await api(`/api/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-alice'),
    });
    expect(again.status).toBe(409);
    const bob = await api(`/api/approvals/${requestId}/approve`, {
      method: 'POST',
      token: await token('sec-bob'),
    });
    expect(bob.status).toBe(200);
    expect(bob.json.status).toBe('approved');

    const third = await host.invoke('scheduledCycle', timer);
    expect(third.error).toBeUndefined();
    expect((await versionsOf('payments')).states[keys.payments.first]).toBe('disabled');
    expect((await state.getRecord('approval', requestId))!.body).toMatchObject({ status: 'used' });
    expect(await lostDeks(keys.payments.ref)).toEqual([]);
    expect((await verifyAuditChain(state)).ok).toBe(true);

    // The host hands an HTTP invocation's logs over on their own channel: wait for all nine.
    let lines = jsonLines(host.logs).filter((l) => l.msg === 'approvals request');
    for (let i = 0; lines.length < 9 && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 50));
      lines = jsonLines(host.logs).filter((l) => l.msg === 'approvals request');
    }
    expect(lines.map((l) => l.status)).toEqual([401, 401, 401, 200, 200, 403, 200, 409, 200]);
    const all = host.logs.map((l) => l.message).join('\n');
    for (const secret of [TOKEN_SECRET, INCIDENT_SECRET, EMULATOR_TOKEN, pg.password])
      expect(all).not.toContain(secret);
    expect(all).not.toMatch(/eyJ[\w-]+\.eyJ/); // no JWT
  });

  it('answers 404 outside /approvals and 413 for oversized bodies', async () => {
    expect((await api('/api/approvals/x/y/z', { token: await token('sec-alice') })).status).toBe(404);
    const big = await fetch(`${host.httpUrl}/api/approvals/${requestId}/deny`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await token('sec-alice')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'x'.repeat(70_000) }),
    });
    expect(big.status).toBe(413);
  });
});

describe('costReport (timer)', () => {
  it('prices the latest inventory and writes the cost metrics, the key ref never a dimension', async () => {
    const r = await host.invoke('costReport', timer);
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({
      keys: 2,
      currency: 'USD',
      period: new Date().toISOString().slice(0, 7),
    });
    const metrics = jsonLines(r.logs).filter((l) => l.msg === 'metric');
    const monthly = metrics.filter((m) => m.metric === 'rekey.cost.monthly');
    expect(monthly).toHaveLength(2);
    expect(monthly.map((m) => (m.properties as { keyRef: string }).keyRef).sort()).toEqual(
      [keys.ledger.ref, keys.payments.ref].sort(),
    );
    for (const m of metrics) {
      expect(Object.values(m.dimensions as object)).not.toContain(keys.ledger.ref);
      expect(Object.values(m.dimensions as object)).not.toContain(keys.payments.ref);
    }
    expect(monthly[0]!.dimensions).toMatchObject({ provider: 'azure-kv' });
    expect(metrics.filter((m) => m.metric === 'rekey.key.billable_versions')).toHaveLength(2);
    expect(jsonLines(r.logs).filter((l) => l.msg === 'costs reported')).toHaveLength(1);
  });
});
