import { createHash } from 'node:crypto';
import { ValidationError } from '../errors.js';
import { canonicalJson } from '../util/canonicalJson.js';
import type { CatalogAllowance, CatalogData, ParsedOverrides } from './catalog.js';

/**
 * Prices from a validated catalog: lookups by SKU, region and date, overrides applied. Kept
 * apart from the catalog's schema (catalog.ts) so code that only prices, such as the cost model
 * and the serverless functions, does not load the schema library.
 */

export type Tier = { upTo: number | null; amount: number };

/** A price after overrides and currency conversion. Amounts are in the catalog's output currency. */
export interface Price {
  sku: string;
  provider: string;
  meter: string;
  description: string;
  unit: string;
  unitSize: number;
  amount?: number;
  tiers?: Tier[];
  /** The list price (catalog, before override rules; in the output currency). */
  listAmount?: number;
  listTiers?: Tier[];
  region?: string;
  params: { maxBilledRotations?: number; billableStates?: string[] };
  source: string;
  effective: string;
  confidence: 'list' | 'secondary';
  /** What the overrides did to this price, for explanations. */
  adjusted?: string;
}

export interface PriceCatalog {
  version: string;
  currency: string;
  /** Output currency per USD (1 for USD). */
  perUsd: number;
  /** sha256 (hex, first 16) of the canonical overrides; `none` without overrides. */
  overrideDigest: string;
  allowances: CatalogAllowance[];
  /** Every SKU known to the catalog. */
  skus: ReadonlySet<string>;
  /** Price of a SKU for a region at a date (YYYY-MM-DD or ISO). undefined when the catalog has none. */
  lookup(sku: string, region: string | undefined, at: string): Price | undefined;
  /** Why lookup found nothing, in one sentence. */
  whyUnknown(sku: string, region: string | undefined, at: string): string;
}

function ruleMatches(rule: string, sku: string): boolean {
  return rule.endsWith('/*') ? sku.startsWith(rule.slice(0, -1)) : rule === sku;
}

/**
 * The lookup over a catalog and overrides already validated (`parseCatalog`, `parseOverrides`;
 * `buildCatalog` does both). Override rules apply in order (a later rule works on the result of
 * an earlier one); a rule naming no SKU of the catalog is an error, so a typo never leaves a
 * negotiated rate silently unapplied.
 */
export function priceCatalog(data: CatalogData, ov?: ParsedOverrides): PriceCatalog {
  const skus = new Set(data.prices.map((p) => p.sku));
  const rules = ov?.rules ?? [];
  rules.forEach((r, i) => {
    if (![...skus].some((s) => ruleMatches(r.sku, s))) {
      throw new ValidationError(
        `price overrides: rules[${i}].sku: "${r.sku}" matches no SKU of catalog ${data.version}`,
      );
    }
  });
  const perUsd = ov?.currency?.perUsd ?? 1;
  const currency = ov?.currency?.code ?? 'USD';
  const overrideDigest =
    ov === undefined ? 'none' : createHash('sha256').update(canonicalJson(ov)).digest('hex').slice(0, 16);

  const prices: Price[] = data.prices.map((p) => {
    let amountUsd = p.usd;
    let tiers: Tier[] | undefined = p.tiers?.map((t) => ({ upTo: t.upTo, amount: t.usd }));
    const notes: string[] = [];
    for (const r of rules) {
      if (!ruleMatches(r.sku, p.sku)) continue;
      if (r.multiply !== undefined) {
        if (amountUsd !== undefined) amountUsd *= r.multiply;
        tiers = tiers?.map((t) => ({ upTo: t.upTo, amount: t.amount * r.multiply! }));
        notes.push(`x${r.multiply}${r.note ? ` (${r.note})` : ''}`);
      } else if (typeof r.replace === 'number') {
        amountUsd = r.replace;
        tiers = undefined;
        notes.push(`replaced by ${r.replace} USD${r.note ? ` (${r.note})` : ''}`);
      } else if (r.replace) {
        amountUsd = undefined;
        tiers = r.replace.map((t) => ({ upTo: t.upTo, amount: t.usd }));
        notes.push(`tiers replaced${r.note ? ` (${r.note})` : ''}`);
      }
    }
    const out: Price = {
      sku: p.sku,
      provider: p.provider,
      meter: p.meter,
      description: p.description,
      unit: p.unit,
      unitSize: p.unitSize ?? 1,
      params: p.params ?? {},
      source: p.source,
      effective: p.effective,
      confidence: p.confidence,
    };
    if (amountUsd !== undefined) out.amount = amountUsd * perUsd;
    if (p.usd !== undefined) out.listAmount = p.usd * perUsd;
    if (p.tiers) out.listTiers = p.tiers.map((t) => ({ upTo: t.upTo, amount: t.usd * perUsd }));
    if (tiers) out.tiers = tiers.map((t) => ({ upTo: t.upTo, amount: t.amount * perUsd }));
    if (p.region) out.region = p.region;
    if (notes.length) out.adjusted = `override ${notes.join(', ')}`;
    if (perUsd !== 1) out.adjusted = `${out.adjusted ? `${out.adjusted}; ` : ''}${currency} at ${perUsd}/USD`;
    return out;
  });

  const bySku = new Map<string, Price[]>();
  for (const p of prices) {
    const list = bySku.get(p.sku) ?? [];
    list.push(p);
    bySku.set(p.sku, list);
  }
  // Latest effective date first, so the first match is the price in force.
  for (const list of bySku.values()) list.sort((a, b) => b.effective.localeCompare(a.effective));

  const lookup = (sku: string, region: string | undefined, at: string): Price | undefined => {
    const day = at.slice(0, 10);
    const list = bySku.get(sku);
    if (!list) return undefined;
    const inForce = list.filter((p) => p.effective <= day);
    return (region ? inForce.find((p) => p.region === region) : undefined) ?? inForce.find((p) => !p.region);
  };
  const whyUnknown = (sku: string, region: string | undefined, at: string): string => {
    const list = bySku.get(sku);
    if (!list) return `catalog ${data.version} has no SKU ${sku}`;
    const earliest = list[list.length - 1]!.effective;
    if (at.slice(0, 10) < earliest)
      return `catalog ${data.version} has no price for ${sku} before ${earliest}`;
    return `catalog ${data.version} has no price for ${sku} in region ${region ?? '(none)'}`;
  };
  return {
    version: data.version,
    currency,
    perUsd,
    overrideDigest,
    allowances: data.allowances,
    skus,
    lookup,
    whyUnknown,
  };
}
/** Cost of `quantity` units under graduated tiers (each tier's rate applies to the units inside it). */
export function tieredCost(tiers: Tier[], quantity: number): { cost: number; steps: string[] } {
  let cost = 0;
  let from = 0;
  const steps: string[] = [];
  for (const t of tiers) {
    if (quantity <= from) break;
    const to = t.upTo === null ? quantity : Math.min(quantity, t.upTo);
    const q = to - from;
    if (q > 0) {
      cost += q * t.amount;
      steps.push(`${round6(q)} x ${t.amount}`);
    }
    if (t.upTo === null) break;
    from = t.upTo;
  }
  return { cost, steps };
}

export function round6(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
