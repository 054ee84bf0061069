import { ValidationError } from '../errors.js';
import type { DekCensus } from '../plan/evaluate.js';
import type { Policy } from '../policy/types.js';
import type { PriceCatalog } from './catalog.js';
import { type CostFinding, costFindings } from './findings.js';
import { policyForCostKey } from './fromInventory.js';
import { computeCosts } from './model.js';
import { nextPeriod, periodOf } from './period.js';
import { projectCosts } from './projection.js';
import { keyRotation, type RotationStatus } from './rotation.js';
import type { CostInventory, PartKind, UsageCounter } from './types.js';

/**
 * The data of the cost report page: cost by provider and by policy month by month (past months
 * priced from the inventory's history, coming months forecast under the current policies), the
 * most expensive keys, findings and rotation compliance. Pure; html.ts draws it.
 */

export interface CostDashboardInput {
  inventory: CostInventory;
  usage?: readonly UsageCounter[];
  policies: readonly Policy[];
  catalog: PriceCatalog;
  /** The current instant: its month is the last priced one. */
  now: string;
  /** Months priced from history, the current one included. Default 6. */
  historyMonths?: number;
  /** Months forecast after the current one. Default 6. */
  forecastMonths?: number;
  census?: DekCensus;
  topKeys?: number;
  /** Where the inventory came from, for the page's header. */
  source: string;
  title?: string;
}

export interface DashboardSeries {
  name: string;
  /** Known cost per period, aligned with `periods`. */
  values: number[];
  /** Whether some part's price was unknown in that period (the value is then a lower bound). */
  partial: boolean[];
}

export interface DashboardKey {
  ref: string;
  name?: string;
  provider: string;
  policy: string;
  total: number | null;
  known: number;
  byPart: Partial<Record<PartKind, number>>;
  billableVersions: number;
}

export interface DashboardRotationRow {
  policy: string;
  counts: Record<RotationStatus, number>;
}

export interface CostDashboard {
  title: string;
  generatedAt: string;
  source: string;
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  currentPeriod: string;
  periods: { period: string; kind: 'actual' | 'forecast' }[];
  byProvider: DashboardSeries[];
  byPolicy: DashboardSeries[];
  totals: { period: string; kind: 'actual' | 'forecast'; known: number; total: number | null }[];
  topKeys: DashboardKey[];
  findings: CostFinding[];
  rotation: DashboardRotationRow[];
  overdue: { ref: string; name?: string; policy: string; ageDays: number; dueAt: string }[];
  summary: {
    keys: number;
    monthKnown: number;
    monthTotal: number | null;
    unknownParts: number;
    forecastKnown: number;
    findings: number;
    monthlySavings: number;
    overdue: number;
  };
  assumptions: string[];
}

const NO_POLICY = '(no policy)';
/** HSM pools with no key in the month: their cost belongs to no key, provider series or policy. */
const UNALLOCATED = '(HSM pools without keys)';

function addTo(
  map: Map<string, DashboardSeries>,
  name: string,
  n: number,
  i: number,
  value: number,
  partial: boolean,
) {
  let s = map.get(name);
  if (!s) {
    s = { name, values: new Array(n).fill(0), partial: new Array(n).fill(false) };
    map.set(name, s);
  }
  s.values[i]! += value;
  if (partial) s.partial[i] = true;
}

const ordered = (m: Map<string, DashboardSeries>) =>
  [...m.values()].sort((a, b) => b.values.reduce((x, y) => x + y, 0) - a.values.reduce((x, y) => x + y, 0));

export function buildCostDashboard(input: CostDashboardInput): CostDashboard {
  const history = input.historyMonths ?? 6;
  const ahead = input.forecastMonths ?? 6;
  if (!Number.isInteger(history) || history < 1 || history > 36)
    throw new ValidationError(`history months must be 1 to 36, got ${history}`);
  if (!Number.isInteger(ahead) || ahead < 0 || ahead > 36)
    throw new ValidationError(`forecast months must be 0 to 36, got ${ahead}`);
  const current = periodOf(input.now);
  const pastPeriods = Array.from({ length: history }, (_, i) => nextPeriod(current, i - history + 1));
  const futurePeriods = Array.from({ length: ahead }, (_, i) => nextPeriod(current, i + 1));
  const periods = [
    ...pastPeriods.map((period) => ({ period, kind: 'actual' as const })),
    ...futurePeriods.map((period) => ({ period, kind: 'forecast' as const })),
  ];
  const n = periods.length;
  const usage = input.usage ?? [];
  const keys = input.inventory.keys;
  const policyName = new Map(
    keys.map((k) => [k.ref, policyForCostKey(input.policies, k)?.name ?? NO_POLICY]),
  );
  const byProvider = new Map<string, DashboardSeries>();
  const byPolicy = new Map<string, DashboardSeries>();
  const totals: CostDashboard['totals'] = [];

  let currentReport: ReturnType<typeof computeCosts> | undefined;
  pastPeriods.forEach((period, i) => {
    const r = computeCosts(input.inventory, usage, input.catalog, period);
    if (period === current) currentReport = r;
    for (const kc of r.keys) {
      addTo(byProvider, kc.provider, n, i, kc.knownTotal, kc.unknownParts > 0);
      addTo(byPolicy, policyName.get(kc.ref)!, n, i, kc.knownTotal, kc.unknownParts > 0);
    }
    const unallocated = r.pools.reduce((s, p) => s + (p.unallocated ?? 0), 0);
    if (unallocated > 0) {
      addTo(byProvider, UNALLOCATED, n, i, unallocated, false);
      addTo(byPolicy, UNALLOCATED, n, i, unallocated, false);
    }
    totals.push({ period, kind: 'actual', known: r.knownTotal, total: r.total });
  });
  let forecastKnown = 0;
  let assumptions: string[] = [];
  if (ahead > 0) {
    const proj = projectCosts({
      keys,
      ...(input.inventory.pools ? { pools: input.inventory.pools } : {}),
      usage,
      policies: input.policies,
      catalog: input.catalog,
      from: futurePeriods[0]!,
      months: ahead,
      now: input.now,
    });
    assumptions = proj.assumptions;
    for (const k of proj.keys) {
      k.current.months.forEach((m, j) => {
        const i = history + j;
        addTo(byProvider, k.provider, n, i, m.knownTotal, m.total === null);
        addTo(byPolicy, policyName.get(k.ref)!, n, i, m.knownTotal, m.total === null);
      });
    }
    for (const m of proj.monthly) {
      totals.push({ period: m.period, kind: 'forecast', known: m.currentKnown, total: m.current });
    }
    forecastKnown = proj.total.currentKnown;
  }
  const report = currentReport!;
  const findings = costFindings({
    keys: [...keys],
    costs: report.keys,
    now: input.now,
    ...(usage.length ? { usage: [...usage] } : {}),
    ...(input.census ? { census: input.census } : {}),
    policies: [...input.policies],
    catalog: input.catalog,
  });
  const topKeys: DashboardKey[] = [...report.keys]
    .sort((a, b) => b.knownTotal - a.knownTotal || a.ref.localeCompare(b.ref))
    .slice(0, input.topKeys ?? 10)
    .map((kc) => {
      const byPart: Partial<Record<PartKind, number>> = {};
      for (const p of kc.parts) byPart[p.kind] = (byPart[p.kind] ?? 0) + (p.cost ?? 0);
      const key = keys.find((k) => k.ref === kc.ref);
      return {
        ref: kc.ref,
        ...(key?.name ? { name: key.name } : {}),
        provider: kc.provider,
        policy: policyName.get(kc.ref)!,
        total: kc.total,
        known: kc.knownTotal,
        byPart,
        billableVersions: kc.billableVersions,
      };
    });
  const rotationRows = new Map<string, DashboardRotationRow>();
  const overdue: CostDashboard['overdue'] = [];
  for (const k of keys) {
    if (Date.parse(k.createdAt) > Date.parse(input.now)) continue;
    if (k.deletedAt && Date.parse(k.deletedAt) <= Date.parse(input.now)) continue;
    const policy = policyForCostKey(input.policies, k);
    const r = keyRotation(k, policy, input.now);
    const name = policy?.name ?? NO_POLICY;
    const row = rotationRows.get(name) ?? {
      policy: name,
      counts: { ok: 0, overdue: 0, no_rotation_rule: 0, unmanaged: 0 },
    };
    row.counts[r.status] += 1;
    rotationRows.set(name, row);
    if (r.status === 'overdue') {
      overdue.push({
        ref: k.ref,
        ...(k.name ? { name: k.name } : {}),
        policy: name,
        ageDays: r.ageDays,
        dueAt: r.dueAt!,
      });
    }
  }
  overdue.sort((a, b) => b.ageDays - a.ageDays);
  const rotation = [...rotationRows.values()].sort((a, b) =>
    a.policy === NO_POLICY ? 1 : b.policy === NO_POLICY ? -1 : a.policy.localeCompare(b.policy),
  );
  return {
    title: input.title ?? 'rekey cost report',
    generatedAt: input.now,
    source: input.source,
    currency: input.catalog.currency,
    catalogVersion: input.catalog.version,
    overrideDigest: input.catalog.overrideDigest,
    currentPeriod: current,
    periods,
    byProvider: ordered(byProvider),
    byPolicy: ordered(byPolicy),
    totals,
    topKeys,
    findings,
    rotation,
    overdue,
    summary: {
      keys: keys.length,
      monthKnown: report.knownTotal,
      monthTotal: report.total,
      unknownParts: report.unknownParts,
      forecastKnown,
      findings: findings.length,
      monthlySavings: findings.reduce((s, f) => s + (f.monthlySaving ?? 0), 0),
      overdue: overdue.length,
    },
    assumptions,
  };
}
