import { round6 } from '../cost/catalog.js';
import { type CostFinding, costFindings } from '../cost/findings.js';
import { costKeyFromManaged } from '../cost/fromInventory.js';
import { computeCosts } from '../cost/model.js';
import { parsePeriod } from '../cost/period.js';
import type { CostReport, UsageCounter } from '../cost/types.js';
import { ConfigError } from '../errors.js';
import { policyFor } from '../policy/match.js';
import type { MetricPoint } from '../ports/MetricsSink.js';
import type { RekeyContext } from './context.js';
import { takeInventory } from './inventory.js';

export interface ReportCostsOptions {
  /** The month to price, YYYY-MM. Default: the current month (UTC) of the context's clock. */
  period?: string;
  /** Request counts to price (importers, rekey's own counters). Default: none. */
  usage?: UsageCounter[];
  /**
   * `latest` (default) prices the newest stored inventory and takes one only when none is
   * stored; `fresh` always takes one first.
   */
  inventory?: 'latest' | 'fresh';
}

export interface CostsReport {
  period: string;
  inventoryId: string;
  inventoryTakenAt: string;
  /** Providers the inventory could not list: their keys are missing from the figures. */
  inventoryErrors: { providerId: string; message: string }[];
  keys: number;
  currency: string;
  /** Sum over keys, or null when any part's price is unknown (see `knownTotal`). */
  total: number | null;
  knownTotal: number;
  unknownParts: number;
  findings: CostFinding[];
  /** Per key, with every part explained. */
  costs: CostReport;
}

/**
 * What each key of the latest inventory costs in a month, through the price catalog and the
 * cost model. Every key's figure is emitted as a metric (dimensions: provider type, protection,
 * governing policy; the key ref travels as a property, never a dimension) and returned with its
 * explanation, with totals per provider type and the cost findings (idle keys, budget breaches).
 */
export async function reportCosts(ctx: RekeyContext, opts: ReportCostsOptions = {}): Promise<CostsReport> {
  if (!ctx.catalog) throw new ConfigError('reporting costs needs a price catalog, and none is loaded');
  const now = ctx.clock.now();
  const period = opts.period ?? now.toISOString().slice(0, 7);
  parsePeriod(period);
  const inventory =
    (opts.inventory === 'fresh' ? null : await ctx.state.latestInventory()) ?? (await takeInventory(ctx));
  const costKeys = inventory.keys.map((k) => costKeyFromManaged(k));
  const usage = opts.usage ?? [];
  const costs = computeCosts({ keys: costKeys }, usage, ctx.catalog, period);
  const findings = costFindings({
    keys: costKeys,
    costs: costs.keys,
    now: now.toISOString(),
    ...(opts.usage ? { usage } : {}),
    policies: ctx.config.policies,
    catalog: ctx.catalog,
  });

  if (ctx.metrics) {
    const byRef = new Map(inventory.keys.map((k) => [k.ref, k]));
    const at = now.toISOString();
    const points: MetricPoint[] = [];
    const totals = new Map<string, { cost: number; keys: number; unknown: number }>();
    for (const kc of costs.keys) {
      const key = byRef.get(kc.ref);
      const policy = key ? policyFor(ctx.config, key).policy?.name : undefined;
      const dimensions = { provider: kc.provider, protection: kc.protection, policy: policy ?? '(none)' };
      const properties = {
        keyRef: kc.ref,
        period,
        currency: kc.currency,
        catalogVersion: kc.catalogVersion,
        unknownParts: kc.unknownParts,
        rotationsInPeriod: kc.rotationsInPeriod,
      };
      points.push(
        {
          name: 'rekey.cost.key_monthly',
          value: kc.total ?? kc.knownTotal,
          unit: 'None',
          dimensions,
          properties,
          at,
        },
        {
          name: 'rekey.cost.billable_versions',
          value: kc.billableVersions,
          unit: 'Count',
          dimensions,
          properties,
          at,
        },
      );
      const t = totals.get(kc.provider) ?? { cost: 0, keys: 0, unknown: 0 };
      t.cost += kc.knownTotal;
      t.keys += 1;
      t.unknown += kc.unknownParts;
      totals.set(kc.provider, t);
    }
    for (const [provider, t] of totals) {
      const properties = { period, currency: costs.currency, unknownParts: t.unknown };
      points.push(
        {
          name: 'rekey.cost.total',
          value: round6(t.cost),
          unit: 'None',
          dimensions: { provider },
          properties,
          at,
        },
        { name: 'rekey.cost.keys', value: t.keys, unit: 'Count', dimensions: { provider }, properties, at },
      );
    }
    const byKind = new Map<string, number>();
    for (const f of findings) byKind.set(f.kind, (byKind.get(f.kind) ?? 0) + 1);
    for (const [kind, n] of byKind) {
      points.push({
        name: 'rekey.cost.findings',
        value: n,
        unit: 'Count',
        dimensions: { kind },
        properties: { period },
        at,
      });
    }
    ctx.metrics.record(points);
    await ctx.metrics.flush?.();
  }

  return {
    period,
    inventoryId: inventory.id,
    inventoryTakenAt: inventory.takenAt,
    inventoryErrors: inventory.errors,
    keys: costs.keys.length,
    currency: costs.currency,
    total: costs.total,
    knownTotal: costs.knownTotal,
    unknownParts: costs.unknownParts,
    findings,
    costs,
  };
}
