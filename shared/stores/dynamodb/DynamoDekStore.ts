import {
  BatchGetCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { ConfigError, ConflictError, IntegrityError, ValidationError } from '../../core/errors.js';
import type { DynamoDekAttributes } from '../../core/policy/types.js';
import type { DekRecord, DekReplacement, DekScanQuery, DekStore } from '../../core/ports/DekStore.js';
import type { WrapContext } from '../../core/ports/KeyProvider.js';
import { checkScan, walkVersions } from '../common/versionWalk.js';
import {
  createDocClient,
  type DocClient,
  type DynamoConnection,
  guarded,
  isConditionFailure,
  mapLimit,
} from './client.js';
import { ensureDynamoTable } from './ensureTable.js';
import { DEFAULT_DEK_ATTRIBUTES, DEFAULT_DEK_INDEX, dekTableDefinition } from './tables.js';

export type DynamoDekStoreOptions = {
  /** Configured store id (from the config file), used in messages. */
  id: string;
  type?: 'dynamodb';
  table: string;
  /** GSI on (key, versionId). Default `by_kek_version`. */
  index?: string;
  attributes?: Partial<DynamoDekAttributes>;
  /** Conditional writes in flight at once in replaceMany / insertMany. Default 16. */
  concurrency?: number;
} & ({ doc: DocClient } | DynamoConnection);

type Item = Record<string, unknown>;

/** Separates version and id in the GSI sort key; versions may not contain it. */
const SEP = '#';
/** The character after SEP: `${v}$` sorts right after every `${v}#...`. */
const AFTER_SEP = '$';

function checkVersion(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0)
    throw new ValidationError(`${where}: version must be a non-empty string`);
  if (v.includes(SEP)) throw new ValidationError(`${where}: version "${v}" may not contain "${SEP}"`);
  return v;
}

function checkBytes(b: unknown, what: string): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new ValidationError(`${what} must be bytes (Uint8Array)`);
  return b;
}

function checkContext(ctx: unknown, where: string): WrapContext {
  if (ctx === undefined || ctx === null) return {};
  if (typeof ctx !== 'object' || Array.isArray(ctx))
    throw new ValidationError(`${where}: context must be an object`);
  for (const [k, v] of Object.entries(ctx)) {
    if (typeof v !== 'string') throw new ValidationError(`${where}: context value "${k}" must be a string`);
  }
  return ctx as WrapContext;
}

/**
 * DEKs in DynamoDB: one item per DEK (partition key = DEK id) and a GSI on (key ref,
 * `version#id`) for scans by key and version. The store keeps the `version#id` attribute in
 * step on every write; an application writing items itself must set it too.
 *
 * replaceMany uses one conditional UpdateItem per item (bounded concurrency) rather than
 * TransactWriteItems: the port wants a result per item, and a transaction fails as a whole
 * when any one condition fails, costs twice the write capacity, refuses two writes to the
 * same item and caps at 100 items. BatchWriteItem cannot carry conditions at all.
 */
export class DynamoDekStore implements DekStore {
  readonly id: string;
  readonly table: string;
  readonly index: string;
  readonly doc: DocClient;
  /** A client passed in belongs to the caller, who closes it. */
  private readonly ownsClient: boolean;
  private readonly a: DynamoDekAttributes;
  private readonly concurrency: number;

  constructor(opts: DynamoDekStoreOptions) {
    if (typeof opts.id !== 'string' || opts.id.length === 0)
      throw new ConfigError('dynamodb DEK store: id is missing');
    if (typeof opts.table !== 'string' || opts.table.length < 3) {
      throw new ConfigError(`stores.${opts.id}.table must name a DynamoDB table`);
    }
    this.id = opts.id;
    this.table = opts.table;
    this.index = opts.index ?? DEFAULT_DEK_INDEX;
    this.a = { ...DEFAULT_DEK_ATTRIBUTES, ...(opts.attributes ?? {}) };
    const seen = new Map<string, string>();
    for (const [role, name] of Object.entries(this.a)) {
      if (name === null) continue;
      if (typeof name !== 'string' || name.length === 0) {
        throw new ConfigError(`stores.${opts.id}.attributes.${role} must be a non-empty string`);
      }
      const other = seen.get(name);
      if (other)
        throw new ConfigError(`stores.${opts.id}.attributes: ${role} and ${other} both name "${name}"`);
      seen.set(name, role);
    }
    this.concurrency = opts.concurrency ?? 16;
    const given = 'doc' in opts ? opts.doc : undefined;
    this.ownsClient = !given;
    this.doc = given ?? createDocClient(opts as DynamoConnection);
  }

  /** Creates the table and its GSI if missing (tests, demos). */
  async ensureTable(): Promise<void> {
    await ensureDynamoTable(this.doc, dekTableDefinition(this.table, this.index, this.a));
  }

  private toRecord(item: Item): DekRecord {
    const id = item[this.a.id];
    const wrapped = item[this.a.wrapped];
    if (typeof id !== 'string' || !(wrapped instanceof Uint8Array)) {
      throw new IntegrityError(`store ${this.id}: an item of ${this.table} lacks its id or wrapped bytes`);
    }
    const ctx = this.a.context ? item[this.a.context] : undefined;
    if (ctx !== undefined && (typeof ctx !== 'object' || ctx === null || Array.isArray(ctx))) {
      throw new IntegrityError(`store ${this.id}: DEK ${id} has a context that is not a map`);
    }
    return {
      id,
      keyRef: String(item[this.a.key]),
      version: String(item[this.a.version]),
      wrapped,
      context: (ctx as WrapContext | undefined) ?? {},
    };
  }

  private query(input: Omit<QueryCommandInput, 'TableName' | 'IndexName'>) {
    return this.doc.send(new QueryCommand({ TableName: this.table, IndexName: this.index, ...input }));
  }

  /** The key's first version after `after` (null: the first), by the GSI's order. */
  private async versionAfter(keyRef: string, after: string | null): Promise<string | null> {
    const r = await this.query({
      KeyConditionExpression: after === null ? '#k = :k' : '#k = :k AND #s >= :lo',
      ExpressionAttributeNames:
        after === null
          ? { '#k': this.a.key, '#v': this.a.version }
          : { '#k': this.a.key, '#s': this.a.versionId, '#v': this.a.version },
      ExpressionAttributeValues:
        after === null ? { ':k': keyRef } : { ':k': keyRef, ':lo': `${after}${AFTER_SEP}` },
      ProjectionExpression: '#v',
      Limit: 1,
    });
    const v = r.Items?.[0]?.[this.a.version];
    return v === undefined ? null : String(v);
  }

  /**
   * Up to `need` DEKs of one version in id order, after `afterId` and inside [from, to);
   * `more` says whether the version has matching DEKs past them.
   */
  private async page(
    keyRef: string,
    version: string,
    afterId: string | null,
    from: string | undefined,
    to: string | undefined,
    need: number,
  ): Promise<{ items: DekRecord[]; more: boolean }> {
    const lo = afterId === null && from !== undefined ? `${version}${SEP}${from}` : `${version}${SEP}`;
    // BETWEEN is inclusive: the item at `to` itself is dropped below.
    const hi = to !== undefined ? `${version}${SEP}${to}` : `${version}${AFTER_SEP}`;
    let start: Item | undefined =
      afterId === null
        ? undefined
        : { [this.a.id]: afterId, [this.a.key]: keyRef, [this.a.versionId]: `${version}${SEP}${afterId}` };
    const items: DekRecord[] = [];
    for (;;) {
      const r = await this.query({
        KeyConditionExpression: '#k = :k AND #s BETWEEN :lo AND :hi',
        ExpressionAttributeNames: { '#k': this.a.key, '#s': this.a.versionId },
        ExpressionAttributeValues: { ':k': keyRef, ':lo': lo, ':hi': hi },
        ...(start ? { ExclusiveStartKey: start } : {}),
        Limit: need + 1 - items.length,
      });
      for (const it of r.Items ?? []) {
        const d = this.toRecord(it);
        if (d.version !== version || (to !== undefined && d.id === to)) continue;
        items.push(d);
      }
      if (items.length > need) return { items: items.slice(0, need), more: true };
      if (!r.LastEvaluatedKey) return { items, more: false };
      start = r.LastEvaluatedKey;
    }
  }

  async scan(
    query: DekScanQuery,
    cursor: string | null,
    limit: number,
  ): Promise<{ items: DekRecord[]; cursor: string | null }> {
    const keyRef = checkScan(this.id, query, limit);
    const { idFrom: from, idTo: to } = query;
    if (from !== undefined && to !== undefined && Buffer.compare(Buffer.from(from), Buffer.from(to)) >= 0) {
      return { items: [], cursor: null };
    }
    return guarded(`store ${this.id}: scanning ${keyRef}`, () =>
      walkVersions(
        {
          storeId: this.id,
          versionAfter: (after) => this.versionAfter(keyRef, after),
          page: (version, afterId, need) => this.page(keyRef, version, afterId, from, to, need),
        },
        query,
        cursor,
        limit,
        // A version holding the sort-key separator cannot be stored, so it cannot match.
        (v) => !v.includes(SEP),
      ),
    );
  }

  /**
   * Ids that cut the matching DEKs into `parts` ranges of about equal size. Reads every
   * matching id once from the GSI (ids only), so it costs about one scan of the key's old DEKs
   * in read capacity; a job computes its split once.
   */
  async splitPoints(query: DekScanQuery, parts: number): Promise<string[]> {
    if (!Number.isInteger(parts) || parts < 1)
      throw new ValidationError(`store ${this.id}: parts must be >= 1`);
    const keyRef = query?.keyRef;
    if (typeof keyRef !== 'string' || keyRef.length === 0) {
      throw new ValidationError(`store ${this.id}: splitPoints needs a keyRef`);
    }
    if (parts === 1) return [];
    return guarded(`store ${this.id}: splitting ${keyRef} into ${parts}`, async () => {
      const ids: Buffer[] = [];
      let v = await this.versionAfter(keyRef, null);
      while (v !== null) {
        if (v !== query.notVersion && (!query.versions || query.versions.includes(v))) {
          let start: Item | undefined;
          do {
            const r = await this.query({
              KeyConditionExpression: '#k = :k AND begins_with(#s, :p)',
              ExpressionAttributeNames: { '#k': this.a.key, '#s': this.a.versionId, '#id': this.a.id },
              ExpressionAttributeValues: { ':k': keyRef, ':p': `${v}${SEP}` },
              ProjectionExpression: '#id',
              ...(start ? { ExclusiveStartKey: start } : {}),
            });
            for (const it of r.Items ?? []) ids.push(Buffer.from(String(it[this.a.id]), 'utf8'));
            start = r.LastEvaluatedKey;
          } while (start);
        }
        v = await this.versionAfter(keyRef, v);
      }
      if (ids.length < parts * 2) return [];
      // DynamoDB orders strings by their UTF-8 bytes: cut in that order, as scans range in it.
      ids.sort(Buffer.compare);
      const points: string[] = [];
      for (let i = 1; i < parts; i++) {
        const id = ids[Math.ceil((i * ids.length) / parts) - 1]!.toString('utf8');
        if (points[points.length - 1] !== id) points.push(id);
      }
      return points;
    });
  }

  async get(id: string): Promise<DekRecord | null> {
    if (typeof id !== 'string' || id.length === 0) return null;
    const r = await guarded(`store ${this.id}: reading DEK ${id}`, () =>
      this.doc.send(
        new GetCommand({ TableName: this.table, Key: { [this.a.id]: id }, ConsistentRead: true }),
      ),
    );
    return r.Item ? this.toRecord(r.Item) : null;
  }

  async replace(
    id: string,
    newWrapped: Uint8Array,
    newVersion: string,
    expected: Uint8Array,
  ): Promise<boolean> {
    this.checkReplacement({ id, newWrapped, newVersion, expected });
    return guarded(`store ${this.id}: replacing DEK ${id}`, () =>
      this.replaceOne({ id, newWrapped, newVersion, expected }),
    );
  }

  private checkReplacement(r: Partial<DekReplacement>): void {
    if (typeof r.id !== 'string') throw new ValidationError(`store ${this.id}: a replacement has no DEK id`);
    checkVersion(r.newVersion, `store ${this.id}: DEK ${r.id} newVersion`);
    checkBytes(r.newWrapped, `store ${this.id}: DEK ${r.id} newWrapped`);
    checkBytes(r.expected, `store ${this.id}: DEK ${r.id} expected`);
  }

  /** Conditional UpdateItem: writes only while the item holds the expected ciphertext. */
  private async replaceOne(r: DekReplacement): Promise<boolean> {
    if (r.id.length === 0) return false;
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { [this.a.id]: r.id },
          UpdateExpression: 'SET #w = :nw, #v = :nv, #s = :ns',
          ConditionExpression: '#w = :ex',
          ExpressionAttributeNames: { '#w': this.a.wrapped, '#v': this.a.version, '#s': this.a.versionId },
          ExpressionAttributeValues: {
            ':nw': r.newWrapped,
            ':nv': r.newVersion,
            ':ns': `${r.newVersion}${SEP}${r.id}`,
            ':ex': r.expected,
          },
        }),
      );
      return true;
    } catch (e) {
      if (isConditionFailure(e)) return false;
      throw e;
    }
  }

  async replaceMany(items: DekReplacement[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    for (const it of items) this.checkReplacement(it);
    const out = new Array<boolean>(items.length).fill(false);
    // The k-th occurrence of an id goes in round k: items for one DEK apply in order, and
    // different DEKs run concurrently within a round.
    const rounds: number[][] = [];
    const seen = new Map<string, number>();
    items.forEach((it, i) => {
      const n = seen.get(it.id) ?? 0;
      seen.set(it.id, n + 1);
      if (!rounds[n]) rounds[n] = [];
      rounds[n].push(i);
    });
    await guarded(`store ${this.id}: replacing ${items.length} DEKs`, async () => {
      for (const round of rounds) {
        await mapLimit(round, this.concurrency, async (i) => {
          out[i] = await this.replaceOne(items[i]!);
        });
      }
    });
    return out;
  }

  async countByVersion(keyRef: string): Promise<Record<string, number>> {
    return guarded(`store ${this.id}: counting DEKs of ${keyRef}`, async () => {
      const out: Record<string, number> = {};
      let v = await this.versionAfter(keyRef, null);
      while (v !== null) {
        let n = 0;
        let start: Item | undefined;
        do {
          const r = await this.query({
            KeyConditionExpression: '#k = :k AND begins_with(#s, :p)',
            ExpressionAttributeNames: { '#k': this.a.key, '#s': this.a.versionId },
            ExpressionAttributeValues: { ':k': keyRef, ':p': `${v}${SEP}` },
            Select: 'COUNT',
            ...(start ? { ExclusiveStartKey: start } : {}),
          });
          n += r.Count ?? 0;
          start = r.LastEvaluatedKey;
        } while (start);
        if (n > 0) out[v] = n;
        v = await this.versionAfter(keyRef, v);
      }
      return out;
    });
  }

  async insertMany(records: DekRecord[]): Promise<void> {
    if (records.length === 0) return;
    const inBatch = new Set<string>();
    const items = records.map((r) => {
      if (typeof r.id !== 'string' || r.id.length === 0) {
        throw new ValidationError(`store ${this.id}: every DEK needs a non-empty id`);
      }
      const where = `store ${this.id}: DEK ${r.id}`;
      if (inBatch.has(r.id))
        throw new ConflictError(`store ${this.id}: DEK id "${r.id}" appears twice in one insert`);
      inBatch.add(r.id);
      if (typeof r.keyRef !== 'string' || r.keyRef.length === 0)
        throw new ValidationError(`${where}: keyRef is empty`);
      checkVersion(r.version, where);
      checkBytes(r.wrapped, `${where}: wrapped`);
      const ctx = checkContext(r.context, where);
      if (!this.a.context && Object.keys(ctx).length > 0) {
        throw new ValidationError(`${where}: has a context but store ${this.id} keeps no context attribute`);
      }
      const item: Item = {
        [this.a.id]: r.id,
        [this.a.key]: r.keyRef,
        [this.a.version]: r.version,
        [this.a.wrapped]: r.wrapped,
        [this.a.versionId]: `${r.version}${SEP}${r.id}`,
      };
      if (this.a.context) item[this.a.context] = ctx;
      return item;
    });
    const what = `store ${this.id}: inserting ${records.length} DEKs`;
    // Refuse up front when an id is taken, so the common case writes nothing at all.
    const taken = await guarded(what, () => this.firstExisting([...inBatch]));
    if (taken !== null) throw new ConflictError(`store ${this.id}: a DEK with id "${taken}" already exists`);
    // Each put is conditional on the id being free; if another writer took one meanwhile, the
    // puts that did go through are taken back (only while they still hold what was written).
    const written: Item[] = [];
    let lost: string | null = null;
    await guarded(what, () =>
      mapLimit(items, this.concurrency, async (item) => {
        if (lost !== null) return;
        try {
          await this.doc.send(
            new PutCommand({
              TableName: this.table,
              Item: item,
              ConditionExpression: 'attribute_not_exists(#id)',
              ExpressionAttributeNames: { '#id': this.a.id },
            }),
          );
          written.push(item);
        } catch (e) {
          if (!isConditionFailure(e)) throw e;
          lost ??= item[this.a.id] as string;
        }
      }).catch(async (e) => {
        await this.undo(written);
        throw e;
      }),
    );
    if (lost !== null) {
      await this.undo(written);
      throw new ConflictError(`store ${this.id}: a DEK with id "${lost}" already exists`);
    }
  }

  private async undo(written: Item[]): Promise<void> {
    await guarded(`store ${this.id}: taking back a partial insert`, () =>
      mapLimit(written, this.concurrency, async (item) => {
        try {
          await this.doc.send(
            new DeleteCommand({
              TableName: this.table,
              Key: { [this.a.id]: item[this.a.id] },
              ConditionExpression: '#w = :w',
              ExpressionAttributeNames: { '#w': this.a.wrapped },
              ExpressionAttributeValues: { ':w': item[this.a.wrapped] },
            }),
          );
        } catch (e) {
          if (!isConditionFailure(e)) throw e;
        }
      }),
    );
  }

  /** The first of `ids` that already has an item, or null (BatchGetItem, 100 keys a call). */
  private async firstExisting(ids: string[]): Promise<string | null> {
    for (let i = 0; i < ids.length; i += 100) {
      let keys: Item[] | undefined = ids.slice(i, i + 100).map((id) => ({ [this.a.id]: id }));
      while (keys && keys.length > 0) {
        const r = await this.doc.send(
          new BatchGetCommand({
            RequestItems: {
              [this.table]: {
                Keys: keys,
                ConsistentRead: true,
                ProjectionExpression: '#id',
                ExpressionAttributeNames: { '#id': this.a.id },
              },
            },
          }),
        );
        const found = r.Responses?.[this.table]?.[0];
        if (found) return String(found[this.a.id]);
        keys = r.UnprocessedKeys?.[this.table]?.Keys as Item[] | undefined;
      }
    }
    return null;
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.doc.destroy();
  }
}
