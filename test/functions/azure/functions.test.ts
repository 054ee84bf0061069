import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import type { AzureKeyVaultProvider } from '../../../shared/providers/azure/AzureKeyVaultProvider.js';
import { AzureTableStateStore } from '../../../shared/stores/azuretable/AzureTableStateStore.js';
import { PostgresDekStore } from '../../../shared/stores/postgres/PostgresDekStore.js';
import { EMULATOR_TOKEN } from '../../emulators/azure-keyvault/credential.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { provider as azureProvider, certificates, emulator, VAULT } from '../../integration/azure/helpers.js';
import { extraCaCertsEnv } from '../../support/azureCert.js';
import { type Azurite, startAzurite } from '../../support/azurite.js';
import { type PgCluster, startPostgres } from '../../support/postgres.js';
import {
  deployBuiltApp,
  type FunctionsHost,
  type InvocationResult,
  jsonLines,
  startFunctionsHost,
} from './functionsHost.js';
import { receiveAll, startIdentityEndpoint, timer } from './support.js';

/**
 * The built Function App (dist/azure) end to end: Azurite for the state table and the queues,
 * the Key Vault emulator for the keys (reached with the app's managed identity, served here by
 * a loopback identity endpoint as App Service serves it), PostgreSQL for the application's DEKs.
 * The test plays the Functions host: it fires the timer, delivers queue messages and Event Grid
 * events to the handlers the app registered, and reads what they left behind.
 */
const DEKS = 240;
const DAY = 86_400_000;
const SETTINGS = {
  REKEY_STATE_TABLE: 'rekeystate',
  REKEY_WORK_QUEUE: 'rekey-rewrap',
  REKEY_EVENTS_QUEUE: 'rekey-events',
  REKEY_SCHEDULE: '0 0 * * * *',
  REKEY_SHARDS: '3',
  WEBSITE_SITE_NAME: 'rekey-test',
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
let keyRef: string;
let firstVersion: string;
const plaintexts = new Map<string, Buffer>();

function lines(r: InvocationResult, msg: string) {
  return jsonLines(r.logs).filter((l) => l.msg === msg);
}

beforeAll(async () => {
  [azurite, pg] = await Promise.all([startAzurite({ services: ['table', 'queue'] }), startPostgres()]);
  // Keys made 200 days ago, so a 90-day policy finds them due once the clock is back to now.
  emu = await emulator({ vaults: [VAULT], now: new Date(Date.now() - 200 * DAY) });
  kv = azureProvider(emu, {
    id: 'azure-prod',
    vaults: [VAULT],
    endpoints: { [VAULT]: emu.endpoints[VAULT]! },
  });
  const key = await kv.createKey({ name: 'orders', tags: { 'data-class': 'pci' } });
  keyRef = key.ref;
  firstVersion = key.primaryVersion;
  deks = new PostgresDekStore({
    id: 'orders',
    url: pg.url,
    table: 'public.data_keys',
    columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
  });
  await deks.ensureTable();
  const recs: DekRecord[] = [];
  for (let i = 0; i < DEKS; i++) {
    const id = `dek-${String(i).padStart(4, '0')}`;
    const pt = randomBytes(32);
    plaintexts.set(id, Buffer.from(pt));
    const w = await kv.wrap(parseKeyRef(keyRef), pt, { row: id });
    pt.fill(0);
    recs.push({ id, keyRef, version: w.version, wrapped: w.ciphertext, context: { row: id } });
  }
  await deks.insertMany(recs);
  emu.clock.set(new Date());

  // What Terraform creates: the state table and the two queues.
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
policies:
  - name: pci
    match: { provider: [azure-prod], tags: { data-class: pci } }
    rotate: { every: P90D, mode: rekey }
    rewrap: { stores: [orders], verify: full, batchSize: 40 }
    retire: { disableAfter: P0D }
`,
  );
  host = await startFunctionsHost(app.dir, {
    ...SETTINGS,
    REKEY_STORAGE: azurite.connectionString,
    REKEY_CONFIG: config,
    ORDERS_DATABASE_URL: pg.url,
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

describe('rekey on Azure Functions (built bundle)', () => {
  it('registers timer, Storage Queue, Event Grid and HTTP functions bound to the app settings', () => {
    const byName = Object.fromEntries(host.functions.map((f) => [f.name, Object.values(f.bindings)]));
    expect(Object.keys(byName).sort()).toEqual([
      'approvals',
      'compromiseEvents',
      'costReport',
      'keyVaultEvents',
      'rewrapWorker',
      'scheduledCycle',
    ]);
    expect(byName.scheduledCycle).toContainEqual(
      expect.objectContaining({ type: 'timerTrigger', direction: 'in', schedule: '%REKEY_SCHEDULE%' }),
    );
    expect(byName.rewrapWorker).toContainEqual(
      expect.objectContaining({
        type: 'queueTrigger',
        queueName: '%REKEY_WORK_QUEUE%',
        connection: 'REKEY_STORAGE',
      }),
    );
    expect(byName.keyVaultEvents).toContainEqual(expect.objectContaining({ type: 'eventGridTrigger' }));
    expect(byName.compromiseEvents).toContainEqual(expect.objectContaining({ type: 'eventGridTrigger' }));
    expect(byName.costReport).toContainEqual(
      expect.objectContaining({ type: 'timerTrigger', schedule: '%REKEY_COST_SCHEDULE%' }),
    );
    // Anonymous at the host: the handler itself demands an approver's bearer JWT.
    expect(byName.approvals).toContainEqual(
      expect.objectContaining({
        type: 'httpTrigger',
        direction: 'in',
        authLevel: 'anonymous',
        route: 'approvals/{*rest}',
        methods: ['GET', 'POST'],
      }),
    );
    expect(byName.approvals).toContainEqual(expect.objectContaining({ type: 'http', direction: 'out' }));
  });

  it('timer, queue workers, timer: the key is rotated, every DEK re-wrapped and verified, the old version disabled', async () => {
    const first = await host.invoke('scheduledCycle', timer);
    expect(first.error).toBeUndefined();
    expect(first.result).toMatchObject({ status: 'applied', queued: 3 });
    const [cycle] = lines(first, 'scheduled cycle');
    expect(cycle).toMatchObject({ status: 'applied', queued: 3 });
    const rotated = (await kv.getKey(parseKeyRef(keyRef))).primaryVersion;
    expect(rotated).not.toBe(firstVersion);

    // The host delivers each shard; one of them finds the whole job done and announces it.
    const messages = await receiveAll(work);
    expect(messages).toHaveLength(3);
    const shardRuns = [];
    for (const m of messages) {
      const r = await host.invoke('rewrapWorker', m.body, { dequeueCount: m.dequeueCount, id: m.id });
      expect(r.error).toBeUndefined();
      shardRuns.push(r);
    }
    expect(shardRuns.map((r) => (r.result as { status: string }).status)).toEqual(['done', 'done', 'done']);
    expect(shardRuns.filter((r) => (r.result as { jobCompleted?: string }).jobCompleted)).toHaveLength(1);
    expect(await deks.countByVersion(keyRef)).toEqual({ [rotated]: DEKS });

    const second = await host.invoke('scheduledCycle', timer);
    expect(second.error).toBeUndefined();
    expect(second.result).toMatchObject({ status: 'applied', queued: 0 });
    const after = await kv.getKey(parseKeyRef(keyRef));
    expect(after.versions.find((v) => v.id === firstVersion)?.state).toBe('disabled');

    // Every DEK still opens to its plaintext under the new version.
    for (const [id, pt] of plaintexts) {
      const d = (await deks.get(id))!;
      expect(d.version).toBe(rotated);
      const got = await kv.unwrap(
        parseKeyRef(keyRef),
        { version: d.version, ciphertext: d.wrapped },
        d.context,
      );
      expect(Buffer.from(got).equals(pt)).toBe(true);
    }

    // Events went to the events queue as CloudEvents; metrics were written as log lines.
    const published = (await receiveAll(events)).map(
      (m) => m.body as { type: string; data: { keyRef: string } },
    );
    const types = published.map((e) => e.type);
    expect(types).toContain('rekey.KeyRotated');
    expect(types.filter((t) => t === 'rekey.RewrapCompleted')).toHaveLength(1);
    expect(types).toContain('rekey.VersionRetired');
    expect(published.every((e) => e.data.keyRef === keyRef)).toBe(true);
    const metrics = jsonLines(host.logs).filter((l) => l.msg === 'metric');
    const rewrapped = metrics
      .filter((m) => m.metric === 'rekey.rewrap.rewrapped')
      .reduce((n, m) => n + Number(m.value), 0);
    expect(rewrapped).toBe(DEKS);
    for (const m of metrics) {
      expect(Object.keys(m.dimensions as object).length).toBeLessThanOrEqual(10);
      expect(Object.values(m.dimensions as object)).not.toContain(keyRef);
    }
    expect(metrics.some((m) => m.metric === 'rekey.cycle.queued')).toBe(true);

    // rekey's state is in the table, its audit chain intact; no line logged a DEK or a token.
    expect((await verifyAuditChain(state)).ok).toBe(true);
    const everything = host.logs.map((l) => l.message).join('\n');
    expect(everything).not.toContain(EMULATOR_TOKEN);
    expect(everything).not.toContain(pg.password);
    for (const pt of [...plaintexts.values()].slice(0, 20))
      expect(everything).not.toContain(pt.toString('base64'));
  });

  it('a shard another worker holds is thrown back to the queue; redelivered later, it completes', async () => {
    const rotatedTo = (await kv.rotate(parseKeyRef(keyRef))).id;
    const cycle = await host.invoke('scheduledCycle', timer);
    expect(cycle.error).toBeUndefined();
    const messages = await receiveAll(work);
    // The primary moved outside rekey: the cycle re-wraps to it (and waits for the job).
    expect(messages.length).toBeGreaterThan(0);
    const held = messages[0]!;
    const jobId = (held.body as { jobId: string }).jobId;
    expect(await state.acquireLease(`rewrap:${jobId}`, 'other-host:1:abcd', 60_000, Date.now())).toBe(true);
    const busy = await host.invoke('rewrapWorker', held.body, { dequeueCount: 1 });
    expect(busy.ok).toBe(false);
    expect(busy.error?.message).toMatch(/held by another worker/);
    await state.releaseLease(`rewrap:${jobId}`, 'other-host:1:abcd');
    for (const m of messages) {
      const r = await host.invoke('rewrapWorker', m.body, { dequeueCount: m === held ? 2 : 1 });
      expect(r.error).toBeUndefined();
    }
    expect(await deks.countByVersion(keyRef)).toEqual({ [rotatedTo]: DEKS });
    await receiveAll(events);
  });

  it('a malformed queue message fails the invocation (the host retries, then poisons it) and changes nothing', async () => {
    const before = await deks.countByVersion(keyRef);
    const r = await host.invoke('rewrapWorker', { kind: 'rewrap-shard', jobId: 'x' });
    expect(r.ok).toBe(false);
    expect(r.error?.message).toMatch(/re-wrap message: providerId/);
    expect(lines(r, 'invocation failed')).toHaveLength(1);
    expect(await deks.countByVersion(keyRef)).toEqual(before);
  });

  it('Key Vault KeyNearExpiry from Event Grid rotates now and re-wraps; a foreign event is refused, not retried', async () => {
    const key = await kv.getKey(parseKeyRef(keyRef));
    const near = {
      id: `evt-${randomBytes(4).toString('hex')}`,
      topic: '/subscriptions/0000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/rekey-prod',
      subject: 'orders',
      eventType: 'Microsoft.KeyVault.KeyNearExpiry',
      eventTime: new Date().toISOString(),
      data: {
        Id: `https://${VAULT}/keys/orders/${key.primaryVersion}`,
        VaultName: 'rekey-prod',
        ObjectType: 'Key',
        ObjectName: 'orders',
        Version: key.primaryVersion,
        NBF: null,
        EXP: null,
      },
      dataVersion: '1',
      metadataVersion: '1',
    };
    const r = await host.invoke('keyVaultEvents', near);
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({ outcome: 'rotated' });
    const now = (await kv.getKey(parseKeyRef(keyRef))).primaryVersion;
    expect(now).not.toBe(key.primaryVersion);
    expect(await deks.countByVersion(keyRef)).toEqual({ [now]: DEKS });
    // The same event again: already rotated, nothing changes.
    const replay = await host.invoke('keyVaultEvents', near);
    expect(replay.result).toMatchObject({ outcome: 'ignored' });
    expect((await kv.getKey(parseKeyRef(keyRef))).primaryVersion).toBe(now);

    const foreign = await host.invoke('keyVaultEvents', {
      ...near,
      eventType: 'Microsoft.Storage.BlobCreated',
    });
    expect(foreign.ok).toBe(true);
    expect(foreign.result).toMatchObject({ outcome: 'refused' });
    expect(lines(foreign, 'event refused')[0]).toMatchObject({ eventType: 'Microsoft.Storage.BlobCreated' });
  });
});

describe('app settings and config problems at cold start', () => {
  async function coldStart(env: Record<string, string>) {
    const h = await startFunctionsHost(app.dir, {
      ...SETTINGS,
      REKEY_STORAGE: azurite.connectionString,
      ORDERS_DATABASE_URL: pg.url,
      ...env,
    });
    try {
      return await h.invoke('scheduledCycle', timer);
    } finally {
      await h.stop();
    }
  }

  it('fail the invocation with an error naming the setting or file, and change nothing', async () => {
    const auditBefore = (await state.auditTail())?.seq;
    const noTable = await coldStart({ REKEY_STATE_TABLE: '' });
    expect(noTable.ok).toBe(false);
    expect(noTable.error?.message).toBe('app setting REKEY_STATE_TABLE is not set');
    expect(lines(noTable, 'invocation failed')[0]).toMatchObject({ code: 'CONFIG' });

    const badShards = await coldStart({ REKEY_SHARDS: 'many' });
    expect(badShards.error?.message).toMatch(/REKEY_SHARDS must be an integer 1-256, got "many"/);

    const noConfig = await coldStart({ REKEY_CONFIG: join(app.dir, 'missing.yaml') });
    expect(noConfig.error?.message).toMatch(/cannot read config file .*missing\.yaml/);

    const badPolicy = join(app.dir, 'bad.yaml');
    writeFileSync(
      badPolicy,
      'version: 1\nproviders: {}\npolicies:\n  - name: x\n    rotate: { every: soon }\n',
    );
    const invalid = await coldStart({ REKEY_CONFIG: badPolicy });
    expect(invalid.error?.message).toMatch(/bad\.yaml:\d+:\d+/);

    expect((await state.auditTail())?.seq).toBe(auditBefore);
  });
});
