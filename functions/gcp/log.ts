import type { MetricPoint, MetricsSink } from '../../shared/core/ports/MetricsSink.js';

/** Cloud Logging severities (LogSeverity) the functions use. */
export type Severity = 'DEBUG' | 'INFO' | 'NOTICE' | 'WARNING' | 'ERROR';

export interface Logger {
  write(severity: Severity, message: string, fields?: Record<string, unknown>): void;
}

/**
 * Structured logs for Cloud Logging: one JSON object per line on stdout, which Cloud Run and
 * Cloud Functions turn into a LogEntry (`severity`, `message`, the rest as jsonPayload). Callers
 * log reports, ids and refs only: never key material, plaintext or connection strings.
 */
export function logger(
  fn: string,
  out: (line: string) => void = (l) => void process.stdout.write(`${l}\n`),
): Logger {
  return {
    write(severity, message, fields = {}) {
      out(
        JSON.stringify({
          severity,
          message,
          ...fields,
          'logging.googleapis.com/labels': { app: 'rekey', function: fn },
        }),
      );
    },
  };
}

/** An error as log fields: its class, code and message (and the stack of unexpected ones). */
export function errorFields(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { error: { message: String(e) } };
  const code = (e as { code?: unknown }).code;
  const expected = typeof code === 'string'; // a RekeyError: its message says it all
  return {
    error: { name: e.name, ...(code !== undefined ? { code } : {}), message: e.message },
    ...(expected ? {} : { stack_trace: e.stack }),
  };
}

/**
 * Metrics as structured log entries (`jsonPayload.metric`), which log-based metrics in Cloud
 * Monitoring count and sum (infra/gcp/main.tf defines them). Dimensions become metric labels,
 * so they stay low-cardinality; the key ref travels in `properties`, outside the labels.
 * Counters at zero are left out: they add nothing to a sum.
 */
export class LogMetricsSink implements MetricsSink {
  constructor(
    private readonly log: Logger,
    private readonly dimensions: Record<string, string> = {},
  ) {}

  record(points: MetricPoint[]): void {
    for (const p of points) {
      if (p.unit === 'Count' && p.value === 0) continue;
      this.log.write('INFO', `metric ${p.name}`, {
        metric: {
          name: p.name,
          value: p.value,
          unit: p.unit,
          dimensions: { ...this.dimensions, ...p.dimensions },
        },
        ...(p.properties ? { properties: p.properties } : {}),
        ...(p.at ? { timestamp: p.at } : {}),
      });
    }
  }
}
