import { type MetricDefinition, REKEY_METRICS } from '../../core/ports/MetricsSink.js';
import { OTLP_UNITS } from './OtlpMetricsSink.js';

/**
 * The names rekey's metrics get in Prometheus (and Grafana Mimir, Amazon Managed Prometheus...)
 * after travelling over OTLP, following OpenTelemetry's Prometheus compatibility rules:
 * characters other than letters, digits, `_` and `:` become `_`; a unit is appended (braced
 * annotations carry none, `s` is `seconds`, `X/s` is `..._per_second`); counters end in
 * `_total`. The dashboard in infra/dashboards queries these names.
 */
const UCUM_WORDS: Record<string, string> = { s: 'seconds', ms: 'milliseconds', min: 'minutes', h: 'hours' };
const PER_WORDS: Record<string, string> = { s: 'second', ms: 'millisecond', min: 'minute', h: 'hour' };

function unitSuffix(unit: string): string {
  if (!unit) return '';
  const [main = '', per] = unit.split('/');
  const words: string[] = [];
  if (main && !main.startsWith('{')) words.push(UCUM_WORDS[main] ?? main);
  if (per && !per.startsWith('{')) words.push('per', PER_WORDS[per] ?? per);
  return words.join('_');
}

export function prometheusName(def: Pick<MetricDefinition, 'name' | 'unit' | 'kind'>): string {
  let name = def.name
    .replace(/[^A-Za-z0-9_:]/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
  const suffix = unitSuffix(OTLP_UNITS[def.unit]);
  if (suffix && !name.endsWith(`_${suffix}`)) name += `_${suffix}`;
  if (def.kind === 'counter' && !name.endsWith('_total')) name += '_total';
  return name;
}

/** Every Prometheus name rekey's metrics can have, by rekey metric name. */
export function prometheusNames(): Map<string, string> {
  return new Map(REKEY_METRICS.map((d) => [d.name, prometheusName(d)]));
}
