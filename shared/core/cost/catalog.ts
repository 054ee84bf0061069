import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { canonicalJson } from '../util/canonicalJson.js';

/**
 * The price catalog: a versioned data file (data/prices/catalog.json) validated here, plus user
 * overrides (negotiated rates, another currency at a fixed rate) merged on top. Pure: callers
 * pass parsed JSON; reading files is an adapter's job.
 */

const isoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD');
const amount = z.number().finite().nonnegative();
const tier = z.object({ upTo: z.number().positive().nullable(), usd: amount }).strict();

const priceSchema = z
  .object({
    sku: z.string().regex(/^[a-z0-9-]+\/[A-Za-z0-9._-]+$/, 'expected <provider>/<name>'),
    provider: z.string().min(1),
    meter: z.string().min(1),
    description: z.string().min(1),
    unit: z.string().min(1),
    /** How many counted items one unit holds (10,000 for "per 10K requests"). */
    unitSize: z.number().int().positive().optional(),
    usd: amount.optional(),
    tiers: z.array(tier).min(1).optional(),
    region: z.string().min(1).optional(),
    params: z
      .object({
        maxBilledRotations: z.number().int().nonnegative().optional(),
        billableStates: z.array(z.enum(['enabled', 'disabled', 'destroy_scheduled'])).optional(),
      })
      .strict()
      .optional(),
    source: z.url(),
    effective: isoDate,
    confidence: z.enum(['list', 'secondary']),
  })
  .strict()
  .superRefine((p, ctx) => {
    if ((p.usd === undefined) === (p.tiers === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of usd or tiers' });
    }
    if (p.tiers) {
      const last = p.tiers[p.tiers.length - 1]!;
      if (last.upTo !== null) ctx.addIssue({ code: 'custom', message: 'the last tier must have upTo: null' });
      for (let i = 1; i < p.tiers.length; i++) {
        const prev = p.tiers[i - 1]!.upTo;
        const cur = p.tiers[i]!.upTo;
        if (prev === null || (cur !== null && cur <= prev)) {
          ctx.addIssue({ code: 'custom', message: `tiers[${i}].upTo must be above tiers[${i - 1}].upTo` });
        }
      }
    }
  });

const allowanceSchema = z
  .object({
    id: z.string().min(1),
    provider: z.string().min(1),
    description: z.string().min(1),
    quantity: z.number().nonnegative(),
    unit: z.string().min(1),
    scope: z.literal('account'),
    appliesTo: z.array(z.string()).min(1),
    source: z.url(),
    effective: isoDate,
  })
  .strict();

export const catalogSchema = z
  .object({
    version: z.string().min(1),
    currency: z.literal('USD'),
    notes: z.string().optional(),
    prices: z.array(priceSchema).min(1),
    allowances: z.array(allowanceSchema).default([]),
  })
  .strict();

const overrideRule = z
  .object({
    /** A catalog SKU, or `<provider>/*` for every SKU of a provider. */
    sku: z.string().min(1),
    multiply: z.number().finite().nonnegative().optional(),
    replace: z.union([amount, z.array(tier).min(1)]).optional(),
    note: z.string().optional(),
  })
  .strict()
  .refine((r) => (r.multiply === undefined) !== (r.replace === undefined), {
    message: 'give exactly one of multiply or replace',
  });

export const overridesSchema = z
  .object({
    name: z.string().optional(),
    currency: z
      .object({
        code: z.string().regex(/^[A-Z]{3}$/, 'expected an ISO 4217 code'),
        perUsd: z.number().positive(),
      })
      .strict()
      .optional(),
    rules: z.array(overrideRule).default([]),
  })
  .strict();

export type CatalogData = z.infer<typeof catalogSchema>;
export type CatalogPrice = z.infer<typeof priceSchema>;
export type CatalogAllowance = z.infer<typeof allowanceSchema>;
export type PriceOverrides = z.input<typeof overridesSchema>;
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

function zodMessage(what: string, e: z.ZodError): string {
  return e.issues
    .map((i) => `${what}: ${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`)
    .join('\n');
}

export function parseCatalog(json: unknown, what = 'price catalog'): CatalogData {
  const r = catalogSchema.safeParse(json);
  if (!r.success) throw new ValidationError(zodMessage(what, r.error));
  const seen = new Set<string>();
  for (const [i, p] of r.data.prices.entries()) {
    const id = `${p.sku}|${p.region ?? '*'}|${p.effective}`;
    if (seen.has(id)) {
      throw new ValidationError(
        `${what}: prices[${i}]: ${p.sku} is listed twice for region ${p.region ?? '(any)'} from ${p.effective}`,
      );
    }
    seen.add(id);
  }
  const skus = new Set(r.data.prices.map((p) => p.sku));
  for (const [i, a] of r.data.allowances.entries()) {
    for (const s of a.appliesTo) {
      if (!skus.has(s)) throw new ValidationError(`${what}: allowances[${i}].appliesTo: unknown SKU "${s}"`);
    }
  }
  return r.data;
}

export function parseOverrides(json: unknown, what = 'price overrides'): z.infer<typeof overridesSchema> {
  const r = overridesSchema.safeParse(json);
  if (!r.success) throw new ValidationError(zodMessage(what, r.error));
  return r.data;
}

function ruleMatches(rule: string, sku: string): boolean {
  return rule.endsWith('/*') ? sku.startsWith(rule.slice(0, -1)) : rule === sku;
}

/**
 * Validates the catalog, applies overrides and returns a lookup. Override rules apply in order
 * (a later rule works on the result of an earlier one); a rule naming no SKU of the catalog is
 * an error, so a typo never leaves a negotiated rate silently unapplied.
 */
export function buildCatalog(catalogJson: unknown, overridesJson?: unknown): PriceCatalog {
  const data = parseCatalog(catalogJson);
  const ov = overridesJson === undefined ? undefined : parseOverrides(overridesJson);
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
