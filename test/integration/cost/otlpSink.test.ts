import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../../shared/core/errors.js';
import type { MetricPoint } from '../../../shared/core/ports/MetricsSink.js';
import { OtlpMetricsSink } from '../../../shared/telemetry/metrics/OtlpMetricsSink.js';

/**
 * The OpenTelemetry sink, with the real SDK and OTLP/HTTP exporter, against a receiver on
 * 127.0.0.1 that stores what it gets. The test decodes the OTLP JSON itself.
 */

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let server: Server;
let url: string;
let received: Received[] = [];
let status = 200;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? '{}' : '{"code":3,"message":"refused by the test"}');
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/metrics`;
});
afterAll(() => new Promise<void>((ok) => server.close(() => ok())));
beforeEach(() => {
  received = [];
  status = 200;
});

type AnyValue = { stringValue?: string; intValue?: string | number; doubleValue?: number };
type KV = { key: string; value: AnyValue };
type DataPoint = { attributes?: KV[]; asDouble?: number; asInt?: string | number };
type OtlpMetric = {
  name: string;
  unit?: string;
  description?: string;
  sum?: { dataPoints: DataPoint[]; isMonotonic?: boolean; aggregationTemporality?: number };
  gauge?: { dataPoints: DataPoint[] };
};
type Body = {
  resourceMetrics: {
    resource: { attributes: KV[] };
    scopeMetrics: { scope: { name: string }; metrics: OtlpMetric[] }[];
  }[];
};

const attrs = (kvs: KV[] = []) =>
  Object.fromEntries(kvs.map((a) => [a.key, a.value.stringValue ?? a.value.intValue ?? a.value.doubleValue]));
const pointValue = (p: DataPoint) => (p.asDouble !== undefined ? p.asDouble : Number(p.asInt));

function decode(r: Received): { resource: Record<string, unknown>; metrics: Map<string, OtlpMetric> } {
  const body = JSON.parse(r.body) as Body;
  const metrics = new Map<string, OtlpMetric>();
  for (const rm of body.resourceMetrics)
    for (const sm of rm.scopeMetrics) for (const m of sm.metrics) metrics.set(m.name, m);
  return { resource: attrs(body.resourceMetrics[0]!.resource.attributes), metrics };
}

const KEY = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const KEY2 = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321';
const KEY3 = 'gcp-kms://projects/acme/locations/europe-west1/keyRings/r/cryptoKeys/k';

function costPoints(ref: string, dims: Record<string, string>, cost: number, age: number): MetricPoint[] {
  const properties = { keyRef: ref, period: '2026-11' };
  return [
    { name: 'rekey.cost.monthly', value: cost, unit: 'None', dimensions: dims, properties },
    { name: 'rekey.keys', value: 1, unit: 'Count', dimensions: dims, properties },
    { name: 'rekey.key.primary_age_days', value: age, unit: 'None', dimensions: dims, properties },
  ];
}
const AWS = {
  provider: 'aws-kms',
  account: '111122223333',
  region: 'us-east-1',
  policy: 'pci',
  protection: 'hsm',
};
const GCP = {
  provider: 'gcp-kms',
  account: 'billing-1',
  region: 'europe-west1',
  policy: 'none',
  protection: 'hsm',
};

function makeSink(extra: Partial<ConstructorParameters<typeof OtlpMetricsSink>[0]> = {}) {
  const warnings: string[] = [];
  const sink = new OtlpMetricsSink({
    url,
    exportIntervalMs: 600_000,
    timeoutMs: 2_000,
    serviceVersion: '9.9.9',
    resource: { 'deployment.environment': 'test' },
    onWarning: (w) => warnings.push(w),
    ...extra,
  });
  return { sink, warnings };
}

describe('OtlpMetricsSink', () => {
  it('exports OTLP JSON: keys sharing dimensions are combined, and no key ref leaves the process', async () => {
    const { sink, warnings } = makeSink();
    sink.record([
      ...costPoints(KEY, AWS, 3.25, 12),
      ...costPoints(KEY2, AWS, 1.5, 40),
      ...costPoints(KEY3, GCP, 2, 5),
    ]);
    sink.record([
      {
        name: 'rekey.rewrap.rewrapped',
        value: 500,
        unit: 'Count',
        dimensions: { store: 'orders', provider: 'aws-kms', keyRef: KEY },
        properties: { keyRef: KEY, job: 'j1' },
      },
      {
        name: 'rekey.rewrap.rate',
        value: 1200,
        unit: 'Count/Second',
        dimensions: { store: 'orders', provider: 'aws-kms' },
      },
    ]);
    await sink.flush();
    expect(received).toHaveLength(1);
    const r = received[0]!;
    expect(r.path).toBe('/v1/metrics');
    expect(r.headers['content-type']).toContain('application/json');
    expect(r.body).not.toContain('arn:aws:kms');
    expect(r.body).not.toContain('keyRef');
    expect(r.body).not.toContain('cryptoKeys');
    const { resource, metrics } = decode(r);
    expect(resource).toMatchObject({
      'service.name': 'rekey',
      'service.version': '9.9.9',
      'deployment.environment': 'test',
    });

    const monthly = metrics.get('rekey.cost.monthly')!;
    expect(monthly.gauge).toBeDefined();
    const byPolicy = new Map(monthly.gauge!.dataPoints.map((p) => [attrs(p.attributes).policy, p]));
    expect(byPolicy.size).toBe(2);
    expect(pointValue(byPolicy.get('pci')!)).toBeCloseTo(4.75, 12);
    expect(attrs(byPolicy.get('pci')!.attributes)).toEqual(AWS);
    expect(pointValue(byPolicy.get('none')!)).toBe(2);
    const keys = metrics.get('rekey.keys')!;
    expect(keys.unit).toBe('{count}');
    expect(keys.gauge!.dataPoints.map(pointValue).sort()).toEqual([1, 2]);
    // Ages combine by maximum: the oldest primary among the keys.
    const age = metrics.get('rekey.key.primary_age_days')!;
    expect(age.gauge!.dataPoints.map(pointValue).sort((a, b) => a - b)).toEqual([5, 40]);

    const rewrapped = metrics.get('rekey.rewrap.rewrapped')!;
    expect(rewrapped.sum?.isMonotonic).toBe(true);
    expect(rewrapped.description).toContain('DEKs moved');
    expect(rewrapped.sum!.dataPoints).toHaveLength(1);
    expect(attrs(rewrapped.sum!.dataPoints[0]!.attributes)).toEqual({ store: 'orders', provider: 'aws-kms' });
    expect(pointValue(rewrapped.sum!.dataPoints[0]!)).toBe(500);
    expect(metrics.get('rekey.rewrap.rate')!.unit).toBe('{count}/s');
    expect(warnings.join('\n')).toContain(
      'dimension "keyRef" of rekey.rewrap.rewrapped is not a low-cardinality dimension',
    );
    await sink.close();
  });

  it('counters are cumulative across exports; headers are sent', async () => {
    const { sink } = makeSink({ headers: { authorization: 'Bearer test-token' } });
    const point = (value: number): MetricPoint => ({
      name: 'rekey.rewrap.failed',
      value,
      unit: 'Count',
      dimensions: { store: 'app', provider: 'local' },
    });
    sink.record([point(3)]);
    await sink.flush();
    sink.record([point(4)]);
    await sink.flush();
    expect(received).toHaveLength(2);
    expect(received[0]!.headers.authorization).toBe('Bearer test-token');
    const values = received.map((r) =>
      pointValue(decode(r).metrics.get('rekey.rewrap.failed')!.sum!.dataPoints[0]!),
    );
    expect(values).toEqual([3, 7]);
    await sink.close();
  });

  it('a refused export makes flush fail with a provider error', async () => {
    const { sink } = makeSink();
    status = 400;
    sink.record(costPoints(KEY, AWS, 1, 1));
    const err = await sink.flush().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).providerCode).toBe('EXPORT_FAILED');
    expect((err as Error).message).toContain('metrics export failed');
    status = 200;
    await sink.close();
    // After close, points are dropped with a warning, not sent.
    received = [];
    sink.record(costPoints(KEY, AWS, 1, 1));
    expect(received).toHaveLength(0);
  });
});
