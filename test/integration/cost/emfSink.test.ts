import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { MetricPoint } from '../../../shared/core/ports/MetricsSink.js';
import { EmfMetricsSink } from '../../../shared/telemetry/metrics/EmfMetricsSink.js';

/**
 * The EMF sink, through the real Powertools Metrics: every document it writes is parsed and
 * checked against the CloudWatch embedded metric format specification.
 */

const UNITS = new Set([
  'Seconds',
  'Microseconds',
  'Milliseconds',
  'Bytes',
  'Kilobytes',
  'Megabytes',
  'Gigabytes',
  'Terabytes',
  'Bits',
  'Kilobits',
  'Megabits',
  'Gigabits',
  'Terabits',
  'Percent',
  'Count',
  'Bytes/Second',
  'Kilobytes/Second',
  'Megabytes/Second',
  'Gigabytes/Second',
  'Terabytes/Second',
  'Bits/Second',
  'Kilobits/Second',
  'Megabits/Second',
  'Gigabits/Second',
  'Terabits/Second',
  'Count/Second',
  'None',
]);

type Doc = Record<string, unknown> & {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit?: string }[];
    }[];
  };
};

/** The EMF specification's rules for one document; returns the problems found. */
function emfProblems(doc: Doc): string[] {
  const out: string[] = [];
  const aws = doc._aws;
  if (!aws || typeof aws !== 'object') return ['no _aws member'];
  if (!Number.isInteger(aws.Timestamp) || aws.Timestamp <= 0)
    out.push('_aws.Timestamp is not epoch milliseconds');
  if (!Array.isArray(aws.CloudWatchMetrics) || aws.CloudWatchMetrics.length === 0)
    out.push('_aws.CloudWatchMetrics is not a non-empty array');
  for (const d of aws.CloudWatchMetrics ?? []) {
    if (typeof d.Namespace !== 'string' || d.Namespace.length < 1 || d.Namespace.length > 255)
      out.push('Namespace must be 1-255 characters');
    if (!Array.isArray(d.Dimensions)) out.push('Dimensions must be an array of dimension sets');
    for (const set of d.Dimensions ?? []) {
      if (!Array.isArray(set)) out.push('a dimension set must be an array');
      if (set.length > 30) out.push('a dimension set holds at most 30 dimensions');
      for (const name of set)
        if (typeof doc[name] !== 'string') out.push(`dimension ${name} is not a string member`);
    }
    if (!Array.isArray(d.Metrics) || d.Metrics.length > 100)
      out.push('Metrics must hold at most 100 definitions');
    for (const m of d.Metrics ?? []) {
      if (typeof m.Name !== 'string' || m.Name.length < 1 || m.Name.length > 255) out.push('bad metric Name');
      if (m.Unit !== undefined && !UNITS.has(m.Unit)) out.push(`unit ${m.Unit} is not a CloudWatch unit`);
      const v = doc[m.Name];
      const values = Array.isArray(v) ? v : [v];
      if (values.length > 100) out.push(`${m.Name} has more than 100 values`);
      if (!values.every((x) => typeof x === 'number' && Number.isFinite(x)))
        out.push(`${m.Name} is not numeric`);
    }
  }
  return out;
}

const KEY = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const KEY2 = 'gcp-kms://projects/acme/locations/europe-west1/keyRings/r/cryptoKeys/k';
const AT = new Date(Date.now() - 60_000).toISOString();

function costPoints(ref: string, policy: string, cost: number, age: number): MetricPoint[] {
  const dimensions = {
    provider: 'aws-kms',
    account: '111122223333',
    region: 'us-east-1',
    policy,
    protection: 'hsm',
  };
  const properties = { keyRef: ref, period: '2026-11' };
  return [
    { name: 'rekey.cost.monthly', value: cost, unit: 'None', dimensions, properties, at: AT },
    { name: 'rekey.keys', value: 1, unit: 'Count', dimensions, properties, at: AT },
    { name: 'rekey.key.primary_age_days', value: age, unit: 'None', dimensions, properties, at: AT },
  ];
}

function sink(opts: Partial<ConstructorParameters<typeof EmfMetricsSink>[0]> = {}) {
  const lines: string[] = [];
  const warnings: string[] = [];
  const s = new EmfMetricsSink({
    namespace: 'rekey-test',
    output: (l) => lines.push(l),
    onWarning: (w) => warnings.push(w),
    ...opts,
  });
  const docs = () => lines.map((l) => JSON.parse(l) as Doc);
  return { s, lines, warnings, docs };
}

const dir = mkdtempSync(join(tmpdir(), 'rekey-emf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('EmfMetricsSink', () => {
  it('one document per key: valid EMF, low-cardinality dimensions, the key ref as metadata', () => {
    const { s, docs } = sink();
    s.record([...costPoints(KEY, 'pci', 3.25, 12), ...costPoints(KEY2, 'pci', 1.5, 40)]);
    const out = docs();
    expect(out).toHaveLength(2);
    for (const d of out) {
      expect(emfProblems(d)).toEqual([]);
      const dir0 = d._aws.CloudWatchMetrics[0]!;
      expect(dir0.Namespace).toBe('rekey-test');
      expect(dir0.Dimensions).toEqual([['service', 'provider', 'account', 'region', 'policy', 'protection']]);
      expect(dir0.Metrics.map((m) => m.Name).sort()).toEqual([
        'rekey.cost.monthly',
        'rekey.key.primary_age_days',
        'rekey.keys',
      ]);
      expect(dir0.Metrics.find((m) => m.Name === 'rekey.keys')!.Unit).toBe('Count');
      expect(d._aws.Timestamp).toBe(Date.parse(AT));
      expect(d.service).toBe('rekey');
      // The key ref is a searchable member, in no dimension set.
      const flat = dir0.Dimensions.flat();
      expect(flat).not.toContain('keyRef');
      for (const name of flat) expect(String(d[name])).not.toMatch(/^(aws|gcp)-kms:\/\//);
    }
    expect(out.map((d) => d.keyRef).sort()).toEqual([KEY, KEY2].sort());
    expect(out.find((d) => d.keyRef === KEY)!['rekey.cost.monthly']).toBe(3.25);
  });

  it('a key ref given as a dimension by mistake is written as a property, with a warning', () => {
    const { s, docs, warnings } = sink();
    s.record([
      {
        name: 'rekey.rewrap.rewrapped',
        value: 500,
        unit: 'Count',
        dimensions: { store: 'orders', provider: 'aws-kms', keyRef: KEY },
      },
    ]);
    const [d] = docs();
    expect(emfProblems(d!)).toEqual([]);
    expect(d!._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([['service', 'store', 'provider']]);
    expect(d!.keyRef).toBe(KEY);
    expect(warnings.join('\n')).toContain(
      'dimension "keyRef" of rekey.rewrap.rewrapped is not a low-cardinality dimension',
    );
  });

  it('rollups add dimension sets; every set includes the service dimension', () => {
    const { s, docs } = sink({ rollups: [['provider'], [], ['store']] });
    s.record(costPoints(KEY, 'pci', 1, 1));
    const [d] = docs();
    expect(emfProblems(d!)).toEqual([]);
    // ['store'] is not among the point's dimensions, so that set is left out.
    expect(d!._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([
      ['service', 'provider', 'account', 'region', 'policy', 'protection'],
      ['service', 'provider'],
      ['service'],
    ]);
  });

  it('perKey: false sums keys that share dimensions (max for ages) and writes no key ref', () => {
    const { s, docs } = sink({ perKey: false });
    s.record([...costPoints(KEY, 'pci', 3.25, 12), ...costPoints(KEY2, 'pci', 1.5, 40)]);
    const out = docs();
    expect(out).toHaveLength(1);
    expect(emfProblems(out[0]!)).toEqual([]);
    expect(out[0]!['rekey.cost.monthly']).toBe(4.75);
    expect(out[0]!['rekey.keys']).toBe(2);
    expect(out[0]!['rekey.key.primary_age_days']).toBe(40);
    expect(out[0]!.keyRef).toBeUndefined();
  });

  it('splits within EMF limits: at most 100 values per metric and 100 metrics per document', () => {
    const { s, docs, lines } = sink();
    const dims = { store: 'app', provider: 'local' };
    const many: MetricPoint[] = Array.from({ length: 250 }, (_, i) => ({
      name: 'rekey.rewrap.rate',
      value: i,
      unit: 'Count/Second',
      dimensions: dims,
    }));
    const wide: MetricPoint[] = Array.from({ length: 130 }, (_, i) => ({
      name: `custom.metric.${i}`,
      value: i,
      unit: 'Count',
      dimensions: { store: 'wide' },
    }));
    s.record([...many, ...wide]);
    const out = docs();
    for (const d of out) expect(emfProblems(d)).toEqual([]);
    const rates = out.filter((d) => 'rekey.rewrap.rate' in d);
    expect(rates.flatMap((d) => d['rekey.rewrap.rate'] as number[])).toHaveLength(250);
    const wideDocs = out.filter((d) => d.store === 'wide');
    expect(wideDocs.map((d) => d._aws.CloudWatchMetrics[0]!.Metrics.length).sort()).toEqual([100, 30]);
    expect(lines.every((l) => !l.includes('\n'))).toBe(true);
  });

  it('appends JSON lines to a file the CloudWatch agent can ship', async () => {
    const file = join(dir, 'metrics.jsonl');
    const s = new EmfMetricsSink({ namespace: 'rekey', output: { file }, onWarning: () => {} });
    s.record(costPoints(KEY, 'pci', 1, 1));
    s.record(costPoints(KEY2, 'none', 2, 2));
    await s.close();
    const docs = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Doc);
    expect(docs).toHaveLength(2);
    for (const d of docs) expect(emfProblems(d)).toEqual([]);
  });
});
