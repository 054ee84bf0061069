import { describe, expect, it } from 'vitest';
import { PolicyError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';

/** The `metrics:` section of the config: defaults, and errors that name the line and field. */
const base = `version: 1
providers:
  local: { type: local }
`;

function issues(yaml: string): { line: number; path: string; message: string }[] {
  try {
    loadConfig(yaml, 'rekey.yaml');
  } catch (e) {
    if (e instanceof PolicyError) return e.issues;
    throw e;
  }
  throw new Error('expected a PolicyError');
}

describe('metrics config', () => {
  it('is optional; emf and otlp get their defaults', () => {
    expect(loadConfig(base, 'rekey.yaml').metrics).toBeUndefined();
    expect(loadConfig(`${base}metrics: { type: emf }\n`, 'rekey.yaml').metrics).toEqual({
      type: 'emf',
      namespace: 'rekey',
      service: 'rekey',
      output: 'stdout',
      perKey: true,
      rollups: [],
    });
    const otlp = loadConfig(
      `${base}metrics:
  type: otlp
  endpoint: http://127.0.0.1:4318/v1/metrics
  headers: { Authorization: env:OTLP_TOKEN }
  resource: { deployment.environment: prod }
`,
      'rekey.yaml',
    ).metrics;
    expect(otlp).toEqual({
      type: 'otlp',
      endpoint: 'http://127.0.0.1:4318/v1/metrics',
      headers: { Authorization: 'env:OTLP_TOKEN' },
      intervalSeconds: 60,
      timeoutSeconds: 10,
      temporality: 'cumulative',
      resource: { 'deployment.environment': 'prod' },
    });
  });

  it('a literal header secret, an unknown rollup dimension or a bad endpoint is named at its line', () => {
    const got = issues(`${base}metrics:
  type: otlp
  endpoint: ftp://collector
  headers: { Authorization: Bearer abc }
`);
    expect(got.map((i) => i.path).sort()).toEqual(['metrics.endpoint', 'metrics.headers.Authorization']);
    expect(got.find((i) => i.path === 'metrics.endpoint')).toMatchObject({
      line: 6,
      message: 'must be an http(s) URL',
    });
    expect(got.find((i) => i.path === 'metrics.headers.Authorization')!.line).toBe(7);
    const emf = issues(`${base}metrics: { type: emf, rollups: [[provider, keyRef]] }\n`);
    expect(emf).toHaveLength(1);
    expect(emf[0]!.path).toBe('metrics.rollups[0][1]');
    expect(emf[0]!.message).toContain('provider');
    const kind = issues(`${base}metrics: { type: prometheus }\n`);
    expect(kind[0]!.path).toBe('metrics.type');
  });
});
