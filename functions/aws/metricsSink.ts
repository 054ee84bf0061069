import { Metrics } from '@aws-lambda-powertools/metrics';
import type { MetricUnit } from '@aws-lambda-powertools/metrics/types';
import type { MetricPoint, MetricsSink } from '../../shared/core/ports/MetricsSink.js';

/**
 * The MetricsSink port as CloudWatch embedded metric format, through Powertools Metrics.
 * Points that share dimensions and properties go out as one EMF document; properties become
 * EMF metadata (searchable in the logs, not metric dimensions), so a key ref never creates a
 * custom metric of its own. Documents are written at once: a function may stop any time.
 */
export class PowertoolsMetricsSink implements MetricsSink {
  private readonly emf: Metrics;

  /** Writes through its own Metrics instance, so the handler's own metrics are not flushed early. */
  constructor(opts: { namespace: string; serviceName: string }) {
    this.emf = new Metrics(opts);
  }

  record(points: MetricPoint[]): void {
    const groups = new Map<string, MetricPoint[]>();
    for (const p of points) {
      const key = JSON.stringify([sorted(p.dimensions), sorted(p.properties ?? {})]);
      const g = groups.get(key);
      if (g) g.push(p);
      else groups.set(key, [p]);
    }
    for (const group of groups.values()) {
      const first = group[0]!;
      for (const [k, v] of Object.entries(first.dimensions)) if (v) this.emf.addDimension(k, v);
      for (const [k, v] of Object.entries(first.properties ?? {})) this.emf.addMetadata(k, String(v));
      for (const p of group) this.emf.addMetric(p.name, p.unit as MetricUnit, p.value);
      this.emf.publishStoredMetrics();
    }
  }

  async flush(): Promise<void> {}
}

function sorted(o: Record<string, string | number>): [string, string | number][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
