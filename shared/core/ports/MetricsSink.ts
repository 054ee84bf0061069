/**
 * Where rekey's operational and cost metrics go (CloudWatch EMF, OpenTelemetry, ...).
 * Dimensions stay low-cardinality (provider, store, policy, protection): every distinct
 * combination is a billed custom metric in most backends. Per-key identity travels in
 * `properties`, never as a dimension.
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
  flush?(): Promise<void>;
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
