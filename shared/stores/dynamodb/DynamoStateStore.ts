import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  BatchWriteCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  ScanCommand,
} from '@aws-sdk/lib-dynamodb';
import { ConfigError, ConflictError, IntegrityError, ValidationError } from '../../core/errors.js';
import type { ActionRecord, Plan } from '../../core/plan/types.js';
import type {
  ApplyRun,
  AuditRecord,
  InventorySnapshot,
  RewrapJob,
  StateEntry,
  StateRecord,
  StateStore,
} from '../../core/ports/StateStore.js';
import { checkRecordWrite, type RecordWrite } from '../common/records.js';
import { positiveInt, TimedDocumentStore, type TimedKind } from '../common/timedDocuments.js';
import { parseStored, requireString } from '../sqlite/json.js';
import {
  createDocClient,
  type DocClient,
  type DynamoConnection,
  guarded,
  isConditionFailure,
  translateDynamoError,
} from './client.js';
import { ensureDynamoTable } from './ensureTable.js';
import { stateTableDefinition } from './tables.js';

export type DynamoStateStoreOptions = {
  table: string;
} & ({ doc: DocClient } | DynamoConnection);

type Item = Record<string, unknown>;

/** Bodies above this many bytes (gzipped) are split over several items (an item holds <= 400 KB). */
const PART_BYTES = 300_000;

const pad = (n: number, width: number) => String(n).padStart(width, '0');
/** Epoch ms as a fixed-width sort key (years 1970-2286). */
const msKey = (ms: number) => pad(ms, 13);
const seqKey = (seq: number) => pad(seq, 16);

/**
 * rekey's state in one DynamoDB table (`pk`, `sk`). Layout:
 *
 * | item                  | pk                   | sk                      |
 * |-----------------------|----------------------|-------------------------|
 * | snapshot / plan / run | `inventory#<id>` ... | `body` (+ `part#<gen>#<n>` when large) |
 * | time index of those   | `inventory` ...      | `<ms, 13 digits>#<id>`  |
 * | action record         | `actions#<planId>`   | `<index, 10 digits>`    |
 * | lease                 | `lease#<name>`       | `lease`                 |
 * | re-wrap job           | `job#<id>`           | `job`                   |
 * | audit record          | `audit`              | `<seq, 16 digits>`      |
 *
 * Conditional writes: a lease is put only if absent, expired or already the caller's; a
 * re-wrap job only if absent; audit record n only if absent and only after record n-1 was
 * read back (records are never deleted, so n-1 existing and n absent means n = max + 1).
 * DynamoDB Local emulators without transactions (dynalite) run all of it.
 */
export class DynamoStateStore extends TimedDocumentStore implements StateStore {
  readonly table: string;
  readonly doc: DocClient;
  /** A client passed in belongs to the caller, who closes it. */
  private readonly ownsClient: boolean;

  constructor(opts: DynamoStateStoreOptions) {
    super();
    if (typeof opts.table !== 'string' || opts.table.length < 3) {
      throw new ConfigError('dynamodb state store: table must name a DynamoDB table');
    }
    this.table = opts.table;
    const given = 'doc' in opts ? opts.doc : undefined;
    this.ownsClient = !given;
    this.doc = given ?? createDocClient(opts as DynamoConnection);
  }

  /** Creates the table if missing (tests, demos, first runs). */
  async ensureTable(): Promise<void> {
    await ensureDynamoTable(this.doc, stateTableDefinition(this.table));
  }

  private get(pk: string, sk: string): Promise<Item | undefined> {
    return this.doc
      .send(new GetCommand({ TableName: this.table, Key: { pk, sk }, ConsistentRead: true }))
      .then((r) => r.Item);
  }

  private async queryAll(
    input: Omit<QueryCommandInput, 'TableName'>,
    max = Number.POSITIVE_INFINITY,
  ): Promise<Item[]> {
    const out: Item[] = [];
    let start: Item | undefined;
    do {
      const r = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          ConsistentRead: true,
          ...input,
          ...(Number.isFinite(max) ? { Limit: max - out.length } : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      out.push(...(r.Items ?? []));
      start = r.LastEvaluatedKey;
    } while (start && out.length < max);
    return out;
  }

  // --- bodies kept under a time index (snapshots, plans, runs) ---------------------------------

  protected async saveTimed(kind: TimedKind, id: string, ms: number, value: unknown): Promise<void> {
    const pk = `${kind}#${id}`;
    const packed = gzipSync(Buffer.from(JSON.stringify(value), 'utf8'));
    const previous = await this.get(pk, 'body');
    const gen = randomBytes(6).toString('hex');
    const parts: Buffer[] = [];
    for (let i = 0; i < packed.length; i += PART_BYTES) parts.push(packed.subarray(i, i + PART_BYTES));
    // Large bodies: parts first, under a fresh generation, so a reader never mixes two saves.
    if (parts.length > 1) {
      for (let i = 0; i < parts.length; i++) {
        await this.doc.send(
          new PutCommand({
            TableName: this.table,
            Item: { pk, sk: `part#${gen}#${pad(i, 5)}`, data: parts[i] },
          }),
        );
      }
    }
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item:
          parts.length > 1
            ? { pk, sk: 'body', at: ms, gen, parts: parts.length }
            : { pk, sk: 'body', at: ms, data: packed },
      }),
    );
    await this.doc.send(
      new PutCommand({ TableName: this.table, Item: { pk: kind, sk: `${msKey(ms)}#${id}`, id } }),
    );
    if (previous && previous.at !== ms) {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.table,
          Key: { pk: kind, sk: `${msKey(Number(previous.at))}#${id}` },
        }),
      );
    }
    if (previous?.gen && previous.gen !== gen) await this.dropParts(pk, String(previous.gen));
  }

  private async dropParts(pk: string, gen: string): Promise<void> {
    const old = await this.queryAll({
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :p)',
      ExpressionAttributeValues: { ':pk': pk, ':p': `part#${gen}#` },
      ProjectionExpression: 'pk, sk',
    });
    for (let i = 0; i < old.length; i += 25) {
      await this.doc.send(
        new BatchWriteCommand({
          RequestItems: {
            [this.table]: old
              .slice(i, i + 25)
              .map((k) => ({ DeleteRequest: { Key: { pk: k.pk, sk: k.sk } } })),
          },
        }),
      );
    }
  }

  protected async readTimed<T>(kind: TimedKind, id: string): Promise<T | null> {
    const pk = `${kind}#${id}`;
    const head = await this.get(pk, 'body');
    if (!head) return null;
    let packed: Buffer;
    if (head.data instanceof Uint8Array) {
      packed = Buffer.from(head.data);
    } else {
      const parts = await this.queryAll({
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :p)',
        ExpressionAttributeValues: { ':pk': pk, ':p': `part#${String(head.gen)}#` },
      });
      if (parts.length !== Number(head.parts)) {
        throw new IntegrityError(`${kind} ${id}: ${parts.length} of ${String(head.parts)} parts found`);
      }
      packed = Buffer.concat(parts.map((p) => p.data as Uint8Array));
    }
    let text: string;
    try {
      text = gunzipSync(packed).toString('utf8');
    } catch (e) {
      throw new IntegrityError(`${kind} ${id}: stored body does not decompress`, { cause: e });
    }
    return parseStored<T>(text, `${kind} ${id}`);
  }

  protected async latestIds(kind: TimedKind, limit: number): Promise<string[]> {
    const index = await this.queryAll(
      {
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': kind },
        ScanIndexForward: false,
      },
      limit,
    );
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
    await guarded(`saving action ${rec.index} of plan ${planId}`, () =>
      this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: {
            pk: `actions#${planId}`,
            sk: pad(rec.index, 10),
            status: rec.status,
            body: JSON.stringify(rec),
          },
        }),
      ),
    );
  }

  async getActionRecords(planId: string): Promise<ActionRecord[]> {
    const items = await guarded(`reading actions of plan ${planId}`, () =>
      this.queryAll({
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': `actions#${planId}` },
      }),
    );
    return items.map((i) => parseStored<ActionRecord>(i.body, `action record of plan ${planId}`));
  }

  // --- leases --------------------------------------------------------------------------------

  async acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean> {
    requireString(name, 'lease name');
    requireString(owner, 'lease owner');
    positiveInt(ttlMs, `lease ${name} ttlMs`);
    if (!Number.isSafeInteger(nowMs)) throw new ValidationError(`lease ${name}: nowMs must be an integer`);
    try {
      await guarded(`acquiring lease ${name}`, () =>
        this.doc.send(
          new PutCommand({
            TableName: this.table,
            Item: { pk: `lease#${name}`, sk: 'lease', owner, expiresAtMs: nowMs + ttlMs },
            // Free, expired, or ours: DynamoDB evaluates this against the item atomically.
            ConditionExpression: 'attribute_not_exists(pk) OR #o = :o OR #e <= :now',
            ExpressionAttributeNames: { '#o': 'owner', '#e': 'expiresAtMs' },
            ExpressionAttributeValues: { ':o': owner, ':now': nowMs },
          }),
        ),
      );
      return true;
    } catch (e) {
      if (e instanceof ConflictError) return false;
      throw e;
    }
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    try {
      await guarded(`releasing lease ${name}`, () =>
        this.doc.send(
          new DeleteCommand({
            TableName: this.table,
            Key: { pk: `lease#${name}`, sk: 'lease' },
            ConditionExpression: '#o = :o',
            ExpressionAttributeNames: { '#o': 'owner' },
            ExpressionAttributeValues: { ':o': owner },
          }),
        ),
      );
    } catch (e) {
      // Held by someone else, or by nobody: nothing to release.
      if (!(e instanceof ConflictError)) throw e;
    }
  }

  async leaseOwner(name: string, nowMs: number): Promise<{ owner: string; expiresAtMs: number } | null> {
    requireString(name, 'lease name');
    const item = await guarded(`reading lease ${name}`, () => this.get(`lease#${name}`, 'lease'));
    if (!item || Number(item.expiresAtMs) <= nowMs) return null;
    return { owner: String(item.owner), expiresAtMs: Number(item.expiresAtMs) };
  }

  // --- re-wrap jobs --------------------------------------------------------------------------

  async getRewrapJob(id: string): Promise<RewrapJob | null> {
    const item = await guarded(`reading rewrap job ${id}`, () => this.get(`job#${id}`, 'job'));
    return item ? parseStored<RewrapJob>(item.body, `rewrap job ${id}`) : null;
  }

  private putJob(job: RewrapJob, onlyIfAbsent: boolean) {
    return this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          pk: `job#${job.id}`,
          sk: 'job',
          keyRef: job.keyRef,
          storeId: job.storeId,
          status: job.status,
          body: JSON.stringify(job),
        },
        ...(onlyIfAbsent ? { ConditionExpression: 'attribute_not_exists(pk)' } : {}),
      }),
    );
  }

  async createRewrapJob(job: RewrapJob): Promise<RewrapJob> {
    const id = requireString(job.id, 'rewrap job id');
    try {
      await this.putJob(job, true);
      return job;
    } catch (e) {
      if (!isConditionFailure(e)) throw translateDynamoError(e, `creating rewrap job ${id}`);
    }
    const existing = await this.getRewrapJob(id);
    if (!existing) throw new ConflictError(`rewrap job ${id} was created and removed concurrently`);
    return existing;
  }

  async saveRewrapJob(job: RewrapJob): Promise<void> {
    const id = requireString(job.id, 'rewrap job id');
    await guarded(`saving rewrap job ${id}`, () => this.putJob(job, false));
  }

  // --- audit ---------------------------------------------------------------------------------

  private toAudit(item: Item): AuditRecord {
    const seq = Number(item.seq);
    return {
      seq,
      ts: String(item.ts),
      actor: String(item.actor),
      action: String(item.action),
      target: item.target === undefined || item.target === null ? null : String(item.target),
      details: parseStored<Record<string, unknown>>(item.details, `audit seq ${seq} details`),
      prevHash: String(item.prevHash),
      hash: String(item.hash),
    };
  }

  async auditTail(): Promise<AuditRecord | null> {
    const [item] = await guarded('reading audit tail', () =>
      this.queryAll(
        {
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': 'audit' },
          ScanIndexForward: false,
        },
        1,
      ),
    );
    return item ? this.toAudit(item) : null;
  }

  async auditAppend(rec: AuditRecord): Promise<boolean> {
    if (!Number.isSafeInteger(rec.seq) || rec.seq < 1) return false;
    return guarded(`appending audit record ${rec.seq}`, async () => {
      // Record n goes in only after n-1 is there (strongly consistent read) and only if n is
      // not: since records are never deleted, that makes n exactly max + 1.
      if (rec.seq > 1 && !(await this.get('audit', seqKey(rec.seq - 1)))) return false;
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.table,
            Item: {
              pk: 'audit',
              sk: seqKey(rec.seq),
              seq: rec.seq,
              ts: rec.ts,
              actor: rec.actor,
              action: rec.action,
              target: rec.target ?? null,
              details: JSON.stringify(rec.details ?? {}),
              prevHash: rec.prevHash,
              hash: rec.hash,
            },
            ConditionExpression: 'attribute_not_exists(pk)',
          }),
        );
        return true;
      } catch (e) {
        if (isConditionFailure(e)) return false;
        throw e;
      }
    });
  }

  async auditRead(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    if (!Number.isSafeInteger(fromSeq)) throw new ValidationError('auditRead fromSeq must be an integer');
    positiveInt(limit, 'auditRead limit');
    const items = await guarded(`reading audit from ${fromSeq}`, () =>
      this.queryAll(
        {
          KeyConditionExpression: 'pk = :pk AND sk >= :from',
          ExpressionAttributeValues: { ':pk': 'audit', ':from': seqKey(Math.max(fromSeq, 0)) },
        },
        limit,
      ),
    );
    return items.map((i) => this.toAudit(i));
  }

  // --- records -------------------------------------------------------------------------------

  private toRecord(item: Item): StateRecord {
    const kind = String(item.pk).slice('record#'.length);
    const id = String(item.sk);
    return {
      kind,
      id,
      rev: Number(item.rev),
      updatedAt: String(item.updatedAt),
      body: parseStored<Record<string, unknown>>(item.body, `record ${kind}/${id}`),
    };
  }

  async putRecord(rec: RecordWrite, expectedRev: number): Promise<boolean> {
    checkRecordWrite(rec, expectedRev);
    const body = JSON.stringify(rec.body);
    if (Buffer.byteLength(body) > PART_BYTES) {
      throw new ValidationError(`record ${rec.kind}/${rec.id}: body is larger than ${PART_BYTES} bytes`);
    }
    try {
      await guarded(`writing record ${rec.kind}/${rec.id}`, () =>
        this.doc.send(
          new PutCommand({
            TableName: this.table,
            Item: {
              pk: `record#${rec.kind}`,
              sk: rec.id,
              rev: expectedRev + 1,
              updatedAt: rec.updatedAt,
              body,
            },
            ...(expectedRev === 0
              ? { ConditionExpression: 'attribute_not_exists(pk)' }
              : {
                  ConditionExpression: '#r = :r',
                  ExpressionAttributeNames: { '#r': 'rev' },
                  ExpressionAttributeValues: { ':r': expectedRev },
                }),
          }),
        ),
      );
      return true;
    } catch (e) {
      if (e instanceof ConflictError || isConditionFailure(e)) return false;
      throw e;
    }
  }

  async getRecord(kind: string, id: string): Promise<StateRecord | null> {
    requireString(kind, 'record kind');
    requireString(id, `record ${kind} id`);
    const item = await guarded(`reading record ${kind}/${id}`, () => this.get(`record#${kind}`, id));
    return item ? this.toRecord(item) : null;
  }

  async listRecords(kind: string, opts: { afterId?: string; limit: number }): Promise<StateRecord[]> {
    requireString(kind, 'record kind');
    positiveInt(opts.limit, 'listRecords limit');
    const items = await guarded(`listing records ${kind}`, () =>
      this.queryAll(
        opts.afterId
          ? {
              KeyConditionExpression: 'pk = :pk AND sk > :after',
              ExpressionAttributeValues: { ':pk': `record#${kind}`, ':after': opts.afterId },
            }
          : { KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': `record#${kind}` } },
        opts.limit,
      ),
    );
    return items.map((i) => this.toRecord(i));
  }

  /** Items whose partition key starts with `prefix` (a full scan: backups only). */
  private async scanPrefix(prefix: string): Promise<Item[]> {
    const out: Item[] = [];
    let start: Item | undefined;
    do {
      const r = await this.doc.send(
        new ScanCommand({
          TableName: this.table,
          ConsistentRead: true,
          FilterExpression: 'begins_with(pk, :p)',
          ExpressionAttributeValues: { ':p': prefix },
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      out.push(...(r.Items ?? []));
      start = r.LastEvaluatedKey;
    } while (start);
    return out;
  }

  async *exportEntries(): AsyncIterable<StateEntry> {
    const timed = async <T>(kind: TimedKind): Promise<T[]> => {
      const index = await this.queryAll({
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': kind },
      });
      const out: T[] = [];
      for (const e of index) {
        const body = await this.readTimed<T>(kind, String(e.id));
        if (body !== null) out.push(body);
      }
      return out;
    };
    const read = <T>(what: string, fn: () => Promise<T>) => guarded(`reading ${what} for a backup`, fn);
    for (const v of await read('inventories', () => timed<InventorySnapshot>('inventory')))
      yield { t: 'inventory', v };
    const plans = await read('plans', () => timed<Plan>('plan'));
    for (const v of plans) yield { t: 'plan', v };
    for (const v of await read('runs', () => timed<ApplyRun>('run'))) yield { t: 'run', v };
    for (const p of plans) for (const v of await this.getActionRecords(p.id)) yield { t: 'action', v };
    const jobs = await read('re-wrap jobs', () => this.scanPrefix('job#'));
    jobs.sort((a, b) => String(a.pk).localeCompare(String(b.pk)));
    for (const j of jobs) yield { t: 'job', v: parseStored<RewrapJob>(j.body, `rewrap job ${String(j.pk)}`) };
    const records = await read('records', () => this.scanPrefix('record#'));
    records.sort((a, b) => `${a.pk}\u0000${a.sk}`.localeCompare(`${b.pk}\u0000${b.sk}`));
    for (const r of records) yield { t: 'record', v: this.toRecord(r) };
    const audit = await read('the audit log', () =>
      this.queryAll({ KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': 'audit' } }),
    );
    for (const a of audit) yield { t: 'audit', v: this.toAudit(a) };
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.doc.destroy();
  }
}
