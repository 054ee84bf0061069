import { type CostFinding, costFindings } from '../cost/findings.js';
import { costKeyFromManaged } from '../cost/fromInventory.js';
import { costMetricPoints } from '../cost/metrics.js';
import { computeCosts } from '../cost/model.js';
import { parsePeriod } from '../cost/period.js';
import type { CostReport, UsageCounter } from '../cost/types.js';
import { ConfigError } from '../errors.js';
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
 * cost model, with the cost findings (idle keys, budget breaches). Every key's figures go to the
 * metrics sink as the registered cost metrics (`costMetricPoints`: low-cardinality dimensions,
 * the key ref as a property, never a dimension) and are returned with their explanation.
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
    ctx.metrics.record(
      costMetricPoints({
        report: costs,
        keys: costKeys,
        policies: ctx.config.policies,
        findings,
        usage,
        now: now.toISOString(),
      }),
    );
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
