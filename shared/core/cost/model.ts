import { ValidationError } from '../errors.js';
import type { CatalogAllowance } from './catalog.js';
import { fmtMoney, fmtQty } from './format.js';
import { type Interval, ms, overlapHours, type Period, parsePeriod } from './period.js';
import { type Price, type PriceCatalog, tieredCost } from './priceCatalog.js';
import type {
  CostInventory,
  CostKey,
  CostKeyVersion,
  CostPart,
  CostReport,
  HsmPool,
  KeyCost,
  PartKind,
  PoolCost,
  RequestClass,
  UsageCounter,
  VersionCost,
} from './types.js';

/**
 * The cost model. Two passes, so it can stream any number of keys while still sharing
 * account-level quantities fairly:
 *  1. `observe(key, usage)` for every key: accumulates what is shared across keys (free request
 *     allowances per account, tiered quantities per account and SKU, HSM pool occupancy);
 *  2. `price(key, usage)` for every key: that key's cost, part by part, with explanations.
 *
 * Allocation rules (also in docs/cost.md):
 *  - A free request allowance (AWS: 20,000/month per account) is shared by the account's
 *    request lines it applies to, in proportion to their request counts.
 *  - Graduated tiers (GCP HSM RSA-3072+/EC versions, Azure advanced HSM keys) are computed on
 *    the account's total quantity of the SKU; each key pays its quantity x the average rate.
 *  - An HSM pool's hourly cost (CloudHSM cluster, Managed HSM pool) is spread over the keys
 *    that live in it, in proportion to the hours each key existed during the period.
 * Unknown prices stay unknown (null), never zero.
 */

interface RawPart {
  kind: PartKind;
  version?: string;
  requestClass?: RequestClass;
  sku: string;
  unit?: string;
  /** In the SKU's units (before allowances). For requests: the raw request count. */
  quantity: number;
  hours?: number;
  frequency: CostPart['frequency'];
  /** Why, before any allocation detail. */
  why: string;
  /** Not billed by design (AWS-managed key storage, rotations past the cap...). */
  free?: boolean;
  /** The price is unknown for a reason other than a missing SKU. */
  unknownWhy?: string;
  pool?: HsmPool;
  poolWeightHours?: number;
}

const BILLABLE_DEFAULT = ['enabled', 'disabled', 'destroy_scheduled'];
const ADVANCED_ALGOS = new Set(['RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384']);

/** The class a counter is priced at: cryptographic classes follow the key's algorithm. */
export function refineClass(cls: RequestClass, key: CostKey): RequestClass {
  if (cls === 'gdkp_ecc' || cls === 'gdkp_rsa' || cls === 'management') return cls;
  if (key.algorithm === 'RSA_2048') return 'rsa_2048';
  if (ADVANCED_ALGOS.has(key.algorithm)) return 'asymmetric';
  return 'symmetric';
}

const CLASS_LABEL: Record<RequestClass, string> = {
  symmetric: 'symmetric',
  rsa_2048: 'RSA 2048',
  asymmetric: 'asymmetric (not RSA 2048)',
  gdkp_ecc: 'GenerateDataKeyPair ECC',
  gdkp_rsa: 'GenerateDataKeyPair RSA',
  management: 'management',
};

function requestSku(key: CostKey, cls: RequestClass): string | undefined {
  switch (key.provider) {
    case 'aws-kms':
      return {
        symmetric: 'aws-kms/requests-symmetric',
        rsa_2048: 'aws-kms/requests-rsa-2048',
        asymmetric: 'aws-kms/requests-asymmetric',
        gdkp_ecc: 'aws-kms/requests-gdkp-ecc',
        gdkp_rsa: 'aws-kms/requests-gdkp-rsa',
        management: 'aws-kms/requests-symmetric',
      }[cls];
    case 'gcp-kms':
      if (cls === 'gdkp_ecc' || cls === 'gdkp_rsa') return undefined;
      if (cls === 'management') return 'gcp-kms/ops-admin';
      return cls === 'asymmetric' && key.protection === 'hsm' ? 'gcp-kms/ops-hsm-advanced' : 'gcp-kms/ops';
    case 'azure-kv':
      if (cls === 'gdkp_ecc' || cls === 'gdkp_rsa') return undefined;
      return cls === 'asymmetric' ? 'azure-kv/ops-advanced' : 'azure-kv/ops-standard';
    case 'azure-managed-hsm':
      return 'azure-managed-hsm/ops';
    default:
      return undefined;
  }
}

function gcpVersionSku(key: CostKey): string {
  if (key.protection === 'software') return 'gcp-kms/version-software';
  if (key.protection === 'external') return 'gcp-kms/version-external';
  return ADVANCED_ALGOS.has(key.algorithm) ? 'gcp-kms/version-hsm-advanced' : 'gcp-kms/version-hsm';
}

function azureHsmSku(key: CostKey): string {
  if (key.algorithm === 'RSA_2048') return 'azure-kv/hsm-key-rsa2048';
  if (ADVANCED_ALGOS.has(key.algorithm)) return 'azure-kv/hsm-key-advanced';
  return `azure-kv/hsm-key-${key.algorithm.toLowerCase()}`;
}

/** Intervals during which a version is in one of `billable` states. */
function versionIntervals(key: CostKey, v: CostKeyVersion, billable: readonly string[]): Interval[] {
  const what = `key ${key.ref} version ${v.id}`;
  const changes: { at: number; state: string }[] = [
    { at: ms(v.createdAt, `${what} createdAt`), state: 'enabled' },
  ];
  for (const s of v.states ?? []) changes.push({ at: ms(s.at, `${what} state change`), state: s.state });
  if (v.destroyedAt) changes.push({ at: ms(v.destroyedAt, `${what} destroyedAt`), state: 'destroyed' });
  changes.sort((a, b) => a.at - b.at);
  const end = key.deletedAt ? ms(key.deletedAt, `key ${key.ref} deletedAt`) : Number.POSITIVE_INFINITY;
  const out: Interval[] = [];
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    if (c.state === 'destroyed') break;
    const next = i + 1 < changes.length ? changes[i + 1]!.at : Number.POSITIVE_INFINITY;
    if (billable.includes(c.state)) out.push([c.at, Math.min(next, end)]);
  }
  return out.filter(([a, b]) => b > a);
}

/** Intervals during which an AWS key is billed: it exists and is not pending deletion. */
function awsKeyIntervals(key: CostKey): { billed: Interval[]; pendingHoursIn: (p: Period) => number } {
  const start = ms(key.createdAt, `key ${key.ref} createdAt`);
  const end = key.deletedAt ? ms(key.deletedAt, `key ${key.ref} deletedAt`) : Number.POSITIVE_INFINITY;
  const changes = [{ at: start, state: 'enabled' as string }];
  for (const s of key.keyStates ?? [])
    changes.push({ at: ms(s.at, `key ${key.ref} keyStates`), state: s.state });
  changes.sort((a, b) => a.at - b.at);
  const billed: Interval[] = [];
  const pending: Interval[] = [];
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    const next = Math.min(i + 1 < changes.length ? changes[i + 1]!.at : Number.POSITIVE_INFINITY, end);
    if (next <= c.at) continue;
    (c.state === 'pending_deletion' ? pending : billed).push([c.at, next]);
  }
  return { billed, pendingHoursIn: (p) => overlapHours(pending, p.start, p.end) };
}

function existenceInterval(key: CostKey): Interval {
  return [
    ms(key.createdAt, `key ${key.ref} createdAt`),
    key.deletedAt ? ms(key.deletedAt, `key ${key.ref} deletedAt`) : Number.POSITIVE_INFINITY,
  ];
}

/** List (pre-override) rate; for tiers, the average over `quantity`. */
function listRate(price: Price, quantity: number): number | null {
  if (price.listTiers) {
    return quantity > 0 ? tieredCost(price.listTiers, quantity).cost / quantity : price.listTiers[0]!.amount;
  }
  return price.listAmount ?? null;
}

function clip(intervals: Interval[], from: number): Interval[] {
  return intervals.map(([a, b]): Interval => [Math.max(a, from), b]).filter(([a, b]) => b > a);
}

export class CostModel {
  readonly period: Period;
  private readonly pools = new Map<string, HsmPool>();
  private readonly allowanceTotals = new Map<string, number>();
  private readonly tierTotals = new Map<string, number>();
  private readonly poolWeights = new Map<string, { hours: number; keys: number }>();
  private readonly at: string;

  constructor(
    readonly catalog: PriceCatalog,
    period: string,
    pools: HsmPool[] = [],
  ) {
    this.period = parsePeriod(period);
    this.at = this.period.startIso;
    for (const p of pools) {
      if (this.pools.has(p.id)) throw new ValidationError(`inventory: pool "${p.id}" is listed twice`);
      this.pools.set(p.id, p);
    }
  }

  private readonly priceCache = new Map<string, Price | undefined>();

  private price(sku: string, key: { region?: string }): Price | undefined {
    const k = `${sku}|${key.region ?? ''}`;
    if (this.priceCache.has(k)) return this.priceCache.get(k);
    const p = this.catalog.lookup(sku, key.region, this.at);
    this.priceCache.set(k, p);
    return p;
  }

  private readonly allowanceCache = new Map<string, CatalogAllowance | undefined>();

  private allowanceFor(sku: string): CatalogAllowance | undefined {
    if (this.allowanceCache.has(sku)) return this.allowanceCache.get(sku);
    const a = this.catalog.allowances.find(
      (x) => x.appliesTo.includes(sku) && x.effective <= this.at.slice(0, 10),
    );
    this.allowanceCache.set(sku, a);
    return a;
  }

  /** Parts before prices are applied: what was used, in which SKU's units, and why. */
  private rawParts(key: CostKey, usage: readonly UsageCounter[]): RawPart[] {
    const p = this.period;
    const monthH = p.hours;
    const parts: RawPart[] = [];
    const vs = key.versions;
    if (vs.length === 0) throw new ValidationError(`inventory: key ${key.ref} has no versions`);

    switch (key.provider) {
      case 'aws-kms': {
        const { billed, pendingHoursIn } = awsKeyIntervals(key);
        const keyH = overlapHours(billed, p.start, p.end);
        const pendingH = pendingHoursIn(p);
        const pendingNote = pendingH > 0 ? `; ${fmtQty(pendingH)} h pending deletion are not billed` : '';
        if (key.managedBy === 'provider') {
          parts.push({
            kind: 'key_storage',
            version: vs[0]!.id,
            sku: 'aws-kms/key-month',
            quantity: 0,
            hours: keyH,
            frequency: 'Recurring',
            free: true,
            why: 'AWS-managed key: no storage or rotation fee (requests are billed)',
          });
          break;
        }
        parts.push({
          kind: 'key_storage',
          version: vs[0]!.id,
          sku: 'aws-kms/key-month',
          quantity: keyH / monthH,
          hours: keyH,
          frequency: 'Recurring',
          why: `key billed ${fmtQty(keyH)} of ${monthH} h in ${p.id}, prorated hourly${pendingNote}`,
        });
        const rot = this.price('aws-kms/rotation-month', key);
        const cap = rot?.params.maxBilledRotations;
        for (let i = 1; i < vs.length; i++) {
          const v = vs[i]!;
          const h = overlapHours(
            clip(billed, ms(v.createdAt, `key ${key.ref} version ${v.id}`)),
            p.start,
            p.end,
          );
          if (h <= 0) continue;
          const beyond = cap !== undefined && i > cap;
          parts.push({
            kind: 'rotation',
            version: v.id,
            sku: 'aws-kms/rotation-month',
            quantity: beyond ? 0 : h / monthH,
            hours: h,
            frequency: 'Recurring',
            free: beyond,
            why: beyond
              ? `rotation #${i} (${v.createdAt.slice(0, 10)}): not billed, AWS bills only the first ${cap} rotations of a key`
              : `rotation #${i} (${v.createdAt.slice(0, 10)}) adds a key-month, billed ${fmtQty(h)} of ${monthH} h` +
                (cap !== undefined ? ` (AWS bills the first ${cap} rotations only)` : ''),
          });
        }
        break;
      }
      case 'gcp-kms':
      case 'azure-kv': {
        const isAzure = key.provider === 'azure-kv';
        if (isAzure && key.protection !== 'hsm') {
          parts.push({
            kind: 'key_storage',
            version: vs[vs.length - 1]!.id,
            sku: 'azure-kv/software-key',
            unit: 'Keys',
            quantity: 0,
            frequency: 'Recurring',
            free: true,
            why: 'software-protected Key Vault key: no storage fee, operations are billed',
          });
        } else {
          const sku = isAzure ? azureHsmSku(key) : gcpVersionSku(key);
          const billable = this.price(sku, key)?.params.billableStates ?? BILLABLE_DEFAULT;
          for (const v of vs) {
            const h = overlapHours(versionIntervals(key, v, billable), p.start, p.end);
            if (h <= 0) continue;
            parts.push({
              kind: 'key_version',
              version: v.id,
              sku,
              quantity: h / monthH,
              hours: h,
              frequency: 'Recurring',
              why: `version ${v.id} billable (${billable.join('/')}) ${fmtQty(h)} of ${monthH} h; ${isAzure ? 'Azure versions bill until the key is deleted' : 'destroyed versions are free'}`,
            });
          }
        }
        if (isAzure) {
          const rotated = vs.filter((v, i) => {
            if (i === 0 || v.origin === 'manual') return false;
            const t = ms(v.createdAt, `key ${key.ref} version ${v.id}`);
            return t >= p.start && t < p.end;
          });
          if (rotated.length > 0) {
            parts.push({
              kind: 'rotation',
              sku: 'azure-kv/rotation',
              quantity: rotated.length,
              frequency: 'One-Time',
              why: `${rotated.length} rotation(s) in ${p.id} (${rotated.map((v) => v.createdAt.slice(0, 10)).join(', ')}), each billed once`,
            });
          }
        }
        break;
      }
      case 'azure-managed-hsm':
        parts.push({
          kind: 'key_storage',
          version: vs[vs.length - 1]!.id,
          sku: 'azure-managed-hsm/key',
          unit: 'Keys',
          quantity: 0,
          frequency: 'Recurring',
          free: true,
          why: 'Managed HSM key: storage, operations and rotation are included in the pool price',
        });
        break;
      case 'local':
        parts.push({
          kind: 'key_storage',
          sku: 'local/none',
          unit: 'Keys',
          quantity: 0,
          frequency: 'Recurring',
          free: true,
          why: 'local software KMS: no provider charge',
        });
        break;
      case 'pkcs11':
        if (!key.pool) {
          parts.push({
            kind: 'hsm_pool',
            sku: 'pkcs11/hsm',
            unit: 'Hours',
            quantity: 0,
            frequency: 'Recurring',
            unknownWhy: 'PKCS#11 key with no HSM pool in the inventory: the HSM cost is not known',
            why: 'PKCS#11 key',
          });
        }
        break;
    }

    if (key.pool) {
      const pool = this.pools.get(key.pool);
      const [a, b] = existenceInterval(key);
      const w = overlapHours([[a, b]], p.start, p.end);
      if (!pool) {
        parts.push({
          kind: 'hsm_pool',
          sku: 'pool/unknown',
          unit: 'Hours',
          quantity: 0,
          frequency: 'Recurring',
          unknownWhy: `HSM pool "${key.pool}" is not in the inventory's pools`,
          why: 'HSM pool share',
        });
      } else if (w > 0) {
        parts.push({
          kind: 'hsm_pool',
          sku: pool.sku,
          quantity: 0,
          frequency: 'Recurring',
          pool,
          poolWeightHours: w,
          why: `share of HSM pool ${pool.id}`,
        });
      }
    }

    // Requests, one line per (refined) class.
    const byClass = new Map<RequestClass, number>();
    for (const u of usage) {
      if (u.period !== p.id) continue;
      const c = refineClass(u.class, key);
      byClass.set(c, (byClass.get(c) ?? 0) + u.count);
    }
    for (const [cls, count] of byClass) {
      if (count <= 0) continue;
      const sku = requestSku(key, cls);
      if (!sku) {
        const none = key.provider === 'local' || key.provider === 'pkcs11';
        parts.push({
          kind: 'requests',
          requestClass: cls,
          sku: `${key.provider}/requests-${cls}`,
          unit: 'Requests',
          quantity: count,
          frequency: 'Usage-Based',
          free: none,
          ...(none ? {} : { unknownWhy: `${key.provider} has no price for ${CLASS_LABEL[cls]} requests` }),
          why: none
            ? `${fmtQty(count)} ${CLASS_LABEL[cls]} requests: no per-request charge`
            : `${fmtQty(count)} ${CLASS_LABEL[cls]} requests`,
        });
        continue;
      }
      parts.push({
        kind: 'requests',
        requestClass: cls,
        sku,
        quantity: count,
        frequency: 'Usage-Based',
        why: `${fmtQty(count)} ${CLASS_LABEL[cls]} requests`,
      });
    }
    return parts;
  }

  /** Pass 1: record what this key contributes to shared quantities. */
  observe(key: CostKey, usage: readonly UsageCounter[] = []): void {
    for (const r of this.rawParts(key, usage)) {
      if (r.free || r.unknownWhy) continue;
      if (r.kind === 'requests') {
        const a = this.allowanceFor(r.sku);
        if (a) {
          const k = `${a.id}|${key.account}`;
          this.allowanceTotals.set(k, (this.allowanceTotals.get(k) ?? 0) + r.quantity);
        }
      }
      if (r.pool) {
        const w = this.poolWeights.get(r.pool.id) ?? { hours: 0, keys: 0 };
        w.hours += r.poolWeightHours!;
        w.keys += 1;
        this.poolWeights.set(r.pool.id, w);
        continue;
      }
      const price = this.price(r.sku, key);
      if (price?.tiers) {
        const k = `${r.sku}|${key.account}`;
        this.tierTotals.set(k, (this.tierTotals.get(k) ?? 0) + r.quantity);
      }
    }
  }

  private poolHsmHours(pool: HsmPool): number {
    const a = pool.createdAt ? ms(pool.createdAt, `pool ${pool.id} createdAt`) : Number.NEGATIVE_INFINITY;
    const b = pool.deletedAt ? ms(pool.deletedAt, `pool ${pool.id} deletedAt`) : Number.POSITIVE_INFINITY;
    return overlapHours([[a, b]], this.period.start, this.period.end) * pool.hsms;
  }

  /** Pass 2: the key's cost. Call after `observe` has seen every key sharing its account/pools. */
  priceKey(key: CostKey, usage: readonly UsageCounter[] = []): KeyCost {
    const cur = this.catalog.currency;
    const money = (n: number) => fmtMoney(n, cur);
    const parts: CostPart[] = [];
    const raws = this.rawParts(key, usage);
    for (const r of raws) {
      const price = r.pool ? this.price(r.pool.sku, r.pool) : this.price(r.sku, key);
      const base = {
        kind: r.kind,
        sku: r.pool ? r.pool.sku : r.sku,
        frequency: r.frequency,
        ...(r.version !== undefined ? { version: r.version } : {}),
        ...(r.requestClass ? { requestClass: r.requestClass } : {}),
        ...(price ? { meter: price.meter, source: price.source } : {}),
      };
      const adj = price?.adjusted ? ` [${price.adjusted}]` : '';
      if (r.free && !r.unknownWhy) {
        parts.push({
          ...base,
          unit: price?.unit ?? r.unit ?? 'Units',
          quantity: r.kind === 'requests' && price ? r.quantity / price.unitSize : r.quantity,
          unitPrice: 0,
          listUnitPrice: 0,
          cost: 0,
          status: 'free',
          explanation: r.why,
        });
        continue;
      }
      if (r.unknownWhy || !price) {
        const why = r.unknownWhy ?? this.catalog.whyUnknown(base.sku, key.region, this.at);
        parts.push({
          ...base,
          unit: price?.unit ?? r.unit ?? 'Units',
          quantity: r.kind === 'requests' && price ? r.quantity / price.unitSize : r.quantity,
          unitPrice: null,
          listUnitPrice: null,
          cost: null,
          status: 'unknown',
          explanation: `${r.why}: price unknown (${why})`,
        });
        continue;
      }
      if (r.pool) {
        const pool = r.pool;
        const w = this.poolWeights.get(pool.id);
        const hsmHours = this.poolHsmHours(pool);
        const share = w && w.hours > 0 ? r.poolWeightHours! / w.hours : 1;
        const q = hsmHours * share;
        const unitPrice = price.amount ?? null;
        parts.push({
          ...base,
          unit: price.unit,
          quantity: q,
          unitPrice,
          listUnitPrice: unitPrice === null ? null : listRate(price, q),
          cost: unitPrice === null ? null : q * unitPrice,
          status: unitPrice === null ? 'unknown' : 'priced',
          allocation: {
            kind: 'hsm_pool',
            pool: pool.id,
            hsms: pool.hsms,
            poolHsmHours: hsmHours,
            keyHours: r.poolWeightHours!,
            totalKeyHours: w?.hours ?? r.poolWeightHours!,
            keys: w?.keys ?? 1,
          },
          explanation:
            `HSM pool ${pool.id}: ${pool.hsms} HSM(s) x ${fmtQty(hsmHours / pool.hsms)} h = ${fmtQty(hsmHours)} HSM-hours` +
            (unitPrice === null ? '' : ` x ${money(unitPrice)} = ${money(hsmHours * unitPrice)}`) +
            `, spread over its ${w?.keys ?? 1} key(s) by hours present: this key ${fmtQty(r.poolWeightHours!)} of ${fmtQty(w?.hours ?? r.poolWeightHours!)} h` +
            (unitPrice === null ? '' : ` -> ${money(q * unitPrice)}`) +
            adj,
        });
        continue;
      }
      if (r.kind === 'requests') {
        const a = this.allowanceFor(r.sku);
        let free = 0;
        let freeNote = '';
        let allocation: CostPart['allocation'];
        if (a) {
          const total = this.allowanceTotals.get(`${a.id}|${key.account}`) ?? r.quantity;
          const pool = Math.min(total, a.quantity);
          free = total > 0 ? (r.quantity * pool) / total : 0;
          freeNote =
            `; free allowance ${fmtQty(a.quantity)} requests/month for account ${key.account} ` +
            `(account total ${fmtQty(total)}) shared in proportion to requests: this key gets ${fmtQty(free)} free`;
          allocation = {
            kind: 'free_allowance',
            allowance: a.id,
            account: key.account,
            allowanceQuantity: a.quantity,
            accountQuantity: total,
            keyShare: free,
          };
        }
        const billed = r.quantity - free;
        const q = billed / price.unitSize;
        const unitPrice = price.amount!;
        parts.push({
          ...base,
          unit: price.unit,
          quantity: q,
          ...(a ? { freeQuantity: free / price.unitSize, allocation } : {}),
          unitPrice,
          listUnitPrice: listRate(price, q),
          cost: q * unitPrice,
          status: 'priced',
          explanation: `${r.why}${freeNote}; billed ${fmtQty(billed)} = ${fmtQty(q)} x ${money(unitPrice)} per ${price.unit} = ${money(q * unitPrice)}${adj}`,
        });
        continue;
      }
      if (price.tiers) {
        const total = this.tierTotals.get(`${r.sku}|${key.account}`) ?? r.quantity;
        const { cost: totalCost, steps } = tieredCost(price.tiers, total);
        const avg = total > 0 ? totalCost / total : price.tiers[0]!.amount;
        parts.push({
          ...base,
          unit: price.unit,
          quantity: r.quantity,
          unitPrice: avg,
          listUnitPrice: listRate(price, total),
          cost: r.quantity * avg,
          status: 'priced',
          explanation:
            `${r.why}; graduated tiers on account ${key.account}'s ${fmtQty(total)} ${price.unit}: ` +
            `${steps.join(' + ')} = ${money(totalCost)}, average ${money(avg)}; ` +
            `${fmtQty(r.quantity)} x ${money(avg)} = ${money(r.quantity * avg)}${adj}`,
        });
        continue;
      }
      const unitPrice = price.amount!;
      parts.push({
        ...base,
        unit: price.unit,
        quantity: r.quantity,
        unitPrice,
        listUnitPrice: listRate(price, r.quantity),
        cost: r.quantity * unitPrice,
        status: 'priced',
        explanation: `${r.why}: ${fmtQty(r.quantity)} x ${money(unitPrice)} = ${money(r.quantity * unitPrice)}${adj}`,
      });
    }

    const versionHours = new Map<string, number>();
    for (const v of key.versions) versionHours.set(v.id, 0);
    const rawHours = new Map<string, number>();
    const billableIds = new Set<string>();
    for (const part of parts) {
      if (part.version === undefined) continue;
      if (part.kind === 'key_storage' || part.kind === 'key_version' || part.kind === 'rotation') {
        if (part.status !== 'free' && part.quantity > 0) billableIds.add(part.version);
      }
    }
    for (const r of raws) {
      if (r.version !== undefined && r.hours !== undefined && !r.free) {
        rawHours.set(r.version, Math.max(rawHours.get(r.version) ?? 0, r.hours));
      }
    }
    const versions: VersionCost[] = key.versions.map((v) => {
      const vp = parts.filter((x) => x.version === v.id);
      const unknown = vp.some((x) => x.cost === null);
      return {
        id: v.id,
        billableHours: rawHours.get(v.id) ?? 0,
        cost: unknown ? null : vp.reduce((s, x) => s + (x.cost ?? 0), 0),
      };
    });
    const unknownParts = parts.filter((x) => x.cost === null).length;
    const knownTotal = parts.reduce((s, x) => s + (x.cost ?? 0), 0);
    const p = this.period;
    const rotationsInPeriod = key.versions.filter((v, i) => {
      if (i === 0) return false;
      const t = Date.parse(v.createdAt);
      return t >= p.start && t < p.end;
    }).length;
    return {
      ref: key.ref,
      provider: key.provider,
      account: key.account,
      ...(key.accountName ? { accountName: key.accountName } : {}),
      ...(key.region ? { region: key.region } : {}),
      protection: key.protection,
      algorithm: key.algorithm,
      period: p.id,
      periodStart: p.startIso,
      periodEnd: p.endIso,
      currency: cur,
      catalogVersion: this.catalog.version,
      overrideDigest: this.catalog.overrideDigest,
      parts,
      versions,
      total: unknownParts > 0 ? null : knownTotal,
      knownTotal,
      unknownParts,
      billableVersions: billableIds.size,
      rotationsInPeriod,
    };
  }

  /** Pool totals; a pool with no key in the period keeps its whole cost unallocated. */
  poolCosts(): PoolCost[] {
    const cur = this.catalog.currency;
    return [...this.pools.values()].map((pool) => {
      const price = this.price(pool.sku, pool);
      const hsmHours = this.poolHsmHours(pool);
      const cost = price?.amount === undefined ? null : hsmHours * price.amount;
      const keys = this.poolWeights.get(pool.id)?.keys ?? 0;
      return {
        id: pool.id,
        sku: pool.sku,
        hsmHours,
        cost,
        keys,
        unallocated: keys > 0 ? 0 : cost,
        explanation:
          cost === null
            ? `pool ${pool.id}: ${this.catalog.whyUnknown(pool.sku, pool.region, this.period.startIso)}`
            : `pool ${pool.id}: ${fmtQty(hsmHours)} HSM-hours x ${fmtMoney(price!.amount!, cur)} = ${fmtMoney(cost, cur)}` +
              (keys > 0 ? `, spread over ${keys} key(s)` : ', no keys in the period: unallocated'),
      };
    });
  }
}

/** Groups usage counters by ref. */
export function usageIndex(usage: readonly UsageCounter[]): Map<string, UsageCounter[]> {
  const m = new Map<string, UsageCounter[]>();
  for (const u of usage) {
    const list = m.get(u.ref);
    if (list) list.push(u);
    else m.set(u.ref, [u]);
  }
  return m;
}

/** Prices a whole inventory for one month. */
export function computeCosts(
  inventory: CostInventory,
  usage: readonly UsageCounter[],
  catalog: PriceCatalog,
  period: string,
): CostReport {
  const model = new CostModel(catalog, period, inventory.pools ?? []);
  const idx = usageIndex(usage);
  const seen = new Set<string>();
  for (const k of inventory.keys) {
    if (seen.has(k.ref)) throw new ValidationError(`inventory: key ${k.ref} is listed twice`);
    seen.add(k.ref);
    model.observe(k, idx.get(k.ref) ?? []);
  }
  const keys = inventory.keys.map((k) => model.priceKey(k, idx.get(k.ref) ?? []));
  const pools = model.poolCosts();
  const unmatchedUsage = usage.filter((u) => u.period === period && !seen.has(u.ref));
  const unknownParts =
    keys.reduce((s, k) => s + k.unknownParts, 0) + pools.filter((p) => p.cost === null).length;
  const knownTotal =
    keys.reduce((s, k) => s + k.knownTotal, 0) + pools.reduce((s, p) => s + (p.unallocated ?? 0), 0);
  const p = model.period;
  return {
    period,
    periodStart: p.startIso,
    periodEnd: p.endIso,
    currency: catalog.currency,
    catalogVersion: catalog.version,
    overrideDigest: catalog.overrideDigest,
    keys,
    pools,
    unmatchedUsage,
    total: unknownParts > 0 ? null : knownTotal,
    knownTotal,
    unknownParts,
  };
}

/** Human-readable lines: the total, then one line per part with its arithmetic and reason. */
export function explainKeyCost(kc: KeyCost): string[] {
  const money = (n: number) => fmtMoney(n, kc.currency);
  const head =
    `${kc.ref} (${kc.provider}, ${kc.protection} ${kc.algorithm}) ${kc.period}: ` +
    (kc.total === null
      ? `${money(kc.knownTotal)} known + ${kc.unknownParts} part(s) of unknown price`
      : money(kc.total)) +
    ` [catalog ${kc.catalogVersion}, overrides ${kc.overrideDigest}]`;
  const label: Record<PartKind, string> = {
    key_storage: 'key storage',
    key_version: 'key',
    rotation: 'rotation',
    requests: 'requests',
    hsm_pool: 'HSM pool',
  };
  const lines = [head];
  for (const part of kc.parts) {
    const v = part.version !== undefined ? ` version ${part.version}` : '';
    const c = part.cost === null ? 'unknown' : money(part.cost);
    lines.push(`  ${label[part.kind]}${v} [${part.sku}] ${c}: ${part.explanation}`);
  }
  if (kc.parts.length === 0) lines.push('  nothing billed in this period');
  return lines;
}
