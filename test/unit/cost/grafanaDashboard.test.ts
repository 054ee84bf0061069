import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REKEY_METRICS } from '../../../shared/core/ports/MetricsSink.js';
import { prometheusName, prometheusNames } from '../../../shared/telemetry/metrics/prometheusNames.js';
import { ROOT } from './helpers.js';

/** infra/dashboards/rekey.json queries only metrics rekey emits, under the names Prometheus gives them. */

interface Target {
  expr?: string;
  refId: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Target[];
  panels?: Panel[];
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
}

const dashboard = JSON.parse(readFileSync(resolve(ROOT, 'infra/dashboards/rekey.json'), 'utf8')) as {
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; definition?: string }[] };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
const emitted = new Set(prometheusNames().values());
const namesIn = (expr: string) => [...expr.matchAll(/\brekey_[a-z0-9_]+\b/g)].map((m) => m[0]);

describe('Grafana dashboard', () => {
  it('every panel queries something, and every query names only metrics rekey emits', () => {
    expect(panels.length).toBeGreaterThan(10);
    for (const p of panels) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) {
        const names = namesIn(t.expr ?? '');
        expect(names.length, `${p.title} ${t.refId}`).toBeGreaterThan(0);
        for (const n of names) expect(emitted, `${p.title}: ${n}`).toContain(n);
      }
    }
    for (const v of dashboard.templating.list) {
      for (const n of namesIn(v.definition ?? '')) expect(emitted).toContain(n);
    }
  });

  it('shows every metric rekey emits somewhere', () => {
    const used = new Set(panels.flatMap((p) => (p.targets ?? []).flatMap((t) => namesIn(t.expr ?? ''))));
    for (const name of emitted) expect(used, name).toContain(name);
  });

  it('is well-formed: unique panel ids, the data source as a variable, a 24-column grid', () => {
    const ids = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    for (const p of panels) {
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '$' + '{datasource}' });
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
    }
  });
});

describe('prometheusName', () => {
  it('follows the OpenTelemetry to Prometheus naming rules', () => {
    const byName = new Map(REKEY_METRICS.map((d) => [d.name, prometheusName(d)]));
    expect(byName.get('rekey.rewrap.rewrapped')).toBe('rekey_rewrap_rewrapped_total');
    expect(byName.get('rekey.rewrap.rate')).toBe('rekey_rewrap_rate_per_second');
    expect(byName.get('rekey.rewrap.lag')).toBe('rekey_rewrap_lag');
    expect(byName.get('rekey.cost.monthly')).toBe('rekey_cost_monthly');
    expect(prometheusName({ name: 'x.wait', unit: 'Seconds', kind: 'gauge' })).toBe('x_wait_seconds');
    expect(prometheusName({ name: 'x.wait_seconds', unit: 'Seconds', kind: 'counter' })).toBe(
      'x_wait_seconds_total',
    );
    expect(new Set(byName.values()).size).toBe(REKEY_METRICS.length);
  });
});
