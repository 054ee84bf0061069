import { z } from 'zod';
import { ValidationError } from '../errors.js';
import { type PriceCatalog, priceCatalog } from './priceCatalog.js';

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
export type ParsedOverrides = z.infer<typeof overridesSchema>;
export type { Price, PriceCatalog, Tier } from './priceCatalog.js';
export { priceCatalog, round6, tieredCost } from './priceCatalog.js';

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

export function parseOverrides(json: unknown, what = 'price overrides'): ParsedOverrides {
  const r = overridesSchema.safeParse(json);
  if (!r.success) throw new ValidationError(zodMessage(what, r.error));
  return r.data;
}

/**
 * Validates the catalog, applies overrides and returns a lookup. Override rules apply in order
 * (a later rule works on the result of an earlier one); a rule naming no SKU of the catalog is
 * an error, so a typo never leaves a negotiated rate silently unapplied.
 */
export function buildCatalog(catalogJson: unknown, overridesJson?: unknown): PriceCatalog {
  const data = parseCatalog(catalogJson);
  return priceCatalog(data, overridesJson === undefined ? undefined : parseOverrides(overridesJson));
}
