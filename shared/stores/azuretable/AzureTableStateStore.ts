import { randomBytes } from 'node:crypto';
import { odata, type TableClient, type TableEntityResult, type TransactionAction } from '@azure/data-tables';
import { ConflictError, IntegrityError, ValidationError } from '../../core/errors.js';
import type { ActionRecord, Plan } from '../../core/plan/types.js';
import type {
  ApplyRun,
  AuditRecord,
  InventorySnapshot,
  RewrapJob,
  StateRecord,
  StateStore,
} from '../../core/ports/StateStore.js';
import { checkRecordWrite, type RecordWrite } from '../common/records.js';
import { positiveInt, TimedDocumentStore, type TimedKind } from '../common/timedDocuments.js';
import { requireString } from '../sqlite/json.js';
import {
  type AzureStorageConnection,
  checkTableName,
  createTableClient,
  guarded,
  statusOf,
  translateStorageError,
} from './client.js';
import {
  chunkProps,
  ENTITY_BODY_BYTES,
  escapeKey,
  gunzipJson,
  gzipJson,
  indexKey,
  key,
  newestFirstKey,
  packSmall,
  readChunks,
  seqKey,
  unescapeKey,
  unpackSmall,
} from './keys.js';

export type AzureTableStateStoreOptions = { table: string } & (
  | { client: TableClient }
  | AzureStorageConnection
);

type Entity = Record<string, unknown>;
type Stored = TableEntityResult<Entity>;

/** One stored item as a backup carries it (the StateStore port's backup entry). */
export type AzureStateEntry =
  | { t: 'inventory'; v: InventorySnapshot }
  | { t: 'plan'; v: Plan }
  | { t: 'run'; v: ApplyRun }
  | { t: 'action'; v: ActionRecord }
  | { t: 'job'; v: RewrapJob }
  | { t: 'audit'; v: AuditRecord }
  | { t: 'record'; v: StateRecord };

/**
 * rekey's state in one Azure Table (Table Storage or Cosmos DB for Table). Layout:
 *
 * | entity                | PartitionKey             | RowKey                     |
 * |-----------------------|--------------------------|----------------------------|
 * | snapshot / plan / run | `plan:<id>` ...          | `body` (+ `part:<gen>:<n>` when large) |
 * | time index of those   | `plan:bytime` ...        | `<newest-first ms>:<id>`   |
 * | action record         | `actions:<planId>`       | `<index, 10 digits>`       |
 * | lease                 | `lease:<name>`           | `lease`                    |
 * | re-wrap job           | `job:<id>`               | `job`                      |
 * | audit record          | `audit`                  | `<seq, 16 digits>`         |
 * | audit tail pointer    | `audit`                  | `tail`                     |
 * | record                | `record:<kind>`          | `<id>`                     |
 *
 * Ids are escaped (keys.ts). Conditional writes use what the service offers: insert fails on
 * an existing entity (409), update and delete take the ETag read before (412 when someone
 * wrote in between). An audit append is one entity group transaction in the `audit` partition
 * (insert record n, move the tail pointer from n-1 with its ETag): both or neither, so the
 * chain can never fork or leave a gap. Bodies are gzipped JSON in binary chunks.
 */
export class AzureTableStateStore extends TimedDocumentStore implements StateStore {
  readonly table: string;
  readonly client: TableClient;

  constructor(opts: AzureTableStateStoreOptions) {
    super();
    this.table = checkTableName(opts.table, 'azure table state store');
    this.client = 'client' in opts ? opts.client : createTableClient(opts, this.table);
  }

  /** Creates the table if missing (tests, demos, first runs; Terraform creates it in production). */
  async ensureTable(): Promise<void> {
    try {
      await this.client.createTable();
    } catch (e) {
      if (statusOf(e) !== 409) throw translateStorageError(e, `creating table ${this.table}`);
    }
  }

  private async get(pk: string, rk: string): Promise<Stored | null> {
    try {
      return await this.client.getEntity<Entity>(pk, rk);
    } catch (e) {
      if (statusOf(e) === 404 && !/TableNotFound/.test(String((e as Error).message))) return null;
      throw e;
    }
  }

  private async query(filter: string, max = Number.POSITIVE_INFINITY): Promise<Stored[]> {
    const out: Stored[] = [];
    const pageSize = Number.isFinite(max) ? Math.min(max, 1000) : 1000;
    for await (const page of this.client
      .listEntities<Entity>({ queryOptions: { filter } })
      .byPage({ maxPageSize: pageSize })) {
      for (const e of page) {
        out.push(e);
        if (out.length >= max) return out;
      }
    }
    return out;
  }

  /** Inserts; false when the entity already exists. */
  private async insert(entity: Entity & { partitionKey: string; rowKey: string }): Promise<boolean> {
    try {
      await this.client.createEntity(entity);
      return true;
    } catch (e) {
      if (statusOf(e) === 409) return false;
      throw e;
    }
  }

  /** Replaces the entity only if it still has `etag`; false when someone wrote it first. */
  private async replaceIf(entity: Entity & { partitionKey: string; rowKey: string }, etag: string) {
    try {
      await this.client.updateEntity(entity, 'Replace', { etag });
      return true;
    } catch (e) {
      if (statusOf(e) === 412 || statusOf(e) === 404) return false;
      throw e;
    }
  }

  // --- bodies kept under a time index (snapshots, plans, runs) ---------------------------------

  protected async saveTimed(kind: TimedKind, id: string, ms: number, value: unknown): Promise<void> {
    const pk = key(`${kind} ${id}`, kind, escapeKey(id));
    const packed = gzipJson(value);
    const previous = await this.get(pk, 'body');
    if (packed.length <= ENTITY_BODY_BYTES) {
      await this.client.upsertEntity(
        { partitionKey: pk, rowKey: 'body', at: ms, ...chunkProps(packed) },
        'Replace',
      );
    } else {
      // Large bodies: parts first, under a fresh generation, so a reader never mixes two saves.
      const gen = randomBytes(6).toString('hex');
      let n = 0;
      for (let i = 0; i < packed.length; i += ENTITY_BODY_BYTES) {
        await this.client.upsertEntity(
          {
            partitionKey: pk,
            rowKey: `part:${gen}:${indexKey(n++)}`,
            ...chunkProps(packed.subarray(i, i + ENTITY_BODY_BYTES)),
          },
          'Replace',
        );
      }
      await this.client.upsertEntity({ partitionKey: pk, rowKey: 'body', at: ms, gen, parts: n }, 'Replace');
    }
    await this.client.upsertEntity(
      { partitionKey: `${kind}:bytime`, rowKey: key(`${kind} ${id}`, newestFirstKey(ms), escapeKey(id)), id },
      'Replace',
    );
    if (previous && Number(previous.at) !== ms) {
      await this.deleteQuietly(`${kind}:bytime`, `${newestFirstKey(Number(previous.at))}:${escapeKey(id)}`);
    }
    if (typeof previous?.gen === 'string') await this.dropParts(pk, previous.gen);
  }

  private async deleteQuietly(pk: string, rk: string): Promise<void> {
    try {
      await this.client.deleteEntity(pk, rk);
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
    }
  }

  private partsOf(pk: string, gen: string): Promise<Stored[]> {
    const from = `part:${gen}:`;
    return this.query(odata`PartitionKey eq ${pk} and RowKey ge ${from} and RowKey lt ${`part:${gen};`}`);
  }

  private async dropParts(pk: string, gen: string): Promise<void> {
    for (const p of await this.partsOf(pk, gen)) await this.deleteQuietly(pk, p.rowKey!);
  }

  protected async readTimed<T>(kind: TimedKind, id: string): Promise<T | null> {
    const pk = key(`${kind} ${id}`, kind, escapeKey(id));
    const head = await this.get(pk, 'body');
    if (!head) return null;
    const where = `${kind} ${id}`;
    if (typeof head.gen !== 'string') return gunzipJson<T>(readChunks(head, where), where);
    const parts = await this.partsOf(pk, head.gen);
    if (parts.length !== Number(head.parts)) {
      throw new IntegrityError(`${where}: ${parts.length} of ${String(head.parts)} parts found`);
    }
    return gunzipJson<T>(Buffer.concat(parts.map((p) => readChunks(p, where))), where);
  }

  protected async latestIds(kind: TimedKind, limit: number): Promise<string[]> {
    const index = await this.query(odata`PartitionKey eq ${`${kind}:bytime`}`, limit);
    return index.map((entry) => String(entry.id));
  }

  protected guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return guarded(what, fn);
  }

  // --- action records ------------------------------------------------------------------------

  async putActionRecord(rec: ActionRecord): Promise<void> {
    const planId = requireString(rec.planId, 'action record planId');
    if (!Number.isSafeInteger(rec.index) || rec.index < 0) {
      throw new ValidationError(`action record of plan ${planId}: index must be an integer >= 0`);
    }
    const what = `action ${rec.index} of plan ${planId}`;
    const entity = {
      partitionKey: key(what, 'actions', escapeKey(planId)),
      rowKey: indexKey(rec.index),
      status: rec.status,
      ...packSmall(rec, what),
    };
    await guarded(`saving ${what}`, () => this.client.upsertEntity(entity, 'Replace'));
  }

  async getActionRecords(planId: string): Promise<ActionRecord[]> {
    const pk = key(`actions of plan ${planId}`, 'actions', escapeKey(planId));
    const items = await guarded(`reading actions of plan ${planId}`, () =>
      this.query(odata`PartitionKey eq ${pk}`),
    );
    return items.map((i) => unpackSmall<ActionRecord>(i, `action record of plan ${planId}`));
  }

  // --- leases --------------------------------------------------------------------------------

  private leaseKey(name: string): string {
    return key(`lease ${name}`, 'lease', escapeKey(name));
  }

  async acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean> {
    requireString(name, 'lease name');
    requireString(owner, 'lease owner');
    positiveInt(ttlMs, `lease ${name} ttlMs`);
    if (!Number.isSafeInteger(nowMs)) throw new ValidationError(`lease ${name}: nowMs must be an integer`);
    const pk = this.leaseKey(name);
    const entity = { partitionKey: pk, rowKey: 'lease', owner, expiresAtMs: nowMs + ttlMs };
    return guarded(`acquiring lease ${name}`, async () => {
      const current = await this.get(pk, 'lease');
      // Free: insert (a racing insert gets 409). Expired or ours: replace under the ETag read.
      if (!current) return this.insert(entity);
      if (current.owner !== owner && Number(current.expiresAtMs) > nowMs) return false;
      return this.replaceIf(entity, current.etag);
    });
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    const pk = this.leaseKey(name);
    await guarded(`releasing lease ${name}`, async () => {
      const current = await this.get(pk, 'lease');
      // Held by someone else, or by nobody: nothing to release.
      if (!current || current.owner !== owner) return;
      try {
        await this.client.deleteEntity(pk, 'lease', { etag: current.etag });
      } catch (e) {
        if (statusOf(e) !== 412 && statusOf(e) !== 404) throw e;
      }
    });
  }

  async leaseOwner(name: string, nowMs: number): Promise<{ owner: string; expiresAtMs: number } | null> {
    requireString(name, 'lease name');
    const item = await guarded(`reading lease ${name}`, () => this.get(this.leaseKey(name), 'lease'));
    if (!item || Number(item.expiresAtMs) <= nowMs) return null;
    return { owner: String(item.owner), expiresAtMs: Number(item.expiresAtMs) };
  }

  // --- re-wrap jobs --------------------------------------------------------------------------

  private jobEntity(job: RewrapJob) {
    const what = `rewrap job ${job.id}`;
    return {
      partitionKey: key(what, 'job', escapeKey(job.id)),
      rowKey: 'job',
      keyRef: job.keyRef,
      storeId: job.storeId,
      status: job.status,
      ...packSmall(job, what),
    };
  }

  async getRewrapJob(id: string): Promise<RewrapJob | null> {
    const pk = key(`rewrap job ${id}`, 'job', escapeKey(id));
    const item = await guarded(`reading rewrap job ${id}`, () => this.get(pk, 'job'));
    return item ? unpackSmall<RewrapJob>(item, `rewrap job ${id}`) : null;
  }

  async createRewrapJob(job: RewrapJob): Promise<RewrapJob> {
    const id = requireString(job.id, 'rewrap job id');
    const entity = this.jobEntity(job);
    if (await guarded(`creating rewrap job ${id}`, () => this.insert(entity))) return job;
    const existing = await this.getRewrapJob(id);
    if (!existing) throw new ConflictError(`rewrap job ${id} was created and removed concurrently`);
    return existing;
  }

  async saveRewrapJob(job: RewrapJob): Promise<void> {
    const id = requireString(job.id, 'rewrap job id');
    const entity = this.jobEntity(job);
    await guarded(`saving rewrap job ${id}`, () => this.client.upsertEntity(entity, 'Replace'));
  }

  // --- audit ---------------------------------------------------------------------------------

  private toAudit(item: Entity): AuditRecord {
    const seq = Number(item.seq);
    return {
      seq,
      ts: String(item.ts),
      actor: String(item.actor),
      action: String(item.action),
      target: item.target === undefined || item.target === null ? null : String(item.target),
      details: unpackSmall<Record<string, unknown>>(item, `audit seq ${seq} details`),
      prevHash: String(item.prevHash),
      hash: String(item.hash),
    };
  }

  async auditTail(): Promise<AuditRecord | null> {
    return guarded('reading audit tail', async () => {
      const tail = await this.get('audit', 'tail');
      if (!tail) return null;
      const seq = Number(tail.seq);
      const rec = await this.get('audit', seqKey(seq));
      if (!rec) throw new IntegrityError(`audit tail names record ${seq}, which is missing`);
      return this.toAudit(rec);
    });
  }

  async auditAppend(rec: AuditRecord): Promise<boolean> {
    if (!Number.isSafeInteger(rec.seq) || rec.seq < 1) return false;
    const entity = {
      partitionKey: 'audit',
      rowKey: seqKey(rec.seq),
      seq: rec.seq,
      ts: rec.ts,
      actor: rec.actor,
      action: rec.action,
      // Table Storage has no null: an absent property reads back as null.
      ...(rec.target === null || rec.target === undefined ? {} : { target: rec.target }),
      prevHash: rec.prevHash,
      hash: rec.hash,
      ...packSmall(rec.details ?? {}, `audit record ${rec.seq} details`),
    };
    return guarded(`appending audit record ${rec.seq}`, async () => {
      const tail = await this.get('audit', 'tail');
      const tailSeq = tail ? Number(tail.seq) : 0;
      if (rec.seq !== tailSeq + 1) return false;
      const pointer = { partitionKey: 'audit', rowKey: 'tail', seq: rec.seq };
      const moveTail: TransactionAction = tail
        ? ['update', pointer, 'Replace', { etag: tail.etag }]
        : ['create', pointer];
      try {
        await this.client.submitTransaction([['create', entity], moveTail]);
        return true;
      } catch (e) {
        // Someone appended first: the record exists (409) or the tail moved (412).
        if (statusOf(e) === 409 || statusOf(e) === 412) return false;
        throw e;
      }
    });
  }

  async auditRead(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    if (!Number.isSafeInteger(fromSeq)) throw new ValidationError('auditRead fromSeq must be an integer');
    positiveInt(limit, 'auditRead limit');
    const from = seqKey(Math.max(fromSeq, 0));
    // Sequence keys are digits; `:` sorts after them and before `tail`.
    const items = await guarded(`reading audit from ${fromSeq}`, () =>
      this.query(odata`PartitionKey eq ${'audit'} and RowKey ge ${from} and RowKey lt ${':'}`, limit),
    );
    return items.map((i) => this.toAudit(i));
  }

  // --- records -------------------------------------------------------------------------------

  private recordKey(kind: string): string {
    return key(`record kind ${kind}`, 'record', escapeKey(kind));
  }

  private toRecord(kind: string, item: Stored): StateRecord {
    const id = unescapeKey(item.rowKey!);
    return {
      kind,
      id,
      rev: Number(item.rev),
      updatedAt: String(item.updatedAt),
      body: unpackSmall<Record<string, unknown>>(item, `record ${kind}/${id}`),
    };
  }

  async putRecord(rec: RecordWrite, expectedRev: number): Promise<boolean> {
    checkRecordWrite(rec, expectedRev);
    const what = `record ${rec.kind}/${rec.id}`;
    const entity = {
      partitionKey: this.recordKey(rec.kind),
      rowKey: key(what, escapeKey(rec.id)),
      rev: expectedRev + 1,
      updatedAt: rec.updatedAt,
      ...packSmall(rec.body, what),
    };
    return guarded(`writing ${what}`, async () => {
      if (expectedRev === 0) return this.insert(entity);
      const current = await this.get(entity.partitionKey, entity.rowKey);
      if (!current || Number(current.rev) !== expectedRev) return false;
      return this.replaceIf(entity, current.etag);
    });
  }

  async getRecord(kind: string, id: string): Promise<StateRecord | null> {
    requireString(kind, 'record kind');
    requireString(id, `record ${kind} id`);
    const item = await guarded(`reading record ${kind}/${id}`, () =>
      this.get(this.recordKey(kind), escapeKey(id)),
    );
    return item ? this.toRecord(kind, item) : null;
  }

  async listRecords(kind: string, opts: { afterId?: string; limit: number }): Promise<StateRecord[]> {
    requireString(kind, 'record kind');
    positiveInt(opts.limit, 'listRecords limit');
    const pk = this.recordKey(kind);
    const filter = opts.afterId
      ? odata`PartitionKey eq ${pk} and RowKey gt ${escapeKey(opts.afterId)}`
      : odata`PartitionKey eq ${pk}`;
    const items = await guarded(`listing records ${kind}`, () => this.query(filter, opts.limit));
    return items.map((i) => this.toRecord(kind, i));
  }

  // --- backup --------------------------------------------------------------------------------

  /** Bodies of one kind, oldest first (the time index read backwards). */
  private async allTimed<T>(kind: TimedKind): Promise<T[]> {
    const index = await this.query(odata`PartitionKey eq ${`${kind}:bytime`}`);
    const out: T[] = [];
    for (const entry of index.reverse()) {
      const body = await this.readTimed<T>(kind, String(entry.id));
      if (body !== null) out.push(body);
    }
    return out;
  }

  /** Entities whose PartitionKey starts with `prefix:` (a range over partitions: backups only). */
  private byPartitionPrefix(prefix: string): Promise<Stored[]> {
    return this.query(odata`PartitionKey ge ${`${prefix}:`} and PartitionKey lt ${`${prefix};`}`);
  }

  /**
   * Every entry, for a backup: inventories, plans, runs and their actions, jobs, records, then
   * the audit log in sequence order. Leases are transient and left out.
   */
  async *exportEntries(): AsyncIterable<AzureStateEntry> {
    const read = <T>(what: string, fn: () => Promise<T>) => guarded(`reading ${what} for a backup`, fn);
    for (const v of await read('inventories', () => this.allTimed<InventorySnapshot>('inventory')))
      yield { t: 'inventory', v };
    const plans = await read('plans', () => this.allTimed<Plan>('plan'));
    for (const v of plans) yield { t: 'plan', v };
    for (const v of await read('runs', () => this.allTimed<ApplyRun>('run'))) yield { t: 'run', v };
    for (const p of plans) for (const v of await this.getActionRecords(p.id)) yield { t: 'action', v };
    const jobs = await read('re-wrap jobs', () => this.byPartitionPrefix('job'));
    for (const j of jobs) yield { t: 'job', v: unpackSmall<RewrapJob>(j, `rewrap job ${j.partitionKey}`) };
    const records = await read('records', () => this.byPartitionPrefix('record'));
    for (const r of records) {
      yield { t: 'record', v: this.toRecord(unescapeKey(r.partitionKey!.slice('record:'.length)), r) };
    }
    let from = 1;
    for (;;) {
      const page = await this.auditRead(from, 1000);
      for (const v of page) yield { t: 'audit', v };
      if (page.length < 1000) break;
      from = page.at(-1)!.seq + 1;
    }
  }

  async close(): Promise<void> {
    // The SDK client holds no sockets open between calls.
  }
}
