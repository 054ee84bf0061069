import { IntegrityError } from '../../core/errors.js';
import type { DekRecord } from '../../core/ports/DekStore.js';
import type { WrapContext } from '../../core/ports/KeyProvider.js';

/** A DEK row as the SQL stores select it: id, key, version, wrapped bytes, context text. */
export interface StoredDekRow {
  id: string;
  k: string;
  v: string;
  w: Buffer;
  c: string | null;
}

/** Distinct context texts a store keeps parsed. */
const MAX_ENTRIES = 4096;

/**
 * The wrap contexts of a DEK table, parsed once per distinct text. A table holds few distinct
 * contexts (tenants, tables) and a scan meets each on every page. Records share the parsed
 * object, so it is frozen; a provider may then key its own per-context work on the object.
 */
export class ContextMemo {
  private readonly parsed = new Map<string, WrapContext>();

  constructor(private readonly storeId: string) {}

  /** A stored context column (null or empty means no context) as a frozen object. */
  of(dekId: string, text: string | null): WrapContext {
    const key = text === null || text === '' ? '{}' : text;
    let context = this.parsed.get(key);
    if (context === undefined) {
      try {
        context = Object.freeze(JSON.parse(key) as WrapContext);
      } catch (e) {
        throw new IntegrityError(`store ${this.storeId}: DEK ${dekId} has a context that is not JSON`, {
          cause: e,
        });
      }
      if (this.parsed.size >= MAX_ENTRIES) this.parsed.clear();
      this.parsed.set(key, context);
    }
    return context;
  }

  /** The record of a stored DEK, its context text parsed (once per distinct text). */
  record(id: string, keyRef: string, version: string, wrapped: Buffer, context: string | null): DekRecord {
    return { id, keyRef, version, wrapped, context: this.of(id, context) };
  }
}
