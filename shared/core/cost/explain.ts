import { parseKeyRef } from '../domain/keyRef.js';
import { NotFoundError, ValidationError } from '../errors.js';
import type { PriceCatalog } from './catalog.js';
import { fmtMoney, fmtQty } from './format.js';
import { refineClass } from './model.js';
import type {
  CostAllocation,
  CostKey,
  CostPart,
  KeyCost,
  PartKind,
  PartStatus,
  RequestClass,
  UsageCounter,
} from './types.js';

/**
 * One key's cost, figure by figure, grouped the way people ask about it: what the key itself
 * costs, which versions bill, what the rotations add, the requests by class, the free allowance
 * it got and its share of an HSM pool. Every figure names its catalog SKU, unit price, quantity
 * and where the price comes from.
 */

export interface ExplainedFigure {
  kind: PartKind;
  version?: string;
  requestClass?: RequestClass;
  sku: string;
  meter?: string;
  unit: string;
  quantity: number;
  /** Quantity covered by a free allowance (same unit, not in `quantity`). */
  freeQuantity?: number;
  unitPrice: number | null;
  listUnitPrice: number | null;
  cost: number | null;
  status: PartStatus;
  /** The catalog entry the unit price comes from; null when the catalog has no price. */
  price: {
    source: string;
    effective: string;
    confidence: 'list' | 'secondary';
    description: string;
    adjusted?: string;
  } | null;
  /** For requests: how many counters were summed, and where they came from. */
  usage?: { counters: number; sources: string[] };
  allocation?: CostAllocation;
  explanation: string;
}

export interface FreeTierShare {
  allowance: string;
  account: string;
  requestClass?: RequestClass;
  /** Free requests a month for the account. */
  allowanceQuantity: number;
  /** The account's requests the allowance applies to. */
  accountQuantity: number;
  /** Free requests that fell to this key. */
  keyShare: number;
  /** What those free requests would have cost; null when the price is unknown. */
  saved: number | null;
}

export interface KeyCostExplanation {
  ref: string;
  name?: string;
  provider: string;
  account: string;
  region?: string;
  protection: string;
  algorithm: string;
  policy: string | null;
  period: string;
  periodStart: string;
  periodEnd: string;
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  total: number | null;
  knownTotal: number;
  unknownParts: number;
  storage: ExplainedFigure[];
  versions: {
    /** Versions billable at some point in the period. */
    billable: number;
    figures: ExplainedFigure[];
    list: { id: string; createdAt: string; billableHours: number; cost: number | null }[];
  };
  rotations: { inPeriod: number; sinceCreation: number; figures: ExplainedFigure[] };
  requests: ExplainedFigure[];
  freeTier: FreeTierShare[];
  hsm: ExplainedFigure[];
  notes: string[];
}

/**
 * The key a user named: its exact ref, the same ref in canonical form, or its name when only
 * one key has it. Anything else is an error that names what was asked for.
 */
export function findCostKey(keys: readonly CostKey[], wanted: string, source = 'the inventory'): CostKey {
  const text = wanted.trim();
  if (!text) throw new ValidationError('KEYREF is empty: give a key ref or a key name');
  const exact = keys.find((k) => k.ref === text);
  if (exact) return exact;
  let canonical: string | undefined;
  try {
    canonical = parseKeyRef(text).uri;
  } catch {
    canonical = undefined;
  }
  if (canonical) {
    const found = keys.find((k) => {
      try {
        return parseKeyRef(k.ref).uri === canonical;
      } catch {
        return false;
      }
    });
    if (found) return found;
  }
  const named = keys.filter((k) => k.name === text);
  if (named.length === 1) return named[0]!;
  if (named.length > 1) {
    throw new ValidationError(
      `"${text}" names ${named.length} keys in ${source} (${named.map((k) => k.ref).join(', ')}): give the full key ref`,
    );
  }
  throw new NotFoundError(
    `key "${text}" is not in ${source} (${keys.length} key(s)); \`rekey inventory export\` lists every key rekey sees`,
  );
}

function figure(part: CostPart, catalog: PriceCatalog, key: CostKey, at: string): ExplainedFigure {
  // Pool parts are priced in the pool's region, which is normally the key's; fall back to any region.
  const priced = catalog.lookup(part.sku, key.region, at) ?? catalog.lookup(part.sku, undefined, at);
  return {
    kind: part.kind,
    ...(part.version !== undefined ? { version: part.version } : {}),
    ...(part.requestClass ? { requestClass: part.requestClass } : {}),
    sku: part.sku,
    ...(part.meter ? { meter: part.meter } : {}),
    unit: part.unit,
    quantity: part.quantity,
    ...(part.freeQuantity !== undefined ? { freeQuantity: part.freeQuantity } : {}),
    unitPrice: part.unitPrice,
    listUnitPrice: part.listUnitPrice,
    cost: part.cost,
    status: part.status,
    price: priced
      ? {
          source: priced.source,
          effective: priced.effective,
          confidence: priced.confidence,
          description: priced.description,
          ...(priced.adjusted ? { adjusted: priced.adjusted } : {}),
        }
      : null,
    ...(part.allocation ? { allocation: part.allocation } : {}),
    explanation: part.explanation,
  };
}

export function explainKey(
  kc: KeyCost,
  key: CostKey,
  catalog: PriceCatalog,
  opts: { usage?: readonly UsageCounter[]; policy?: string | null } = {},
): KeyCostExplanation {
  if (kc.ref !== key.ref) throw new ValidationError(`cost of ${kc.ref} given for key ${key.ref}`);
  const at = kc.periodStart;
  const figs = kc.parts.map((part) => figure(part, catalog, key, at));
  const usage = (opts.usage ?? []).filter((u) => u.ref === key.ref && u.period === kc.period);
  for (const f of figs) {
    if (f.kind !== 'requests') continue;
    const mine = usage.filter((u) => refineClass(u.class, key) === f.requestClass);
    f.usage = {
      counters: mine.length,
      sources: [...new Set(mine.map((u) => u.source ?? 'usage file'))].sort(),
    };
  }
  const of = (...kinds: PartKind[]) => figs.filter((f) => kinds.includes(f.kind));
  const freeTier: FreeTierShare[] = [];
  for (const f of figs) {
    if (f.allocation?.kind !== 'free_allowance') continue;
    freeTier.push({
      allowance: f.allocation.allowance,
      account: f.allocation.account,
      ...(f.requestClass ? { requestClass: f.requestClass } : {}),
      allowanceQuantity: f.allocation.allowanceQuantity,
      accountQuantity: f.allocation.accountQuantity,
      keyShare: f.allocation.keyShare,
      saved: f.unitPrice === null ? null : (f.freeQuantity ?? 0) * f.unitPrice,
    });
  }
  const notes: string[] = [];
  if (usage.length === 0) {
    notes.push(
      `no usage counters for ${kc.period}: requests are not included (give --usage or --import to price them)`,
    );
  }
  if (kc.unknownParts > 0) {
    notes.push(
      `${kc.unknownParts} part(s) have no known price: the total is unknown, ${fmtMoney(kc.knownTotal, kc.currency)} is what is known`,
    );
  }
  const periodStart = Date.parse(kc.periodStart);
  const periodEnd = Date.parse(kc.periodEnd);
  return {
    ref: kc.ref,
    ...(key.name ? { name: key.name } : {}),
    provider: kc.provider,
    account: kc.account,
    ...(kc.region ? { region: kc.region } : {}),
    protection: kc.protection,
    algorithm: kc.algorithm,
    policy: opts.policy ?? null,
    period: kc.period,
    periodStart: kc.periodStart,
    periodEnd: kc.periodEnd,
    currency: kc.currency,
    catalogVersion: kc.catalogVersion,
    overrideDigest: kc.overrideDigest,
    total: kc.total,
    knownTotal: kc.knownTotal,
    unknownParts: kc.unknownParts,
    storage: of('key_storage'),
    versions: {
      billable: kc.billableVersions,
      figures: of('key_version'),
      list: kc.versions.map((v) => ({
        id: v.id,
        createdAt: key.versions.find((x) => x.id === v.id)?.createdAt ?? '',
        billableHours: v.billableHours,
        cost: v.cost,
      })),
    },
    rotations: {
      inPeriod: kc.rotationsInPeriod,
      sinceCreation: key.versions.filter((v, i) => i > 0 && Date.parse(v.createdAt) < periodEnd).length,
      figures: of('rotation'),
    },
    requests: of('requests'),
    freeTier,
    hsm: of('hsm_pool'),
    notes: notes.concat(
      key.createdAt && Date.parse(key.createdAt) >= periodEnd
        ? [`the key was created after ${kc.period}: nothing bills in that month`]
        : Date.parse(key.createdAt) > periodStart
          ? [`the key was created on ${key.createdAt.slice(0, 10)}, during ${kc.period}`]
          : [],
    ),
  };
}

/** The explanation as text: a heading, then one block per section, each figure with its arithmetic. */
export function explanationLines(x: KeyCostExplanation): string[] {
  const money = (n: number | null) => (n === null ? 'unknown' : fmtMoney(n, x.currency));
  const lines: string[] = [];
  lines.push(`${x.ref}${x.name ? ` (${x.name})` : ''}`);
  lines.push(
    `  ${x.provider}, ${x.protection} ${x.algorithm}, account ${x.account}${x.region ? `, ${x.region}` : ''}, policy ${x.policy ?? 'none'}`,
  );
  lines.push(
    `  ${x.period}: ${x.total === null ? `unknown (${money(x.knownTotal)} known, ${x.unknownParts} part(s) unpriced)` : money(x.total)}` +
      ` [catalog ${x.catalogVersion}, overrides ${x.overrideDigest}]`,
  );
  const fig = (f: ExplainedFigure) => {
    const what = [f.version !== undefined ? `version ${f.version}` : '', f.requestClass ? f.requestClass : '']
      .filter(Boolean)
      .join(' ');
    const arithmetic =
      f.unitPrice === null
        ? `${fmtQty(f.quantity)} ${f.unit} x unknown`
        : `${fmtQty(f.quantity)} ${f.unit} x ${money(f.unitPrice)} = ${money(f.cost)}`;
    const src = f.price
      ? `${f.price.source} (effective ${f.price.effective}${f.price.confidence === 'secondary' ? ', secondary source' : ''}${f.price.adjusted ? `, ${f.price.adjusted}` : ''})`
      : 'no catalog price';
    const out = [
      `    ${what ? `${what}: ` : ''}[${f.sku}] ${arithmetic}${f.status === 'free' ? ' (not billed)' : ''}`,
      `      ${f.explanation}`,
      `      price: ${src}`,
    ];
    if (f.usage) {
      out.push(
        `      usage: ${f.usage.counters} counter(s)${f.usage.sources.length ? ` from ${f.usage.sources.join(', ')}` : ''}`,
      );
    }
    return out;
  };
  const section = (title: string, figures: ExplainedFigure[]) => {
    lines.push(`  ${title}:`);
    if (figures.length === 0) lines.push('    none');
    for (const f of figures) lines.push(...fig(f));
  };
  section('key storage', x.storage);
  lines.push(`  billed versions: ${x.versions.billable} of ${x.versions.list.length}`);
  for (const f of x.versions.figures) lines.push(...fig(f));
  for (const v of x.versions.list) {
    lines.push(
      `    version ${v.id} created ${v.createdAt.slice(0, 10)}: billable ${fmtQty(v.billableHours)} h, ${money(v.cost)}`,
    );
  }
  lines.push(
    `  rotations: ${x.rotations.inPeriod} in ${x.period}, ${x.rotations.sinceCreation} since creation`,
  );
  for (const f of x.rotations.figures) lines.push(...fig(f));
  section('requests by class', x.requests);
  lines.push('  free tier:');
  if (x.freeTier.length === 0) lines.push('    none');
  for (const t of x.freeTier) {
    lines.push(
      `    ${t.allowance}: ${fmtQty(t.allowanceQuantity)} free requests a month for account ${t.account}, ` +
        `shared over its ${fmtQty(t.accountQuantity)} requests: ${fmtQty(t.keyShare)}${t.requestClass ? ` ${t.requestClass}` : ''} requests of this key are free (${money(t.saved)})`,
    );
  }
  section('HSM pool share', x.hsm);
  for (const n of x.notes) lines.push(`  note: ${n}`);
  return lines;
}
