import type { Policy } from '../policy/types.js';
import type { MetricPoint } from '../ports/MetricsSink.js';
import type { CostFinding } from './findings.js';
import { policyForCostKey } from './fromInventory.js';
import { keyRotation } from './rotation.js';
import type { CostKey, CostReport, UsageCounter } from './types.js';

/**
 * Cost and usage as metric points (names in REKEY_METRICS, ports/MetricsSink.ts). One point per
 * key and metric, with low-cardinality dimensions (provider, account, region, policy,
 * protection) and the key ref as a property: a sink that has properties (EMF) keeps it, one that
 * has none (OpenTelemetry) combines the keys that share dimensions.
 */
export interface CostMetricsInput {
  report: CostReport;
  keys: readonly CostKey[];
  policies: readonly Policy[];
  findings?: readonly CostFinding[];
  /** The usage counters the report was priced with (for request counts). */
  usage?: readonly UsageCounter[];
  /** When the points are taken (and rotation ages measured). */
  now: string;
}

/** A policy name is low-cardinality by construction; `none` stands for keys no policy governs. */
export const NO_POLICY = 'none';

export function costMetricPoints(input: CostMetricsInput): MetricPoint[] {
  const { report, now } = input;
  const out: MetricPoint[] = [];
  const byRef = new Map(input.keys.map((k) => [k.ref, k]));
  const dimsOf = new Map<string, Record<string, string>>();
  const requestsByRef = new Map<string, number>();
  for (const u of input.usage ?? []) {
    if (u.period === report.period) requestsByRef.set(u.ref, (requestsByRef.get(u.ref) ?? 0) + u.count);
  }
  for (const kc of report.keys) {
    const key = byRef.get(kc.ref);
    if (!key) continue;
    const policy = policyForCostKey(input.policies, key);
    const dims: Record<string, string> = {
      provider: kc.provider,
      account: kc.account,
      ...(kc.region ? { region: kc.region } : {}),
      policy: policy?.name ?? NO_POLICY,
      protection: kc.protection,
    };
    dimsOf.set(kc.ref, dims);
    const properties: Record<string, string | number> = {
      keyRef: kc.ref,
      ...(key.name ? { keyName: key.name } : {}),
      period: kc.period,
      currency: kc.currency,
      catalogVersion: kc.catalogVersion,
    };
    const point = (name: string, value: number, unit: MetricPoint['unit']): MetricPoint => ({
      name,
      value,
      unit,
      dimensions: dims,
      properties,
      at: now,
    });
    const requests = requestsByRef.get(kc.ref) ?? 0;
    const rotation = keyRotation(key, policy, now);
    out.push(
      point('rekey.cost.monthly', kc.knownTotal, 'None'),
      point('rekey.cost.unpriced_parts', kc.unknownParts, 'Count'),
      point('rekey.keys', 1, 'Count'),
      point('rekey.key.billable_versions', kc.billableVersions, 'Count'),
      point('rekey.key.rotations', kc.rotationsInPeriod, 'Count'),
      point('rekey.key.requests', Math.round(requests), 'Count'),
      point('rekey.key.primary_age_days', rotation.ageDays, 'None'),
      point('rekey.key.rotation_overdue', rotation.status === 'overdue' ? 1 : 0, 'Count'),
    );
  }
  for (const f of input.findings ?? []) {
    const keyDims = f.keyRef ? dimsOf.get(f.keyRef) : undefined;
    const dimensions = {
      ...(keyDims ?? (f.account ? { account: f.account } : {})),
      ...(f.policy && !keyDims ? { policy: f.policy } : {}),
      finding: f.kind,
    };
    const properties: Record<string, string | number> = {
      ...(f.keyRef ? { keyRef: f.keyRef } : {}),
      ...(f.version !== undefined ? { version: f.version } : {}),
      message: f.message,
      currency: f.currency,
      period: report.period,
    };
    out.push(
      { name: 'rekey.cost.findings', value: 1, unit: 'Count', dimensions, properties, at: now },
      {
        name: 'rekey.cost.savings',
        value: f.monthlySaving ?? 0,
        unit: 'None',
        dimensions,
        properties,
        at: now,
      },
    );
  }
  return out;
}
