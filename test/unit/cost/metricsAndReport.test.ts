import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCostDashboard } from '../../../shared/core/cost/dashboard.js';
import { costFindings } from '../../../shared/core/cost/findings.js';
import { COST_REPORT_CSP, costReportHtml } from '../../../shared/core/cost/html.js';
import { costMetricPoints } from '../../../shared/core/cost/metrics.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import { keyRotation } from '../../../shared/core/cost/rotation.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { METRIC_DIMENSIONS, metricDefinition } from '../../../shared/core/ports/MetricsSink.js';
import { parseInventoryFile, parseUsageFile } from '../../../shared/cost/estimate.js';
import { catalog, ROOT } from './helpers.js';

const FX = resolve(ROOT, 'test/fixtures/cost');
const inventory = parseInventoryFile(readFileSync(resolve(FX, 'inventory.json'), 'utf8'));
const usage = parseUsageFile(readFileSync(resolve(FX, 'usage.json'), 'utf8'));
const cat = catalog();
const config = loadConfig(
  `version: 1
providers:
  aws-prod: { type: aws-kms, regions: [us-east-1] }
policies:
  - name: pci
    match: { tags: { data-class: pci } }
    rotate: { every: P90D }
  - name: payments-gcp
    match: { name: [orders-kek] }
    rotate: { every: P30D }
    retire: { destroyAfter: P30D }
`,
  'rekey.yaml',
);
const NOW = '2026-11-28T12:00:00.000Z';

describe('cost metric points', () => {
  const report = computeCosts(inventory, usage, cat, '2026-11');
  const findings = costFindings({
    keys: inventory.keys,
    costs: report.keys,
    now: NOW,
    usage,
    policies: config.policies,
    catalog: cat,
  });
  const points = costMetricPoints({
    report,
    keys: inventory.keys,
    policies: config.policies,
    findings,
    usage,
    now: NOW,
  });

  it('every point is a registered metric with low-cardinality dimensions; the key ref is a property', () => {
    expect(points.length).toBeGreaterThan(inventory.keys.length * 8 - 1);
    for (const p of points) {
      const def = metricDefinition(p.name);
      expect(def, p.name).toBeDefined();
      expect(p.unit).toBe(def!.unit);
      for (const d of Object.keys(p.dimensions)) {
        expect(METRIC_DIMENSIONS as readonly string[]).toContain(d);
        expect(def!.dimensions as readonly string[]).toContain(d);
      }
      for (const v of Object.values(p.dimensions))
        expect(v).not.toMatch(/^(aws-kms|gcp-kms|azure-kv|pkcs11):/);
    }
    const monthly = points.filter((p) => p.name === 'rekey.cost.monthly');
    expect(monthly).toHaveLength(inventory.keys.length);
    expect(monthly.map((p) => p.properties?.keyRef).sort()).toEqual(inventory.keys.map((k) => k.ref).sort());
    // The points add up to the report.
    const sum = monthly.reduce((s, p) => s + p.value, 0);
    const unallocated = report.pools.reduce((s, p) => s + (p.unallocated ?? 0), 0);
    expect(sum + unallocated).toBeCloseTo(report.knownTotal, 9);
  });

  it('dimensions name the policy, requests come from the counters, rotation overdue is 0 or 1', () => {
    const orders = points.filter((p) => p.properties?.keyName === 'orders');
    expect(orders[0]!.dimensions).toEqual({
      provider: 'aws-kms',
      account: '111122223333',
      region: 'us-east-1',
      policy: 'pci',
      protection: 'hsm',
    });
    expect(orders.find((p) => p.name === 'rekey.key.requests')!.value).toBe(1_250_000 + 120);
    // orders' primary (m3) is from 2026-11-16: 12 days old, P90D not due.
    expect(orders.find((p) => p.name === 'rekey.key.primary_age_days')!.value).toBe(12);
    expect(orders.find((p) => p.name === 'rekey.key.rotation_overdue')!.value).toBe(0);
    const kek = points.filter((p) => p.properties?.keyName === 'orders-kek');
    // v3 from 2026-07-01 under a 30-day rule: overdue.
    expect(kek.find((p) => p.name === 'rekey.key.rotation_overdue')!.value).toBe(1);
    const f = points.filter((p) => p.name === 'rekey.cost.findings');
    expect(f).toHaveLength(findings.length);
    for (const p of f) expect(p.dimensions.finding).toMatch(/^[a-z_]+$/);
  });
});

describe('keyRotation', () => {
  it('the primary is the newest version not destroyed; age against the policy period', () => {
    const kek = inventory.keys.find((k) => k.name === 'orders-kek')!;
    const policy = config.policies.find((p) => p.name === 'payments-gcp');
    const r = keyRotation(kek, policy, NOW);
    expect(r).toEqual({
      status: 'overdue',
      ageDays: 150,
      primaryCreatedAt: '2026-07-01T00:00:00Z',
      dueAt: '2026-07-31T00:00:00.000Z',
    });
    expect(keyRotation(kek, undefined, NOW).status).toBe('unmanaged');
    expect(keyRotation(kek, { ...policy!, rotate: undefined }, NOW).status).toBe('no_rotation_rule');
  });
});

describe('cost report page', () => {
  const d = buildCostDashboard({
    inventory,
    usage,
    policies: config.policies,
    catalog: cat,
    now: NOW,
    source: 'fixture',
  });

  it('past months match the model month by month; the series add up to the totals', () => {
    expect(d.periods.map((p) => p.period)).toEqual([
      '2026-06',
      '2026-07',
      '2026-08',
      '2026-09',
      '2026-10',
      '2026-11',
      '2026-12',
      '2027-01',
      '2027-02',
      '2027-03',
      '2027-04',
      '2027-05',
    ]);
    d.periods.forEach((p, i) => {
      const byProvider = d.byProvider.reduce((s, x) => s + x.values[i]!, 0);
      const byPolicy = d.byPolicy.reduce((s, x) => s + x.values[i]!, 0);
      expect(byProvider).toBeCloseTo(d.totals[i]!.known, 9);
      expect(byPolicy).toBeCloseTo(d.totals[i]!.known, 9);
      if (p.kind === 'actual') {
        expect(d.totals[i]!.known).toBeCloseTo(computeCosts(inventory, usage, cat, p.period).knownTotal, 9);
      }
    });
    expect(d.byPolicy.map((s) => s.name).sort()).toEqual(['(no policy)', 'payments-gcp', 'pci']);
    expect(d.topKeys[0]!.known).toBeGreaterThanOrEqual(d.topKeys[1]!.known);
    expect(d.rotation.find((r) => r.policy === 'payments-gcp')!.counts.overdue).toBe(1);
    expect(d.overdue.map((o) => o.name)).toEqual(['orders-kek']);
  });

  it('is one self-contained page: CSP with the script hash, no external reference, escaped values', () => {
    const evil = {
      ...inventory,
      keys: inventory.keys.map((k, i) => (i === 0 ? { ...k, name: '<img src=x onerror=alert(1)>' } : k)),
    };
    const html = costReportHtml(
      buildCostDashboard({
        inventory: evil,
        usage,
        policies: [],
        catalog: cat,
        now: NOW,
        source: '<b>src</b>',
      }),
    );
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<b>src</b>');
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?(?:https?:|\/\/)/i);
    expect(html).not.toMatch(/url\(/i);
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
    const hash = createHash('sha256').update(script).digest('base64');
    expect(COST_REPORT_CSP).toContain(`script-src 'sha256-${hash}'`);
    expect(COST_REPORT_CSP).toContain("default-src 'none'");
    expect(html).toContain(`content="${COST_REPORT_CSP}"`);
  });

  it('chart elements carry the figures they draw', () => {
    const html = costReportHtml(d);
    for (const [chart, series] of [
      ['chart-provider', d.byProvider],
      ['chart-policy', d.byPolicy],
    ] as const) {
      const svg = new RegExp(`<svg id="${chart}"[\\s\\S]*?</svg>`).exec(html)![0];
      const bars = [
        ...svg.matchAll(
          /<rect class="bar" data-series="([^"]+)" data-period="([^"]+)" data-kind="(\w+)" data-value="([^"]+)"/g,
        ),
      ];
      d.periods.forEach((p, i) => {
        const here = bars.filter((b) => b[2] === p.period);
        expect(here.every((b) => b[3] === p.kind)).toBe(true);
        const sum = here.reduce((s, b) => s + Number(b[4]), 0);
        expect(sum).toBeCloseTo(d.totals[i]!.known, 4);
        for (const b of here) {
          const s = series.find((x) => x.name === b[1]);
          expect(Number(b[4])).toBeCloseTo(s!.values[i]!, 5);
        }
      });
    }
  });
});
