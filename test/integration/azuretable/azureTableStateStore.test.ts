import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { InventorySnapshot, RewrapJob } from '../../../shared/core/ports/StateStore.js';
import { AzureTableStateStore } from '../../../shared/stores/azuretable/AzureTableStateStore.js';
import { escapeKey, needsEscape, unescapeKey } from '../../../shared/stores/azuretable/keys.js';
import { type Azurite, startAzurite } from '../../support/azurite.js';

let azurite: Azurite;
let n = 0;

beforeAll(async () => {
  azurite = await startAzurite({ services: ['table'] });
});
afterAll(async () => {
  await azurite?.stop();
});

async function freshStore(): Promise<AzureTableStateStore> {
  const store = new AzureTableStateStore({
    table: `azstate${++n}`,
    connectionString: azurite.connectionString,
  });
  await store.ensureTable();
  return store;
}

/** A snapshot whose compressed body is several MB: random tags do not compress. */
function bigSnapshot(id: string, takenAt: string, keys: number): InventorySnapshot {
  return {
    id,
    takenAt,
    errors: [],
    keys: Array.from({ length: keys }, (_, i) => ({
      ref: `local://k${i}`,
      providerType: 'local' as const,
      providerId: 'local',
      name: `k${i}`,
      tags: { noise: randomBytes(512).toString('base64') },
      protection: 'software' as const,
      algorithm: 'AES_256' as const,
      enabled: true,
      primaryVersion: '1',
      versions: [{ id: '1', state: 'enabled' as const, createdAt: takenAt }],
      createdAt: takenAt,
    })),
  };
}

describe('AzureTableStateStore beyond the contract', () => {
  it('keeps bodies larger than one entity over several parts, and replaces them whole', async () => {
    const store = await freshStore();
    const big = bigSnapshot('inv-big', '2026-05-01T00:00:00.000Z', 3000);
    await store.saveInventory(big);
    expect(await store.latestInventory()).toEqual(big);
    const bigger = bigSnapshot('inv-big', '2026-05-01T00:00:00.000Z', 3500);
    await store.saveInventory(bigger);
    expect(await store.latestInventory()).toEqual(bigger);
    // The first save's parts are gone: only the newest generation is stored.
    const gens = new Set<string>();
    for await (const e of store.client.listEntities({
      queryOptions: { filter: "PartitionKey eq 'inventory:inv-big'" },
    })) {
      if (e.rowKey!.startsWith('part:')) gens.add(e.rowKey!.split(':')[1]!);
    }
    expect(gens.size).toBe(1);
    const small = bigSnapshot('inv-big', '2026-05-01T00:00:00.000Z', 1);
    await store.saveInventory(small);
    expect(await store.latestInventory()).toEqual(small);
  });

  it('ids with characters Table Storage keys refuse are escaped and read back unchanged', async () => {
    const store = await freshStore();
    const ids = [
      'a/b',
      'c#d',
      'e?f',
      'g\\h',
      'tab\there',
      'pct%20',
      'tilde~7e',
      'azure-kv://v.vault.azure.net/keys/k',
    ];
    for (const id of ids) {
      expect(unescapeKey(escapeKey(id))).toBe(id);
      expect([...escapeKey(id)].filter((c) => c !== '~' && needsEscape(c))).toEqual([]);
      const job: RewrapJob = {
        id,
        keyRef: 'local://k',
        storeId: 's',
        fromVersions: ['1'],
        toVersion: '2',
        status: 'running',
        cursor: null,
        counts: { scanned: 0, rewrapped: 0, verified: 0, conflicts: 0, failed: 0 },
        failures: [],
        updatedAt: '2026-05-01T00:00:00.000Z',
      };
      expect(await store.createRewrapJob(job)).toEqual(job);
      expect(await store.getRewrapJob(id)).toEqual(job);
      expect(await store.acquireLease(`rewrap:${id}`, 'me', 1000, 1)).toBe(true);
      expect(await store.putRecord({ kind: 'k/1', id, body: { id }, updatedAt: job.updatedAt }, 0)).toBe(
        true,
      );
    }
    const listed = await store.listRecords('k/1', { limit: 100 });
    expect(listed.map((r) => r.id).sort()).toEqual([...ids].sort());
    // Paging resumes after any id, escaped or not, without repeats or gaps.
    const paged: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.listRecords('k/1', { limit: 3, ...(after ? { afterId: after } : {}) });
      if (page.length === 0) break;
      paged.push(...page.map((r) => r.id));
      after = page.at(-1)!.id;
    }
    expect(paged).toEqual(listed.map((r) => r.id));
  });

  it('refuses an id too long for a key, naming it, and writes nothing', async () => {
    const store = await freshStore();
    const long = 'x'.repeat(600);
    await expect(
      store.putRecord({ kind: 'event', id: long, body: {}, updatedAt: '2026-05-01T00:00:00.000Z' }, 0),
    ).rejects.toThrow(/record event\/x+.*too long for a Table Storage key/);
    expect(await store.listRecords('event', { limit: 10 })).toEqual([]);
  });

  it('a missing table is a configuration error naming it', async () => {
    const store = new AzureTableStateStore({
      table: 'nosuchtable',
      connectionString: azurite.connectionString,
    });
    await expect(store.getRewrapJob('j')).rejects.toMatchObject({
      code: 'CONFIG',
      message: expect.stringContaining('TableNotFound'),
    });
    expect(() => new AzureTableStateStore({ table: 'bad-name', connectionString: 'x=y' })).toThrow(
      /3-63 letters and digits/,
    );
  });

  it('many writers appending through AuditLog at once keep one unbroken chain', async () => {
    const store = await freshStore();
    const clock = new ManualClock(new Date('2026-05-01T00:00:00.000Z'));
    const writers = Array.from({ length: 4 }, () => new AuditLog(store, clock));
    await Promise.all(
      writers.flatMap((w, i) =>
        Array.from({ length: 4 }, (_, j) =>
          w.append({ actor: `w${i}`, action: 'test.append', target: null, details: { j } }),
        ),
      ),
    );
    expect((await store.auditTail())!.seq).toBe(16);
    expect((await verifyAuditChain(store)).ok).toBe(true);
  });

  it('an expired lease raced by several workers goes to exactly one', async () => {
    const store = await freshStore();
    expect(await store.acquireLease('shard', 'old', 100, 0)).toBe(true);
    const won = await Promise.all(['a', 'b', 'c', 'd'].map((o) => store.acquireLease('shard', o, 1000, 500)));
    expect(won.filter(Boolean)).toHaveLength(1);
  });

  it('exports every entry in a stable order, and a store rebuilt from it exports the same', async () => {
    const store = await freshStore();
    const at = '2026-05-01T00:00:00.000Z';
    await store.saveInventory(bigSnapshot('inv-b', '2026-05-02T00:00:00.000Z', 2));
    await store.saveInventory(bigSnapshot('inv-a', at, 1));
    const plan = {
      id: 'plan/1',
      createdAt: at,
      configDigest: 'sha256:x',
      inventoryId: 'inv-a',
      actions: [],
      findings: [],
    };
    await store.savePlan(plan);
    await store.saveRun({ id: 'run-1', planId: 'plan/1', startedAt: at, status: 'completed' });
    for (const index of [1, 0]) {
      await store.putActionRecord({ planId: 'plan/1', index, status: 'done', attempts: 1, updatedAt: at });
    }
    for (const id of ['job-b', 'job#a']) {
      await store.createRewrapJob({
        id,
        keyRef: 'local://k',
        storeId: 's',
        fromVersions: ['1'],
        toVersion: '2',
        status: 'done',
        cursor: null,
        counts: { scanned: 1, rewrapped: 1, verified: 1, conflicts: 0, failed: 0 },
        failures: [],
        updatedAt: at,
      });
    }
    await store.putRecord({ kind: 'approval', id: 'a/1', body: { n: 1 }, updatedAt: at }, 0);
    await store.putRecord({ kind: 'approval', id: 'a/1', body: { n: 2 }, updatedAt: at }, 1);
    await store.putRecord({ kind: 'event', id: 'e1', body: {}, updatedAt: at }, 0);
    const log = new AuditLog(store, new ManualClock(new Date(at)));
    for (const action of ['a.one', 'a.two', 'a.three'])
      await log.append({ actor: 't', action, target: null, details: {} });

    const collect = async (s: AzureTableStateStore) => {
      const out = [];
      for await (const e of s.exportEntries()) out.push(e);
      return out;
    };
    const entries = await collect(store);
    expect(entries.map((e) => e.t)).toEqual([
      'inventory',
      'inventory',
      'plan',
      'run',
      'action',
      'action',
      'job',
      'job',
      'record',
      'record',
      'audit',
      'audit',
      'audit',
    ]);
    expect(entries.filter((e) => e.t === 'inventory').map((e) => (e.v as InventorySnapshot).id)).toEqual([
      'inv-a',
      'inv-b',
    ]);

    const copy = await freshStore();
    for (const e of entries) {
      if (e.t === 'inventory') await copy.saveInventory(e.v);
      else if (e.t === 'plan') await copy.savePlan(e.v);
      else if (e.t === 'run') await copy.saveRun(e.v);
      else if (e.t === 'action') await copy.putActionRecord(e.v);
      else if (e.t === 'job') await copy.createRewrapJob(e.v);
      else if (e.t === 'audit') expect(await copy.auditAppend(e.v)).toBe(true);
      else for (let rev = 0; rev < e.v.rev; rev++) await copy.putRecord(e.v, rev);
    }
    expect(await collect(copy)).toEqual(entries);
  });
});
