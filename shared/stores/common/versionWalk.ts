import { ValidationError } from '../../core/errors.js';
import type { DekRecord, DekScanQuery } from '../../core/ports/DekStore.js';
import { decodeCursor, encodeCursor } from '../sqlite/scanCursor.js';

/**
 * The scan every DekStore shares: walk a key's versions in order (the query's list, or the
 * store's index skipping `notVersion`), and page through each version by id. The cursor is
 * {version, last id}. Stores supply only the two primitives their database answers.
 */
export interface VersionWalk {
  storeId: string;
  /** The key's next version after `after` (null: the first), in store order, or null. */
  versionAfter(after: string | null): Promise<string | null>;
  /** Up to `need` DEKs of `version` after `afterId` (null: from the start), and whether more follow. */
  page(version: string, afterId: string | null, need: number): Promise<{ items: DekRecord[]; more: boolean }>;
}

/** Validates the arguments every scan takes; returns the key ref. */
export function checkScan(storeId: string, query: DekScanQuery, limit: number): string {
  const keyRef = query?.keyRef;
  if (typeof keyRef !== 'string' || keyRef.length === 0) {
    throw new ValidationError(`store ${storeId}: scan needs a keyRef`);
  }
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ValidationError(
      `store ${storeId}: scan limit must be a positive integer, got ${String(limit)}`,
    );
  }
  return keyRef;
}

export async function walkVersions(
  w: VersionWalk,
  query: DekScanQuery,
  cursor: string | null,
  limit: number,
  accept: (version: string) => boolean = () => true,
): Promise<{ items: DekRecord[]; cursor: string | null }> {
  const skip = query.notVersion;
  const list = query.versions
    ? [...new Set(query.versions)]
        .filter((v) => v !== skip && accept(v))
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    : undefined;
  const foreign = () => new ValidationError(`store ${w.storeId}: scan cursor does not belong to this query`);
  const next = async (after: string | null): Promise<string | null> => {
    if (list) {
      if (after === null) return list[0] ?? null;
      const i = list.indexOf(after);
      if (i === -1) throw foreign();
      return list[i + 1] ?? null;
    }
    let v = await w.versionAfter(after);
    while (v !== null && v === skip) v = await w.versionAfter(v);
    return v;
  };
  const items: DekRecord[] = [];
  let version: string | null;
  let afterId: string | null = null;
  if (cursor === null || cursor === undefined) {
    version = await next(null);
  } else {
    const pos = decodeCursor(cursor, w.storeId);
    if (pos.v === skip || (list && !list.includes(pos.v))) throw foreign();
    version = pos.v;
    afterId = pos.id;
  }
  const at = () => {
    const last = items[items.length - 1]!;
    return encodeCursor({ v: last.version, id: last.id });
  };
  while (version !== null) {
    const page = await w.page(version, afterId, limit - items.length);
    items.push(...page.items);
    if (page.more) return { items, cursor: at() };
    version = await next(version);
    afterId = null;
    if (items.length === limit) break;
  }
  return { items, cursor: version === null ? null : at() };
}
