import { AsyncLocalStorage } from 'node:async_hooks';
import type { InvocationContext } from '@azure/functions';
import type { MetricPoint, MetricsSink } from '../../shared/core/ports/MetricsSink.js';

/**
 * Structured logs: one JSON object per line, through the invocation's logger so Application
 * Insights ties each line to its invocation (`traces`, with the JSON in `message`). Lines carry
 * refs, ids and counts, never key material.
 */
const current = new AsyncLocalStorage<InvocationContext>();

export function withInvocation<T>(context: InvocationContext, fn: () => Promise<T>): Promise<T> {
  return current.run(context, fn);
}

type Level = 'info' | 'warn' | 'error';

export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ level, msg, ...fields });
  const ctx = current.getStore();
  if (ctx) ctx[level](line);
  else if (level === 'error') console.error(line);
  else console.log(line);
}

/** Azure Monitor takes at most 10 dimensions per custom metric. */
export const MAX_DIMENSIONS = 10;

/**
 * Metrics as structured log lines (`{"metric": name, ...}`), one per point: Application Insights
 * keeps them with the invocation, and a log-based metric or a KQL query charts them. Dimensions
 * stay low-cardinality; the key ref travels in `properties`.
 */
export class LogMetricsSink implements MetricsSink {
  record(points: MetricPoint[]): void {
    for (const p of points) {
      const entries = Object.entries(p.dimensions).sort(([a], [b]) => a.localeCompare(b));
      const dimensions = Object.fromEntries(entries.slice(0, MAX_DIMENSIONS));
      const overflow = Object.fromEntries(entries.slice(MAX_DIMENSIONS));
      const properties = { ...overflow, ...(p.properties ?? {}) };
      log('info', 'metric', {
        metric: p.name,
        value: p.value,
        unit: p.unit,
        dimensions,
        ...(Object.keys(properties).length ? { properties } : {}),
        ...(p.at ? { at: p.at } : {}),
      });
    }
  }
}
