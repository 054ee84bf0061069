import { closeSync, openSync, writeSync } from 'node:fs';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import {
  lowCardinality,
  type MetricPoint,
  type MetricsSink,
  metricDefinition,
  type MetricUnit as RekeyUnit,
} from '../../core/ports/MetricsSink.js';

/**
 * CloudWatch embedded metric format (EMF) through Powertools for AWS Lambda: one JSON document
 * per line, which CloudWatch Logs turns into metrics (in Lambda from stdout; elsewhere through
 * the CloudWatch agent tailing a file). Powertools builds and checks each document; this sink
 * decides what goes in it:
 *  - points are grouped by dimensions, properties and timestamp: one document per group;
 *  - dimensions are only the low-cardinality ones (ports/MetricsSink.ts); anything else a point
 *    carries as a dimension is written as a property instead, so a key ref never becomes a
 *    billed custom metric;
 *  - properties (the key ref, the period...) are EMF metadata: searchable in Logs Insights,
 *    not dimensions;
 *  - `rollups` add dimension sets (e.g. `[['provider']]`) so CloudWatch also aggregates by fewer
 *    dimensions; every set includes `service`.
 * A document holds at most 100 metrics and 99 values per metric (EMF's limits, and below
 * Powertools' own flush thresholds).
 */
export interface EmfSinkOptions {
  namespace: string;
  /** The `service` dimension. Default `rekey`. */
  service?: string;
  /** Extra dimension sets, each a subset of the points' dimension names. */
  rollups?: readonly (readonly string[])[];
  /**
   * One document per key, with its ref as metadata (default). false: no properties, and points
   * sharing dimensions are combined (summed, or the maximum for metrics that say so).
   */
  perKey?: boolean;
  /** Where each document goes: stdout (default), stderr, or a function (tests, files). */
  output?: 'stdout' | 'stderr' | { file: string } | ((line: string) => void);
  onWarning?: (message: string) => void;
}

const UNITS: Record<RekeyUnit, (typeof MetricUnit)[keyof typeof MetricUnit]> = {
  Count: MetricUnit.Count,
  'Count/Second': MetricUnit.CountPerSecond,
  Seconds: MetricUnit.Seconds,
  Milliseconds: MetricUnit.Milliseconds,
  None: MetricUnit.NoUnit,
};

const MAX_METRICS = 100;
const MAX_VALUES = 99;

function canonical(o: Record<string, unknown>): string {
  return JSON.stringify(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k]]),
  );
}

export class EmfMetricsSink implements MetricsSink {
  private readonly metrics: Metrics;
  private readonly write: (line: string) => void;
  private readonly rollups: readonly (readonly string[])[];
  private readonly perKey: boolean;
  private readonly warned = new Set<string>();
  private readonly warn: (message: string) => void;
  private fd: number | undefined;

  constructor(opts: EmfSinkOptions) {
    if (!opts.namespace.trim()) throw new RangeError('EMF namespace must not be empty');
    const warn = opts.onWarning ?? ((m: string) => process.stderr.write(`rekey: metrics: ${m}\n`));
    this.warn = (m) => {
      if (this.warned.has(m)) return;
      this.warned.add(m);
      warn(m);
    };
    const logger = {
      debug: () => {},
      info: () => {},
      warn: (...args: unknown[]) => this.warn(args.map(String).join(' ')),
      error: (...args: unknown[]) => this.warn(args.map(String).join(' ')),
    };
    this.metrics = new Metrics({ namespace: opts.namespace, serviceName: opts.service ?? 'rekey', logger });
    this.rollups = opts.rollups ?? [];
    this.perKey = opts.perKey ?? true;
    const out = opts.output ?? 'stdout';
    this.write =
      typeof out === 'function'
        ? out
        : out === 'stdout'
          ? (line) => process.stdout.write(`${line}\n`)
          : out === 'stderr'
            ? (line) => process.stderr.write(`${line}\n`)
            : (line) => {
                // Opened once, in append mode: every document is one write of a whole line.
                this.fd ??= openSync(out.file, 'a', 0o644);
                writeSync(this.fd, `${line}\n`);
              };
  }

  record(points: MetricPoint[]): void {
    type Group = {
      dims: Record<string, string>;
      props: Record<string, string | number>;
      at: number;
      values: Map<string, { unit: RekeyUnit; values: number[] }>;
    };
    const groups = new Map<string, Group>();
    const now = Date.now();
    for (const p of points) {
      if (!Number.isFinite(p.value)) {
        this.warn(`${p.name}: value ${p.value} is not a finite number; point dropped`);
        continue;
      }
      const { dimensions, rejected } = lowCardinality(p.dimensions);
      for (const name of Object.keys(rejected)) {
        this.warn(
          `dimension "${name}" of ${p.name} is not a low-cardinality dimension: written as a property`,
        );
      }
      const props = this.perKey ? { ...rejected, ...(p.properties ?? {}) } : {};
      const at = p.at ? Date.parse(p.at) : now;
      const key = `${canonical(dimensions)}|${canonical(props)}|${at}`;
      let g = groups.get(key);
      if (!g) {
        g = { dims: dimensions, props, at: Number.isNaN(at) ? now : at, values: new Map() };
        groups.set(key, g);
      }
      const m = g.values.get(p.name);
      if (m) {
        if (m.unit !== p.unit) {
          this.warn(`${p.name}: unit ${p.unit} differs from ${m.unit} in the same batch; point dropped`);
          continue;
        }
        if (this.perKey) m.values.push(p.value);
        else if (metricDefinition(p.name)?.aggregate === 'max') m.values[0] = Math.max(m.values[0]!, p.value);
        else m.values[0]! += p.value;
      } else g.values.set(p.name, { unit: p.unit, values: [p.value] });
    }
    for (const g of groups.values()) this.emit(g.dims, g.props, g.at, g.values);
  }

  private emit(
    dims: Record<string, string>,
    props: Record<string, string | number>,
    at: number,
    values: Map<string, { unit: RekeyUnit; values: number[] }>,
  ): void {
    // Split into documents within EMF's limits.
    const docs: [string, RekeyUnit, number[]][][] = [];
    let doc: [string, RekeyUnit, number[]][] = [];
    for (const [name, m] of values) {
      for (let i = 0; i < m.values.length; i += MAX_VALUES) {
        if (doc.length === MAX_METRICS || doc.some(([n]) => n === name)) {
          docs.push(doc);
          doc = [];
        }
        doc.push([name, m.unit, m.values.slice(i, i + MAX_VALUES)]);
      }
    }
    if (doc.length) docs.push(doc);
    const m = this.metrics;
    for (const d of docs) {
      try {
        m.setTimestamp(at);
        m.addDimensions(dims);
        for (const set of this.rollups) {
          if (set.every((n) => n in dims)) m.addDimensions(Object.fromEntries(set.map((n) => [n, dims[n]!])));
        }
        for (const [k, v] of Object.entries(props)) m.addMetadata(k, String(v));
        for (const [name, unit, vs] of d) for (const v of vs) m.addMetric(name, UNITS[unit], v);
        this.write(JSON.stringify(m.serializeMetrics()));
      } finally {
        m.clearMetrics();
        m.clearDimensions();
        m.clearMetadata();
      }
    }
  }

  /** Documents are written as they are recorded: nothing is buffered. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}
