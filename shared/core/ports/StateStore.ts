import type { ManagedKey } from '../domain/key.js';
import type { ActionRecord, Plan } from '../plan/types.js';

export interface InventorySnapshot {
  id: string;
  takenAt: string;
  keys: ManagedKey[];
  /** Providers that could not be listed; their keys are absent, not deleted. */
  errors: { providerId: string; message: string }[];
}

export type RunStatus = 'running' | 'completed' | 'partial' | 'failed';

export interface ApplyRun {
  id: string;
  planId: string;
  startedAt: string;
  finishedAt?: string;
  status: RunStatus;
}

export interface RewrapCounts {
  scanned: number;
  rewrapped: number;
  verified: number;
  /** CAS lost to a concurrent application write; re-read and retried. */
  conflicts: number;
  /** DEKs that could not be re-wrapped (reported per item, job continues). */
  failed: number;
  /** Provider calls retried after a retryable error. */
  retried?: number;
  /** Provider calls the provider throttled. */
  throttled?: number;
}

/** A slice of a re-wrap job: DEK ids in [idFrom, idTo). Any worker may claim it with a lease. */
export interface RewrapShard {
  /** The job this shard belongs to. */
  parent: string;
  index: number;
  count: number;
  idFrom?: string;
  idTo?: string;
}

export interface RewrapJob {
  /** Deterministic: the same plan action and store always map to the same job. */
  id: string;
  keyRef: string;
  storeId: string;
  fromVersions: string[];
  toVersion: string;
  status: 'running' | 'done' | 'failed';
  /** Present when this job is one shard of a larger job. */
  shard?: RewrapShard;
  /** On a job split into shards: the shard job ids. */
  shardIds?: string[];
  /** Last committed scan cursor; resume starts after it. */
  cursor: string | null;
  counts: RewrapCounts;
  /** Ids and reasons of DEKs that failed (bounded). */
  failures: { id: string; error: string }[];
  /** When the job was first prepared (absent on jobs written by older versions). */
  createdAt?: string;
  /**
   * DEKs the job had to move when it was prepared: the base of progress and of the lag metric,
   * read by every worker instead of a count of the store each. Absent on shards and on jobs
   * written by older versions.
   */
  pending?: number;
  updatedAt: string;
}

export interface AuditRecord {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/**
 * A small document rekey keeps besides its typed state: a processed event id, an approval
 * request, an incident. Records are grouped by kind; every write is conditional on `rev`.
 */
export interface StateRecord {
  kind: string;
  id: string;
  /** 1 on insert, +1 on every update. */
  rev: number;
  body: Record<string, unknown>;
  updatedAt: string;
}

/** One stored item, as a backup carries it. Leases are not backed up (they are transient). */
export type StateEntry =
  | { t: 'inventory'; v: InventorySnapshot }
  | { t: 'plan'; v: Plan }
  | { t: 'run'; v: ApplyRun }
  | { t: 'action'; v: ActionRecord }
  | { t: 'job'; v: RewrapJob }
  | { t: 'audit'; v: AuditRecord }
  | { t: 'record'; v: StateRecord };

/**
 * rekey's own state. Every write that can race is conditional: a lease, an audit append, a
 * job checkpoint.
 */
export interface StateStore {
  saveInventory(s: InventorySnapshot): Promise<void>;
  latestInventory(): Promise<InventorySnapshot | null>;

  savePlan(plan: Plan): Promise<void>;
  getPlan(id: string): Promise<Plan | null>;
  latestPlan(): Promise<Plan | null>;

  saveRun(run: ApplyRun): Promise<void>;
  getRun(id: string): Promise<ApplyRun | null>;
  /** Most recent runs first. */
  listRuns(limit: number): Promise<ApplyRun[]>;

  putActionRecord(rec: ActionRecord): Promise<void>;
  getActionRecords(planId: string): Promise<ActionRecord[]>;

  /** Takes or extends the lease if free, expired or already held by `owner`. */
  acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean>;
  releaseLease(name: string, owner: string): Promise<void>;
  /** Who holds a lease and until when (ms), or null if nobody does (or it expired). */
  leaseOwner(name: string, nowMs: number): Promise<{ owner: string; expiresAtMs: number } | null>;

  getRewrapJob(id: string): Promise<RewrapJob | null>;
  /** Inserts the job if absent; returns the stored job (existing one wins). */
  createRewrapJob(job: RewrapJob): Promise<RewrapJob>;
  saveRewrapJob(job: RewrapJob): Promise<void>;

  auditTail(): Promise<AuditRecord | null>;
  /** Appends only if `rec.seq` is the next sequence number; false if someone else appended first. */
  auditAppend(rec: AuditRecord): Promise<boolean>;
  auditRead(fromSeq: number, limit: number): Promise<AuditRecord[]>;

  /**
   * Writes a record if the stored rev is `expectedRev` (0: the record must not exist yet), storing
   * rev `expectedRev + 1`. Returns false, writing nothing, when someone else got there first.
   */
  putRecord(
    rec: { kind: string; id: string; body: Record<string, unknown>; updatedAt: string },
    expectedRev: number,
  ): Promise<boolean>;
  getRecord(kind: string, id: string): Promise<StateRecord | null>;
  /** Records of one kind in id order, starting after `afterId`. */
  listRecords(kind: string, opts: { afterId?: string; limit: number }): Promise<StateRecord[]>;

  /**
   * Every entry, for a backup: inventories, plans, runs and actions, jobs, records, then the audit
   * log in sequence order. Restores go through the ordinary writes above, so any store can take one.
   */
  exportEntries?(): AsyncIterable<StateEntry>;

  close?(): Promise<void>;
}
