import type { WrapContext } from './KeyProvider.js';

/** One wrapped data key as an application stores it. */
export interface DekRecord {
  id: string;
  /** Canonical key ref of the KEK. */
  keyRef: string;
  /** KEK version it is wrapped under. */
  version: string;
  wrapped: Uint8Array;
  context: WrapContext;
}

export interface DekScanQuery {
  keyRef: string;
  /** Only DEKs under one of these versions. */
  versions?: string[];
  /** Only DEKs not under this version (typically the primary). */
  notVersion?: string;
  /** Only ids >= idFrom (a shard's lower bound, inclusive). */
  idFrom?: string;
  /** Only ids < idTo (a shard's upper bound, exclusive). */
  idTo?: string;
}

export interface DekReplacement {
  id: string;
  /** The ciphertext that was read; the write happens only if the row still holds it. */
  expected: Uint8Array;
  newWrapped: Uint8Array;
  newVersion: string;
}

/** An application's table of wrapped DEKs. */
export interface DekStore {
  readonly id: string;
  /** Streams matching DEKs in a stable order; cursor is opaque, null when done. */
  scan(
    query: DekScanQuery,
    cursor: string | null,
    limit: number,
  ): Promise<{ items: DekRecord[]; cursor: string | null }>;
  get(id: string): Promise<DekRecord | null>;
  /** Compare-and-swap: true if written, false if the row changed (or vanished) since it was read. */
  replace(id: string, newWrapped: Uint8Array, newVersion: string, expected: Uint8Array): Promise<boolean>;
  /** Batched compare-and-swap, atomic per item; result i belongs to item i. */
  replaceMany(items: DekReplacement[]): Promise<boolean[]>;
  /**
   * Up to `parts - 1` ids that split the matching DEKs into ranges of about equal size, in
   * ascending order; shard i covers [point[i-1], point[i]). Absent: the store cannot shard.
   */
  splitPoints?(query: DekScanQuery, parts: number): Promise<string[]>;
  /** DEK count per version of a key. */
  countByVersion(keyRef: string): Promise<Record<string, number>>;
  /** Application-side write (demo seeding, tests). Fails on duplicate ids. */
  insertMany(records: DekRecord[]): Promise<void>;
  close?(): Promise<void>;
}
