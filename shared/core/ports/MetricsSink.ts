/**
 * Where rekey's operational and cost metrics go (CloudWatch EMF, OpenTelemetry, ...).
 * Dimensions stay low-cardinality (provider, account, region, policy, protection, store):
 * every distinct combination is a billed custom metric in most backends. Per-key identity
 * travels in `properties`, never as a dimension; a backend without properties drops it.
 */
export type MetricUnit = 'Count' | 'Count/Second' | 'Seconds' | 'Milliseconds' | 'None';

export interface MetricPoint {
  name: string;
  value: number;
  unit: MetricUnit;
  dimensions: Record<string, string>;
  properties?: Record<string, string | number>;
  /** ISO-8601; the sink's clock when absent. */
  at?: string;
}

export interface MetricsSink {
  record(points: MetricPoint[]): void;
  /** Sends what is buffered; resolves once the backend has it (or has refused it). */
  flush?(): Promise<void>;
  /** Flushes and releases the sink (timers, sockets, files). */
  close?(): Promise<void>;
}

/** The only dimension names a sink sends as dimensions; anything else is a property at most. */
export const METRIC_DIMENSIONS = [
  'provider',
  'account',
  'region',
  'policy',
  'protection',
  'store',
  'finding',
] as const;
export type MetricDimension = (typeof METRIC_DIMENSIONS)[number];

/**
 * One metric rekey emits. `kind` is how a backend with instruments (OpenTelemetry) records it:
 * a counter adds deltas, a gauge holds the latest value. Points that share a name and
 * dimensions in one `record` call (one per key for cost metrics) are combined by `aggregate`
 * where the backend cannot tell keys apart.
 */
export interface MetricDefinition {
  name: string;
  unit: MetricUnit;
  kind: 'counter' | 'gauge';
  aggregate: 'sum' | 'max';
  dimensions: readonly MetricDimension[];
  /** One point per key, with the key ref as a property. */
  perKey: boolean;
  description: string;
}

const COST_DIMS: readonly MetricDimension[] = ['provider', 'account', 'region', 'policy', 'protection'];
const REWRAP_DIMS: readonly MetricDimension[] = ['store', 'provider'];

/** Every metric rekey emits: the registry the sinks, the dashboard and docs/metrics.md follow. */
export const REKEY_METRICS: readonly MetricDefinition[] = [
  {
    name: 'rekey.rewrap.rewrapped',
    unit: 'Count',
    kind: 'counter',
    aggregate: 'sum',
    dimensions: REWRAP_DIMS,
    perKey: true,
    description: 'DEKs moved to the target version (since the previous point)',
  },
  {
    name: 'rekey.rewrap.failed',
    unit: 'Count',
    kind: 'counter',
    aggregate: 'sum',
    dimensions: REWRAP_DIMS,
    perKey: true,
    description: 'DEKs that could not be re-wrapped and stay under their old version',
  },
  {
    name: 'rekey.rewrap.retried',
    unit: 'Count',
    kind: 'counter',
    aggregate: 'sum',
    dimensions: REWRAP_DIMS,
    perKey: true,
    description: 'provider calls retried after a transient error',
  },
  {
    name: 'rekey.rewrap.throttled',
    unit: 'Count',
    kind: 'counter',
    aggregate: 'sum',
    dimensions: REWRAP_DIMS,
    perKey: true,
    description: 'provider calls refused for throttling',
  },
  {
    name: 'rekey.rewrap.rate',
    unit: 'Count/Second',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: REWRAP_DIMS,
    perKey: true,
    description: 'DEKs re-wrapped per second over the last batch',
  },
  {
    name: 'rekey.rewrap.lag',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: REWRAP_DIMS,
    perKey: true,
    description: 'DEKs of the job still under an old version',
  },
  {
    name: 'rekey.cost.monthly',
    unit: 'None',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: "cost of the month, in the catalog's currency (parts of unknown price count as zero)",
  },
  {
    name: 'rekey.cost.unpriced_parts',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'cost parts whose price is unknown (the monthly cost is then a lower bound)',
  },
  {
    name: 'rekey.keys',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'keys in the inventory',
  },
  {
    name: 'rekey.key.billable_versions',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'key versions billed at some point in the month',
  },
  {
    name: 'rekey.key.rotations',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'rotations in the month',
  },
  {
    name: 'rekey.key.requests',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'cryptographic and management requests in the month (from the usage counters)',
  },
  {
    name: 'rekey.key.primary_age_days',
    unit: 'None',
    kind: 'gauge',
    aggregate: 'max',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'days since the primary version was created (the oldest, where keys are combined)',
  },
  {
    name: 'rekey.key.rotation_overdue',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: COST_DIMS,
    perKey: true,
    description: 'keys whose primary is older than their policy allows',
  },
  {
    name: 'rekey.cost.findings',
    unit: 'Count',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: [...COST_DIMS, 'finding'],
    perKey: true,
    description: 'cost findings (idle key, surplus version, HSM not required, budget breach...)',
  },
  {
    name: 'rekey.cost.savings',
    unit: 'None',
    kind: 'gauge',
    aggregate: 'sum',
    dimensions: [...COST_DIMS, 'finding'],
    perKey: true,
    description: 'estimated monthly saving of acting on the findings',
  },
];

const BY_NAME = new Map(REKEY_METRICS.map((d) => [d.name, d]));

export function metricDefinition(name: string): MetricDefinition | undefined {
  return BY_NAME.get(name);
}

const ALLOWED = new Set<string>(METRIC_DIMENSIONS);

/**
 * Splits a point's dimensions into those a sink may send as dimensions and the rest (a key
 * ref given as a dimension by mistake, for instance), which belong in properties at most.
 */
export function lowCardinality(dimensions: Record<string, string>): {
  dimensions: Record<string, string>;
  rejected: Record<string, string>;
} {
  const keep: Record<string, string> = {};
  const rejected: Record<string, string> = {};
  for (const [k, v] of Object.entries(dimensions)) {
    if (v === '') continue;
    if (ALLOWED.has(k)) keep[k] = v;
    else rejected[k] = v;
  }
  return { dimensions: keep, rejected };
}

/** Keeps points in memory: tests, and the CLI's --json summaries. */
export class MemoryMetrics implements MetricsSink {
  readonly points: MetricPoint[] = [];
  record(points: MetricPoint[]): void {
    this.points.push(...points);
  }
  /** Sum of a counter across all points with these dimensions (a subset match). */
  total(name: string, dims: Record<string, string> = {}): number {
    return this.points
      .filter((p) => p.name === name && Object.entries(dims).every(([k, v]) => p.dimensions[k] === v))
      .reduce((a, p) => a + p.value, 0);
  }
}
