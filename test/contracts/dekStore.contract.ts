import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, ValidationError } from '../../shared/core/errors.js';
import type { DekRecord, DekScanQuery, DekStore } from '../../shared/core/ports/DekStore.js';

/**
 * What every DekStore adapter must do, whatever the database. `setup` returns a store whose
 * table exists and is empty; tests keep their rows apart by key ref, so one store may serve
 * many property runs.
 */
export interface DekStoreFixture {
  store: DekStore;
  cleanup(): Promise<void>;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);

function dek(id: string, keyRef: string, version: string, wrapped: Uint8Array, context = {}): DekRecord {
  return { id, keyRef, version, wrapped, context };
}

/** Walks a scan to the end; fails on a page over the limit or a cursor that never ends. */
async function scanAll(
  store: DekStore,
  query: DekScanQuery,
  limit: number,
): Promise<{ items: DekRecord[]; pages: number }> {
  const items: DekRecord[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = await store.scan(query, cursor, limit);
    expect(page.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.items);
    cursor = page.cursor;
    pages++;
    if (pages > 10_000) throw new Error('scan did not finish after 10,000 pages');
  } while (cursor !== null);
  return { items, pages };
}

function matches(r: DekRecord, q: DekScanQuery): boolean {
  if (r.keyRef !== q.keyRef) return false;
  if (q.idFrom !== undefined && r.id < q.idFrom) return false;
  if (q.idTo !== undefined && r.id >= q.idTo) return false;
  if (q.versions && !q.versions.includes(r.version)) return false;
  if (q.notVersion !== undefined && r.version === q.notVersion) return false;
  return true;
}

export function dekStoreContract(name: string, setup: () => Promise<DekStoreFixture>): void {
  describe(`DekStore contract: ${name}`, () => {
    let fx: DekStoreFixture;
    let store: DekStore;
    beforeEach(async () => {
      fx = await setup();
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    it('stores and reads back a DEK with its bytes, version and context', async () => {
      const w = bytes(0, 1, 2, 255, 0, 128);
      await store.insertMany([dek('d-1', 'local://k', '1', w, { tenant: 't1', 'with space': 'x y' })]);
      const got = await store.get('d-1');
      expect(got).not.toBeNull();
      expect(got!.id).toBe('d-1');
      expect(got!.keyRef).toBe('local://k');
      expect(got!.version).toBe('1');
      expect(hex(got!.wrapped)).toBe(hex(w));
      expect(got!.context).toEqual({ tenant: 't1', 'with space': 'x y' });
      expect(await store.get('absent')).toBeNull();
    });

    it('scan pages through every matching DEK exactly once, for any page size and filter', async () => {
      const versionsPool = ['1', '2', '3', '10'];
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(
            fc.record({
              id: fc.string({ minLength: 1, maxLength: 10, unit: 'grapheme-ascii' }),
              version: fc.constantFrom(...versionsPool),
              otherKey: fc.boolean(),
            }),
            { selector: (r) => r.id, maxLength: 40 },
          ),
          fc.integer({ min: 1, max: 12 }),
          fc.oneof(
            fc.constant({}),
            fc.record({ notVersion: fc.constantFrom(...versionsPool) }),
            fc.record({ versions: fc.subarray(versionsPool) }),
            fc.record({
              versions: fc.subarray(versionsPool, { minLength: 1 }),
              notVersion: fc.constantFrom(...versionsPool),
            }),
          ),
          async (rows, limit, filter) => {
            run++;
            // Fresh key refs per run keep runs apart in the one table.
            const key = `local://prop-${run}`;
            const other = `local://prop-${run}-other`;
            const records = rows.map((r, i) =>
              dek(`${run}/${r.id}`, r.otherKey ? other : key, r.version, bytes(run & 255, i, 7), {
                i: String(i),
              }),
            );
            await store.insertMany(records);
            const query: DekScanQuery = { keyRef: key, ...filter };
            const { items } = await scanAll(store, query, limit);
            const ids = items.map((d) => d.id);
            expect(new Set(ids).size).toBe(ids.length);
            const expected = records.filter((r) => matches(r, query));
            expect([...ids].sort()).toEqual(expected.map((r) => r.id).sort());
            const byId = new Map(records.map((r) => [r.id, r]));
            for (const it of items) {
              const want = byId.get(it.id)!;
              expect(it.version).toBe(want.version);
              expect(hex(it.wrapped)).toBe(hex(want.wrapped));
              expect(it.context).toEqual(want.context);
            }
          },
        ),
        { numRuns: 40 },
      );
    });

    it('a scan can be resumed from any cursor it returned', async () => {
      const key = 'local://resume';
      const records = Array.from({ length: 25 }, (_, i) =>
        dek(`r-${String(i).padStart(2, '0')}`, key, i % 3 === 0 ? '1' : '2', bytes(i)),
      );
      await store.insertMany(records);
      const first = await store.scan({ keyRef: key, notVersion: '3' }, null, 7);
      expect(first.items).toHaveLength(7);
      expect(first.cursor).not.toBeNull();
      // Resuming twice from the same cursor (a retried shard) yields the same page.
      const a = await store.scan({ keyRef: key, notVersion: '3' }, first.cursor, 7);
      const b = await store.scan({ keyRef: key, notVersion: '3' }, first.cursor, 7);
      expect(a.items.map((d) => d.id)).toEqual(b.items.map((d) => d.id));
      const seen = new Set(first.items.map((d) => d.id));
      for (const d of a.items) expect(seen.has(d.id)).toBe(false);
    });

    it('scan filters by versions and by notVersion', async () => {
      const key = 'local://filters';
      await store.insertMany([
        dek('f-a', key, '1', bytes(1)),
        dek('f-b', key, '2', bytes(2)),
        dek('f-c', key, '3', bytes(3)),
        dek('f-d', key, '3', bytes(4)),
        dek('f-e', 'local://filters-other', '1', bytes(5)),
      ]);
      const ids = async (q: DekScanQuery) => (await scanAll(store, q, 2)).items.map((d) => d.id).sort();
      expect(await ids({ keyRef: key })).toEqual(['f-a', 'f-b', 'f-c', 'f-d']);
      expect(await ids({ keyRef: key, notVersion: '3' })).toEqual(['f-a', 'f-b']);
      expect(await ids({ keyRef: key, versions: ['3', '1'] })).toEqual(['f-a', 'f-c', 'f-d']);
      expect(await ids({ keyRef: key, versions: ['1', '3'], notVersion: '3' })).toEqual(['f-a']);
      expect(await ids({ keyRef: key, versions: [] })).toEqual([]);
      expect(await ids({ keyRef: key, versions: ['9'] })).toEqual([]);
      expect(await ids({ keyRef: 'local://nothing-here' })).toEqual([]);
    });

    it('scan honours a shard range [idFrom, idTo) together with version filters', async () => {
      const key = 'local://ranges';
      const recs = Array.from({ length: 30 }, (_, i) =>
        dek(`r-${String(i).padStart(2, '0')}`, key, String(1 + (i % 3)), bytes(i)),
      );
      await store.insertMany(recs);
      const ids = async (q: DekScanQuery, limit: number) =>
        (await scanAll(store, q, limit)).items.map((d) => d.id).sort();
      for (const limit of [1, 4, 100]) {
        expect(await ids({ keyRef: key, idFrom: 'r-10', idTo: 'r-20' }, limit)).toEqual(
          recs.filter((r) => r.id >= 'r-10' && r.id < 'r-20').map((r) => r.id),
        );
        expect(await ids({ keyRef: key, idTo: 'r-05', notVersion: '1' }, limit)).toEqual(
          recs.filter((r) => r.id < 'r-05' && r.version !== '1').map((r) => r.id),
        );
        expect(await ids({ keyRef: key, idFrom: 'r-25' }, limit)).toEqual(
          recs.filter((r) => r.id >= 'r-25').map((r) => r.id),
        );
      }
      expect(await ids({ keyRef: key, idFrom: 'r-20', idTo: 'r-10' }, 5)).toEqual([]);
    });

    it('splitPoints (when offered) cut the matching DEKs into ranges that cover each exactly once', async () => {
      if (!store.splitPoints) return;
      // One old version (the usual job), then two: a store may cut them by different means.
      for (const [key, versionOf] of [
        ['local://split', (i: number) => (i % 4 === 0 ? '2' : '1')],
        ['local://split3', (i: number) => (i % 4 === 0 ? '2' : i % 3 === 0 ? '0' : '1')],
      ] as const) {
        const recs = Array.from({ length: 101 }, (_, i) =>
          dek(`${key.slice(8)}-${String(i).padStart(3, '0')}`, key, versionOf(i), bytes(i % 256)),
        );
        await store.insertMany(recs);
        const moving = recs.filter((r) => r.version !== '2').length;
        for (const parts of [1, 2, 3, 7]) {
          const q: DekScanQuery = { keyRef: key, notVersion: '2' };
          const points = await store.splitPoints(q, parts);
          expect(points.length).toBeLessThanOrEqual(parts - 1);
          expect([...points].sort()).toEqual(points);
          const bounds = [undefined, ...points, undefined];
          const seen: string[] = [];
          for (let i = 0; i + 1 < bounds.length; i++) {
            const part = await scanAll(
              store,
              {
                ...q,
                ...(bounds[i] ? { idFrom: bounds[i] } : {}),
                ...(bounds[i + 1] ? { idTo: bounds[i + 1] } : {}),
              },
              10,
            );
            if (parts > 1) {
              // About equal: a part holds the matching DEKs over parts, give or take one.
              expect(part.items.length).toBeGreaterThanOrEqual(Math.floor(moving / parts) - 1);
              expect(part.items.length).toBeLessThanOrEqual(Math.ceil(moving / parts) + 1);
            }
            seen.push(...part.items.map((d) => d.id));
          }
          expect(seen.sort()).toEqual(recs.filter((r) => r.version !== '2').map((r) => r.id));
        }
      }
    });

    it('scan refuses a limit below 1', async () => {
      await expect(store.scan({ keyRef: 'local://k' }, null, 0)).rejects.toBeInstanceOf(ValidationError);
    });

    it('replace is compare-and-swap on the ciphertext bytes', async () => {
      const key = 'local://cas';
      const w0 = bytes(10, 11, 12, 13);
      await store.insertMany([dek('c-1', key, '1', w0, { a: 'b' })]);
      const read = (await store.get('c-1'))!;
      expect(await store.replace('c-1', bytes(20, 21, 22), '2', read.wrapped)).toBe(true);
      const after = (await store.get('c-1'))!;
      expect(after.version).toBe('2');
      expect(hex(after.wrapped)).toBe('141516');
      expect(after.keyRef).toBe(key);
      expect(after.context).toEqual({ a: 'b' });
      // The old bytes no longer match: a second writer with the stale read loses.
      expect(await store.replace('c-1', bytes(30), '3', w0)).toBe(false);
      // A prefix or an extension of the stored bytes is not equal to them.
      expect(await store.replace('c-1', bytes(30), '3', bytes(20, 21))).toBe(false);
      expect(await store.replace('c-1', bytes(30), '3', bytes(20, 21, 22, 0))).toBe(false);
      expect(hex((await store.get('c-1'))!.wrapped)).toBe('141516');
      expect(await store.replace('no-such-dek', bytes(1), '2', bytes(1))).toBe(false);
    });

    it('replace loses to a concurrent application write, which stays', async () => {
      const key = 'local://race';
      await store.insertMany([dek('x-1', key, '1', bytes(1, 1, 1))]);
      const seenByRewrap = (await store.get('x-1'))!;
      // The application writes a fresh DEK under version 2 meanwhile.
      expect(await store.replace('x-1', bytes(2, 2, 2), '2', seenByRewrap.wrapped)).toBe(true);
      // The re-wrap of the stale read must not overwrite it.
      expect(await store.replace('x-1', bytes(3, 3, 3), '3', seenByRewrap.wrapped)).toBe(false);
      const now = (await store.get('x-1'))!;
      expect(hex(now.wrapped)).toBe('020202');
      expect(now.version).toBe('2');
    });

    it('replaceMany reports a result per item and applies only the matching ones', async () => {
      const key = 'local://many';
      await store.insertMany([
        dek('m-1', key, '1', bytes(1)),
        dek('m-2', key, '1', bytes(2)),
        dek('m-3', key, '1', bytes(3)),
      ]);
      const res = await store.replaceMany([
        { id: 'm-1', expected: bytes(1), newWrapped: bytes(101), newVersion: '2' },
        { id: 'm-2', expected: bytes(99), newWrapped: bytes(102), newVersion: '2' },
        { id: 'gone', expected: bytes(1), newWrapped: bytes(103), newVersion: '2' },
        { id: 'm-3', expected: bytes(3), newWrapped: bytes(104), newVersion: '2' },
        // The same DEK twice: the second item's expected bytes are stale by then.
        { id: 'm-1', expected: bytes(1), newWrapped: bytes(105), newVersion: '3' },
      ]);
      expect(res).toEqual([true, false, false, true, false]);
      expect(hex((await store.get('m-1'))!.wrapped)).toBe('65');
      expect((await store.get('m-1'))!.version).toBe('2');
      expect(hex((await store.get('m-2'))!.wrapped)).toBe('02');
      expect((await store.get('m-2'))!.version).toBe('1');
      expect(await store.get('gone')).toBeNull();
      expect(await store.replaceMany([])).toEqual([]);
    });

    it('replaceMany of same-length items writes all, none or exactly the matching ones', async () => {
      const key = 'local://uniform';
      const of = (b: number) => new Uint8Array(40).fill(b);
      await store.insertMany(Array.from({ length: 60 }, (_, i) => dek(`u-${i}`, key, '1', of(i))));
      const items = (ids: number[], stale: (i: number) => boolean, to: number) =>
        ids.map((i) => ({
          id: `u-${i}`,
          expected: of(stale(i) ? 255 : i),
          newWrapped: of(to),
          newVersion: '2',
        }));
      const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);
      // None match, then all, then every third is stale.
      expect(await store.replaceMany(items(range(0, 20), () => true, 100))).toEqual(Array(20).fill(false));
      expect(await store.replaceMany(items(range(0, 20), () => false, 101))).toEqual(Array(20).fill(true));
      const mixed = await store.replaceMany(items(range(20, 40), (i) => i % 3 === 0, 102));
      expect(mixed).toEqual(range(20, 40).map((i) => i % 3 !== 0));
      for (const i of range(0, 60)) {
        const d = (await store.get(`u-${i}`))!;
        const moved = i < 20 || i % 3 !== 0;
        expect(d.version).toBe(moved ? '2' : '1');
        expect(hex(d.wrapped)).toBe(hex(of(moved ? (i < 20 ? 101 : 102) : i)));
      }
    });

    it('replaceMany takes items of different lengths and target versions in one call', async () => {
      const key = 'local://mixed';
      const long = (b: number, n: number) => new Uint8Array(n).fill(b);
      await store.insertMany([
        dek('q-1', key, '1', long(1, 3)),
        dek('q-2', key, '1', long(2, 200)),
        dek('q-3', key, '1', long(3, 1)),
      ]);
      // One version for all, lengths differing on both sides.
      expect(
        await store.replaceMany([
          { id: 'q-1', expected: long(1, 3), newWrapped: long(11, 90), newVersion: '2' },
          { id: 'q-2', expected: long(2, 200), newWrapped: long(12, 1), newVersion: '2' },
          { id: 'q-3', expected: long(3, 2), newWrapped: long(13, 7), newVersion: '2' },
        ]),
      ).toEqual([true, true, false]);
      expect(hex((await store.get('q-1'))!.wrapped)).toBe('0b'.repeat(90));
      expect(hex((await store.get('q-2'))!.wrapped)).toBe('0c');
      expect(hex((await store.get('q-3'))!.wrapped)).toBe('03');
      // Versions differing within the call.
      expect(
        await store.replaceMany([
          { id: 'q-1', expected: long(11, 90), newWrapped: long(21, 5), newVersion: '3' },
          { id: 'q-3', expected: long(3, 1), newWrapped: long(23, 5), newVersion: '4' },
        ]),
      ).toEqual([true, true]);
      expect((await store.get('q-1'))!.version).toBe('3');
      expect((await store.get('q-3'))!.version).toBe('4');
      expect(hex((await store.get('q-3'))!.wrapped)).toBe('17'.repeat(5));
    });

    it('countByVersion counts the DEKs of one key per version', async () => {
      const key = 'local://count';
      await store.insertMany([
        dek('n-1', key, '1', bytes(1)),
        dek('n-2', key, '1', bytes(2)),
        dek('n-3', key, '2', bytes(3)),
        dek('n-4', 'local://count-other', '1', bytes(4)),
      ]);
      expect(await store.countByVersion(key)).toEqual({ '1': 2, '2': 1 });
      await store.replace('n-1', bytes(5), '2', bytes(1));
      expect(await store.countByVersion(key)).toEqual({ '1': 1, '2': 2 });
      expect(await store.countByVersion('local://count-none')).toEqual({});
    });

    it('insertMany with a duplicate id inserts nothing and names the id', async () => {
      const key = 'local://dup';
      await store.insertMany([dek('dup-0001', key, '1', bytes(1))]);
      const err = await store
        .insertMany([dek('dup-0002', key, '1', bytes(2)), dek('dup-0001', key, '1', bytes(9))])
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as Error).message).toContain('dup-0001');
      expect(await store.get('dup-0002')).toBeNull();
      expect(hex((await store.get('dup-0001'))!.wrapped)).toBe('01');
      // A duplicate inside one batch is refused the same way.
      await expect(
        store.insertMany([dek('dup-0003', key, '1', bytes(3)), dek('dup-0003', key, '1', bytes(4))]),
      ).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('dup-0003')).toBeNull();
      expect(await store.countByVersion(key)).toEqual({ '1': 1 });
    });
  });
}
