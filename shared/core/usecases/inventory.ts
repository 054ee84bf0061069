import { createHash } from 'node:crypto';
import type { ManagedKey } from '../domain/key.js';
import { checkKey } from '../domain/lifecycle.js';
import { errorMessage } from '../errors.js';
import { compromisedVersions, withCompromiseMarks } from '../governance/marks.js';
import type { DekCensus } from '../plan/evaluate.js';
import type { InventorySnapshot } from '../ports/StateStore.js';
import type { RekeyContext } from './context.js';

/**
 * Lists every key of every configured provider and records the snapshot (unless `record` is
 * false: read-only reports list without leaving a trace in the state).
 */
export async function takeInventory(
  ctx: RekeyContext,
  opts: { record?: boolean } = {},
): Promise<InventorySnapshot> {
  const keys: ManagedKey[] = [];
  const errors: InventorySnapshot['errors'] = [];
  for (const [id, provider] of ctx.providers) {
    try {
      let cursor: string | null = null;
      let n = 0;
      do {
        const page = await provider.listKeys({}, cursor);
        for (const k of page.items) {
          checkKey(k);
          keys.push(k);
        }
        n += page.items.length;
        cursor = page.cursor;
      } while (cursor !== null);
      ctx.onProgress?.({ kind: 'inventory', providerId: id, keys: n });
    } catch (e) {
      errors.push({ providerId: id, message: errorMessage(e) });
    }
  }
  // Compromise marks live in rekey's state (providers may not keep them): lay them over the keys.
  const marked = withCompromiseMarks(keys, await compromisedVersions(ctx));
  keys.splice(0, keys.length, ...marked);
  const takenAt = ctx.clock.now().toISOString();
  const id = `inv-${takenAt.replace(/[-:.]/g, '').slice(0, 15)}-${createHash('sha256')
    .update(`${ctx.instanceId}|${takenAt}|${keys.length}`)
    .digest('hex')
    .slice(0, 8)}`;
  const snapshot: InventorySnapshot = { id, takenAt, keys, errors };
  if (opts.record !== false) await ctx.state.saveInventory(snapshot);
  return snapshot;
}

/** DEK counts per key, per store, per version, across every configured store. */
export async function takeCensus(ctx: RekeyContext, keys: ManagedKey[]): Promise<DekCensus> {
  const census: DekCensus = new Map();
  for (const key of keys) {
    const perStore: Record<string, Record<string, number>> = {};
    for (const [storeId, store] of ctx.stores) perStore[storeId] = await store.countByVersion(key.ref);
    census.set(key.ref, perStore);
  }
  return census;
}

/** Total DEKs under one version of a key, across every configured store. */
export async function dekReferences(ctx: RekeyContext, keyRef: string, version: string): Promise<number> {
  let n = 0;
  for (const store of ctx.stores.values()) n += (await store.countByVersion(keyRef))[version] ?? 0;
  return n;
}
