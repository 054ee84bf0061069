import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetCommand, PutCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ConflictError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import type { Plan } from '../../../shared/core/plan/types.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import type { AuditRecord } from '../../../shared/core/ports/StateStore.js';
import { DynamoDekStore } from '../../../shared/stores/dynamodb/DynamoDekStore.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import { ensureDynamoTable } from '../../../shared/stores/dynamodb/ensureTable.js';
import { dekTableDefinition } from '../../../shared/stores/dynamodb/tables.js';
import { type Dynalite, startDynalite } from '../../support/dynalite.js';

let dyn: Dynalite;
let n = 0;

beforeAll(async () => {
  dyn = await startDynalite();
});
afterAll(async () => {
  await dyn?.stop();
});

const bytes = (...xs: number[]) => new Uint8Array(xs);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const dek = (id: string, keyRef: string, version: string, wrapped: Uint8Array, context = {}): DekRecord => ({
  id,
  keyRef,
  version,
  wrapped,
  context,
});

async function freshDekStore(): Promise<DynamoDekStore> {
  const table = `deks-x-${++n}`;
  await dyn.createDekTable(table);
  return new DynamoDekStore({ id: 'orders', table, doc: dyn.client() });
}

/**
 * A proxy in front of dynalite that answers the next `count` requests with a DynamoDB error
 * (as the service sends it: HTTP status and a JSON `__type`), then forwards the rest.
 */
async function faultProxy(target: string): Promise<{
  endpoint: string;
  fail(count: number, type: string, status?: number): void;
  seen(): number;
  close(): Promise<void>;
}> {
  const to = new URL(target);
  let pending = 0;
  let type = '';
  let status = 400;
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    if (pending > 0) {
      pending--;
      req.resume();
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(
        JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message: `injected ${type}` }),
      );
      return;
    }
    const fwd = request(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 500, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    fail(count, t, s = 400) {
      pending = count;
      type = t;
      status = s;
    },
    seen: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('DynamoDekStore conditional writes', () => {
  it('replace on stale bytes or a missing item writes nothing and creates nothing', async () => {
    const store = await freshDekStore();
    await store.insertMany([dek('a', 'local://k', '1', bytes(1, 2))]);
    expect(await store.replace('a', bytes(9), '2', bytes(1))).toBe(false);
    expect(await store.replace('ghost', bytes(9), '2', bytes(1, 2))).toBe(false);
    expect(await store.get('ghost')).toBeNull();
    expect(await store.replace('a', bytes(3), '2', bytes(1, 2))).toBe(true);
    // The GSI sort key follows the version, so scans by version see the move.
    const raw = await store.doc.send(new GetCommand({ TableName: store.table, Key: { id: 'a' } }));
    expect(raw.Item?.kek_version_id).toBe('2#a');
    expect(
      (await store.scan({ keyRef: 'local://k', versions: ['2'] }, null, 10)).items.map((d) => d.id),
    ).toEqual(['a']);
    await expect(store.replace('a', bytes(4), '3#x', bytes(3))).rejects.toBeInstanceOf(ValidationError);
  });

  it('an insert that meets an existing id names it and leaves no partial batch behind', async () => {
    const store = await freshDekStore();
    await store.insertMany([dek('taken', 'local://k', '1', bytes(1))]);
    const err = await store
      .insertMany([dek('new-1', 'local://k', '1', bytes(2)), dek('taken', 'local://k', '1', bytes(3))])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toContain('"taken"');
    expect(await store.get('new-1')).toBeNull();
    expect(hex((await store.get('taken'))!.wrapped)).toBe('01');
  });

  it('two inserts racing for overlapping ids: each is all in or all out, and not both in', async () => {
    const store = await freshDekStore();
    const key = 'local://race';
    for (let round = 0; round < 5; round++) {
      const ids = Array.from({ length: 40 }, (_, i) => `r${round}-${i}`);
      const a = ids.slice(0, 30).map((id) => dek(id, key, '1', bytes(0xa, round)));
      const b = ids.slice(10).map((id) => dek(id, key, '1', bytes(0xb, round)));
      const [ra, rb] = await Promise.allSettled([store.insertMany(a), store.insertMany(b)]);
      expect(ra.status === 'fulfilled' && rb.status === 'fulfilled').toBe(false);
      for (const [res, batch, tag] of [
        [ra, a, 'a'],
        [rb, b, 'b'],
      ] as const) {
        if (res.status === 'rejected') expect(res.reason).toBeInstanceOf(ConflictError);
        const mine = await Promise.all(batch.map((d) => store.get(d.id)));
        const held = mine.filter((d) => d && hex(d.wrapped) === hex(bytes(tag === 'a' ? 0xa : 0xb, round)));
        expect(held.length).toBe(res.status === 'fulfilled' ? batch.length : 0);
      }
    }
  });

  it('works with the application’s own attribute names and no context attribute', async () => {
    const table = `legacy-${++n}`;
    const attributes = {
      id: 'pk',
      key: 'kmsKeyArn',
      version: 'kmsKeyVersion',
      wrapped: 'dataKey',
      context: null,
      versionId: 'gsi1sk',
    };
    const admin = dyn.client();
    await ensureDynamoTable(admin, dekTableDefinition(table, 'gsi1', attributes));
    // An item the application wrote itself, with attributes rekey does not know.
    await admin.send(
      new PutCommand({
        TableName: table,
        Item: {
          pk: 'app-1',
          kmsKeyArn: 'local://legacy',
          kmsKeyVersion: '1',
          dataKey: bytes(7, 7),
          gsi1sk: '1#app-1',
          tenant: 'acme',
        },
      }),
    );
    const store = new DynamoDekStore({ id: 'legacy', table, index: 'gsi1', attributes, doc: dyn.client() });
    await store.insertMany([dek('app-2', 'local://legacy', '2', bytes(8))]);
    expect((await store.scan({ keyRef: 'local://legacy' }, null, 10)).items).toEqual([
      dek('app-1', 'local://legacy', '1', bytes(7, 7)),
      dek('app-2', 'local://legacy', '2', bytes(8)),
    ]);
    expect(await store.replace('app-1', bytes(9), '2', bytes(7, 7))).toBe(true);
    const raw = await admin.send(new GetCommand({ TableName: table, Key: { pk: 'app-1' } }));
    expect(raw.Item).toMatchObject({ tenant: 'acme', gsi1sk: '2#app-1', kmsKeyVersion: '2' });
    expect(await store.countByVersion('local://legacy')).toEqual({ '2': 2 });
    await expect(
      store.insertMany([dek('app-3', 'local://legacy', '2', bytes(1), { a: 'b' })]),
    ).rejects.toThrow(/no context attribute/);
  });

  it('is built from a config file entry', async () => {
    const table = `configured-${++n}`;
    const cfg = loadConfig(
      [
        'version: 1',
        'providers:',
        '  local: { type: local, masterKey: env:UNUSED }',
        'stores:',
        '  sessions:',
        '    type: dynamodb',
        `    table: ${table}`,
        '    region: us-east-1',
        `    endpoint: ${dyn.endpoint}`,
        '    attributes: { id: sessionKeyId, context: null }',
      ].join('\n'),
      'rekey.yaml',
    );
    const sc = cfg.stores.sessions!;
    if (sc.type !== 'dynamodb') throw new Error('expected a dynamodb store');
    expect(sc.index).toBe('by_kek_version');
    expect(sc.attributes).toEqual({
      id: 'sessionKeyId',
      key: 'kek_ref',
      version: 'kek_version',
      wrapped: 'wrapped_dek',
      context: null,
      versionId: 'kek_version_id',
    });
    const store = new DynamoDekStore({
      ...sc,
      id: 'sessions',
      maxAttempts: 1,
      client: { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } },
    });
    try {
      await store.ensureTable();
      await store.insertMany([dek('s1', 'local://s', '1', bytes(1))]);
      expect(await store.countByVersion('local://s')).toEqual({ '1': 1 });
    } finally {
      await store.close();
    }
  });
});

describe('DynamoDB failures', () => {
  it('throttling is a retryable, throttled error; the SDK retries it when allowed', async () => {
    const store0 = await freshDekStore();
    await store0.insertMany([dek('t1', 'local://t', '1', bytes(1))]);
    const proxy = await faultProxy(dyn.endpoint);
    try {
      const once = new DynamoDekStore({
        id: 'orders',
        table: store0.table,
        doc: dyn.client({ endpoint: proxy.endpoint }),
      });
      for (const type of ['ProvisionedThroughputExceededException', 'ThrottlingException']) {
        proxy.fail(1, type);
        const err = await once.get('t1').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ProviderError);
        expect(err).toMatchObject({
          provider: 'dynamodb',
          providerCode: type,
          retryable: true,
          throttled: true,
        });
      }
      proxy.fail(1, 'InternalServerError', 500);
      const err = await once.replace('t1', bytes(2), '2', bytes(1)).catch((e: unknown) => e);
      expect(err).toMatchObject({ providerCode: 'InternalServerError', retryable: true, throttled: false });
      // With retries allowed, two throttles in a row are absorbed by the SDK's backoff.
      const retrying = new DynamoDekStore({
        id: 'orders',
        table: store0.table,
        doc: dyn.client({ endpoint: proxy.endpoint, maxAttempts: 3 }),
      });
      proxy.fail(2, 'ProvisionedThroughputExceededException');
      const before = proxy.seen();
      expect((await retrying.get('t1'))?.id).toBe('t1');
      expect(proxy.seen() - before).toBe(3);
    } finally {
      await proxy.close();
    }
  });

  it('a missing table is a configuration error; an unreachable endpoint is retryable', async () => {
    const store = new DynamoDekStore({ id: 'orders', table: 'no-such-table', doc: dyn.client() });
    await expect(store.get('x')).rejects.toBeInstanceOf(ConfigError);
    const down = new DynamoDekStore({
      id: 'orders',
      table: 'deks',
      doc: dyn.client({ endpoint: 'http://127.0.0.1:1' }),
    });
    const err = await down.get('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).retryable).toBe(true);
  });
});

describe('DynamoStateStore', () => {
  async function freshState(): Promise<DynamoStateStore> {
    const table = `state-x-${++n}`;
    await dyn.createStateTable(table);
    return new DynamoStateStore({ table, doc: dyn.client() });
  }
  const rec = (seq: number, who: string): AuditRecord => ({
    seq,
    ts: '2026-11-29T00:00:00.000Z',
    actor: who,
    action: 'race',
    target: null,
    details: { who },
    prevHash: `h${seq - 1}`,
    hash: `h${seq}-${who}`,
  });

  it('racing appenders build one gap-free chain, each seq written once', async () => {
    const store = await freshState();
    const total = 30;
    const writers = ['w1', 'w2', 'w3', 'w4', 'w5'].map(async (who) => {
      let wins = 0;
      for (;;) {
        const tail = await store.auditTail();
        const seq = (tail?.seq ?? 0) + 1;
        if (seq > total) return wins;
        if (await store.auditAppend(rec(seq, who))) wins++;
      }
    });
    const wins = await Promise.all(writers);
    expect(wins.reduce((a, b) => a + b, 0)).toBe(total);
    const chain = await store.auditRead(1, 100);
    expect(chain.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // Nothing can be appended past the end with a gap, nor over an existing seq.
    expect(await store.auditAppend(rec(total + 2, 'late'))).toBe(false);
    expect(await store.auditAppend(rec(total, 'late'))).toBe(false);
    const all = await store.doc.send(new ScanCommand({ TableName: store.table }));
    expect((all.Items ?? []).filter((i) => i.pk === 'audit')).toHaveLength(total);
  });

  it('a plan larger than one item is split, read back whole, and replaced cleanly', async () => {
    const store = await freshState();
    // Random text does not compress: about 1.2 MB of it needs several items.
    const big: Plan = {
      id: 'plan-big',
      createdAt: '2026-11-29T00:00:00.000Z',
      configDigest: 'sha256:x',
      inventoryId: 'inv-1',
      actions: [],
      findings: Array.from({ length: 600 }, (_, i) => ({
        kind: 'rotation_due',
        severity: 'warning' as const,
        keyRef: `local://k${i}`,
        policy: 'p',
        message: randomBytes(1000).toString('base64'),
      })),
    } as Plan;
    await store.savePlan(big);
    expect(await store.getPlan('plan-big')).toEqual(big);
    expect(await store.latestPlan()).toEqual(big);
    const items = async () =>
      ((await store.doc.send(new ScanCommand({ TableName: store.table }))).Items ?? []).filter(
        (i) => i.pk === 'plan#plan-big',
      );
    expect((await items()).length).toBeGreaterThan(2);
    const small: Plan = { ...big, findings: [], createdAt: '2026-11-30T00:00:00.000Z' };
    await store.savePlan(small);
    expect(await store.getPlan('plan-big')).toEqual(small);
    expect(await items()).toHaveLength(1);
    // The time index moved with createdAt: one entry, at the new time.
    const index = ((await store.doc.send(new ScanCommand({ TableName: store.table }))).Items ?? []).filter(
      (i) => i.pk === 'plan',
    );
    expect(index.map((i) => i.sk)).toEqual([`${Date.parse(small.createdAt)}#plan-big`]);
  });
});
