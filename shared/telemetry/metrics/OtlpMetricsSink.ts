import { type Attributes, type Counter, type Gauge, type Meter, ValueType } from '@opentelemetry/api';
import {
  AggregationTemporalityPreference,
  OTLPMetricExporter,
} from '@opentelemetry/exporter-metrics-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { ProviderError } from '../../core/errors.js';
import {
  lowCardinality,
  type MetricPoint,
  type MetricsSink,
  type MetricUnit,
  metricDefinition,
} from '../../core/ports/MetricsSink.js';

/**
 * OpenTelemetry metrics exported over OTLP/HTTP (JSON) to a collector or any OTLP endpoint
 * (Grafana Alloy, Prometheus' OTLP receiver, Datadog, Honeycomb...).
 *
 * OpenTelemetry has no per-point properties: every attribute is a dimension. So the key ref
 * and other properties are never sent, only the low-cardinality dimensions; points of one
 * `record` call that share a name and dimensions (one per key) are combined first, by the
 * metric's `aggregate` (sum, or max). Counters (`kind: counter`) add their deltas; gauges hold
 * the latest value per attribute set. Metrics rekey does not know are recorded as gauges.
 */
export interface OtlpSinkOptions {
  /** e.g. http://127.0.0.1:4318/v1/metrics. Absent: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT. */
  url?: string;
  headers?: Record<string, string>;
  /** How often buffered metrics are exported. Default 60 s. */
  exportIntervalMs?: number;
  /** Per-export timeout. Default 10 s. */
  timeoutMs?: number;
  temporality?: 'cumulative' | 'delta';
  /** Resource attributes (deployment.environment, cloud.account.id...). */
  resource?: Record<string, string>;
  serviceName?: string;
  serviceVersion?: string;
  onWarning?: (message: string) => void;
  /** Replaces the OTLP exporter (tests of this sink's own logic). */
  exporter?: PushMetricExporter;
}

/** UCUM units; annotations in braces carry no unit, so Prometheus adds no suffix for them. */
export const OTLP_UNITS: Record<MetricUnit, string> = {
  Count: '{count}',
  'Count/Second': '{count}/s',
  Seconds: 's',
  Milliseconds: 'ms',
  None: '',
};

/** Remembers the outcome of exports, so a flush can say whether the backend took the data. */
class ObservedExporter implements PushMetricExporter {
  failures: string[] = [];
  selectAggregationTemporality?: PushMetricExporter['selectAggregationTemporality'];
  selectAggregation?: PushMetricExporter['selectAggregation'];
  constructor(private readonly inner: PushMetricExporter) {
    if (inner.selectAggregationTemporality) {
      this.selectAggregationTemporality = (t) => inner.selectAggregationTemporality!(t);
    }
    if (inner.selectAggregation) this.selectAggregation = (t) => inner.selectAggregation!(t);
  }
  export(metrics: ResourceMetrics, done: Parameters<PushMetricExporter['export']>[1]): void {
    this.inner.export(metrics, (result) => {
      // ExportResultCode.SUCCESS is 0.
      if (result.code !== 0) this.failures.push(result.error?.message ?? 'export failed');
      done(result);
    });
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

export class OtlpMetricsSink implements MetricsSink {
  private readonly provider: MeterProvider;
  private readonly meter: Meter;
  private readonly exporter: ObservedExporter;
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, Gauge>();
  private readonly warned = new Set<string>();
  private readonly warnFn: (message: string) => void;
  private closed = false;

  constructor(opts: OtlpSinkOptions = {}) {
    this.warnFn = opts.onWarning ?? ((m: string) => process.stderr.write(`rekey: metrics: ${m}\n`));
    const inner =
      opts.exporter ??
      new OTLPMetricExporter({
        ...(opts.url ? { url: opts.url } : {}),
        ...(opts.headers ? { headers: opts.headers } : {}),
        timeoutMillis: opts.timeoutMs ?? 10_000,
        temporalityPreference:
          opts.temporality === 'delta'
            ? AggregationTemporalityPreference.DELTA
            : AggregationTemporalityPreference.CUMULATIVE,
      });
    this.exporter = new ObservedExporter(inner);
    const interval = opts.exportIntervalMs ?? 60_000;
    this.provider = new MeterProvider({
      resource: resourceFromAttributes({
        'service.name': opts.serviceName ?? 'rekey',
        ...(opts.serviceVersion ? { 'service.version': opts.serviceVersion } : {}),
        ...(opts.resource ?? {}),
      }),
      readers: [
        new PeriodicExportingMetricReader({
          exporter: this.exporter,
          exportIntervalMillis: interval,
          exportTimeoutMillis: Math.min(opts.timeoutMs ?? 10_000, interval),
        }),
      ],
    });
    this.meter = this.provider.getMeter('rekey', opts.serviceVersion);
  }

  private warn(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    this.warnFn(message);
  }

  record(points: MetricPoint[]): void {
    if (this.closed) {
      this.warn('points recorded after the sink was closed are dropped');
      return;
    }
    const combined = new Map<string, { point: MetricPoint; attrs: Attributes; value: number }>();
    for (const p of points) {
      if (!Number.isFinite(p.value)) {
        this.warn(`${p.name}: value ${p.value} is not a finite number; point dropped`);
        continue;
      }
      const { dimensions, rejected } = lowCardinality(p.dimensions);
      for (const name of Object.keys(rejected)) {
        this.warn(`dimension "${name}" of ${p.name} is not a low-cardinality dimension: not sent`);
      }
      const key = `${p.name}|${JSON.stringify(
        Object.keys(dimensions)
          .sort()
          .map((k) => [k, dimensions[k]]),
      )}`;
      const c = combined.get(key);
      if (!c) {
        combined.set(key, { point: p, attrs: dimensions, value: p.value });
        continue;
      }
      c.value =
        metricDefinition(p.name)?.aggregate === 'max' ? Math.max(c.value, p.value) : c.value + p.value;
    }
    for (const { point, attrs, value } of combined.values()) {
      const def = metricDefinition(point.name);
      if (def?.kind === 'counter') {
        if (value < 0) {
          this.warn(`${point.name}: a counter cannot go down (${value}); point dropped`);
          continue;
        }
        this.counter(point).add(value, attrs);
      } else {
        this.gauge(point).record(value, attrs);
      }
    }
  }

  private counter(p: MetricPoint): Counter {
    let c = this.counters.get(p.name);
    if (!c) {
      c = this.meter.createCounter(p.name, this.options(p));
      this.counters.set(p.name, c);
    }
    return c;
  }

  private gauge(p: MetricPoint): Gauge {
    let g = this.gauges.get(p.name);
    if (!g) {
      g = this.meter.createGauge(p.name, this.options(p));
      this.gauges.set(p.name, g);
    }
    return g;
  }

  private options(p: MetricPoint) {
    const def = metricDefinition(p.name);
    return {
      unit: OTLP_UNITS[p.unit],
      valueType: ValueType.DOUBLE,
      ...(def ? { description: def.description } : {}),
    };
  }

  /** Exports now; fails when the endpoint refused or could not be reached. */
  async flush(): Promise<void> {
    const before = this.exporter.failures.length;
    await this.provider.forceFlush();
    const failed = this.exporter.failures.slice(before);
    if (failed.length > 0) {
      throw new ProviderError('otlp', 'EXPORT_FAILED', `metrics export failed: ${failed.join('; ')}`, {
        retryable: true,
      });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.provider.shutdown();
    }
  }
}
