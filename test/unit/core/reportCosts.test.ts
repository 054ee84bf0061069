import { afterEach, describe, expect, it } from 'vitest';
import { costKeyFromManaged } from '../../../shared/core/cost/fromInventory.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import type { ManagedKey } from '../../../shared/core/domain/key.js';
import { ConfigError, ValidationError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import {
  METRIC_DIMENSIONS,
  MemoryMetrics,
  metricDefinition,
} from '../../../shared/core/ports/MetricsSink.js';
import { reportCosts } from '../../../shared/core/usecases/reportCosts.js';
import { loadCatalog } from '../../../shared/cost/catalogFile.js';
import { type TestWorkspace, testWorkspace } from '../../support/workspace.js';

const AWS_REF = 'aws-kms://arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const GCP_REF = 'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/r/cryptoKeys/orders';

const key = (
  ref: string,
  providerType: ManagedKey['providerType'],
  versions: ManagedKey['versions'],
  extra: Partial<ManagedKey> = {},
): ManagedKey => ({
  ref,
  providerType,
  providerId: providerType === 'aws-kms' ? 'aws-prod' : 'gcp-prod',
  name: ref.split('/').pop()!,
  tags: { 'data-class': 'pci' },
  protection: 'hsm',
  algorithm: 'AES_256',
  enabled: true,
  primaryVersion: versions[versions.length - 1]!.id,
  versions,
  createdAt: versions[0]!.createdAt,
  ...extra,
});

// An AWS key rotated twice in September (each of the first two rotations adds $1 a month), and a GCP HSM key
// with three billed versions.
const KEYS: ManagedKey[] = [
  key(AWS_REF, 'aws-kms', [
    { id: 'a'.repeat(64), state: 'enabled', createdAt: '2025-01-01T00:00:00.000Z' },
    { id: 'b'.repeat(64), state: 'enabled', createdAt: '2026-09-05T00:00:00.000Z' },
    { id: 'c'.repeat(64), state: 'enabled', createdAt: '2026-09-20T00:00:00.000Z' },
  ]),
  key(GCP_REF, 'gcp-kms', [
    { id: '1', state: 'disabled', createdAt: '2026-01-01T00:00:00.000Z' },
    { id: '2', state: 'enabled', createdAt: '2026-04-01T00:00:00.000Z' },
    { id: '3', state: 'enabled', createdAt: '2026-07-01T00:00:00.000Z' },
  ]),
];

const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: pci
    match: { tags: { data-class: pci } }
    rotate: { every: P90D }
    budget: { perKeyMonthly: 2 USD }
  - name: default
    match: {}
    rotate: { every: P365D }
`;

let w: TestWorkspace | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

async function workspace(opts: { inventory?: boolean } = {}) {
  w = await testWorkspace(YAML);
  w.clock.set('2026-10-28T12:00:00.000Z');
  w.ctx.catalog = loadCatalog();
  const metrics = new MemoryMetrics();
  w.ctx.metrics = metrics;
  if (opts.inventory !== false) {
    await w.state.saveInventory({ id: 'inv-old', takenAt: '2026-10-01T00:00:00.000Z', keys: [], errors: [] });
    await w.state.saveInventory({
      id: 'inv-1',
      takenAt: '2026-10-28T00:00:00.000Z',
      keys: KEYS,
      errors: [{ providerId: 'azure-prod', message: 'vault unreachable' }],
    });
  }
  return { w, metrics };
}

describe('reportCosts', () => {
  it('prices every key of the latest inventory for the month, as the cost model does', async () => {
    const { w } = await workspace();
    const r = await reportCosts(w.ctx);
    expect(r).toMatchObject({ period: '2026-10', inventoryId: 'inv-1', keys: 2, currency: 'USD' });
    expect(r.inventoryErrors).toEqual([{ providerId: 'azure-prod', message: 'vault unreachable' }]);
    const direct = computeCosts(
      { keys: KEYS.map((k) => costKeyFromManaged(k)) },
      [],
      w.ctx.catalog!,
      '2026-10',
    );
    expect(r.costs.keys.map((k) => k.total)).toEqual(direct.keys.map((k) => k.total));
    expect(r.total).toBe(direct.total);
    const aws = r.costs.keys.find((k) => k.ref === AWS_REF)!;
    // $1 for the key and $1 for each of the two rotations.
    expect(aws.total).toBeCloseTo(3, 9);
    // Both keys are over the pci policy's $2 budget.
    expect(r.findings.filter((f) => f.kind === 'budget_breach').map((f) => f.keyRef)).toEqual(
      expect.arrayContaining([AWS_REF, GCP_REF]),
    );
  });

  it('emits the registered cost metrics per key, the key a property and never a dimension', async () => {
    const { w, metrics } = await workspace();
    const r = await reportCosts(w.ctx, { period: '2026-10' });
    for (const p of metrics.points) {
      expect(metricDefinition(p.name), p.name).toBeDefined();
      for (const d of Object.keys(p.dimensions)) expect(METRIC_DIMENSIONS).toContain(d);
      expect(Object.values(p.dimensions).join(' ')).not.toMatch(/arn:|projects\//);
    }
    const perKey = metrics.points.filter((p) => p.name === 'rekey.cost.monthly');
    expect(perKey).toHaveLength(2);
    const aws = perKey.find((p) => p.properties?.keyRef === AWS_REF)!;
    expect(aws.dimensions).toMatchObject({ provider: 'aws-kms', protection: 'hsm', policy: 'pci' });
    expect(aws.value).toBeCloseTo(3, 9);
    expect(metrics.total('rekey.cost.monthly')).toBeCloseTo(r.knownTotal, 6);
    expect(metrics.total('rekey.keys')).toBe(2);
    expect(metrics.total('rekey.cost.findings', { finding: 'budget_breach' })).toBe(2);
  });

  it('takes an inventory when none is stored', async () => {
    const { w } = await workspace({ inventory: false });
    await w.seed('orders', 1);
    const r = await reportCosts(w.ctx, { period: '2026-10' });
    expect(r.keys).toBe(1);
    expect((await w.state.latestInventory())?.id).toBe(r.inventoryId);
  });

  it('refuses a malformed period and a context without prices, emitting nothing', async () => {
    const { w, metrics } = await workspace();
    await expect(reportCosts(w.ctx, { period: '2026-13' })).rejects.toThrow(ValidationError);
    await expect(reportCosts(w.ctx, { period: '2026-13' })).rejects.toThrow(/2026-13/);
    w.ctx.catalog = undefined;
    await expect(reportCosts(w.ctx)).rejects.toThrow(ConfigError);
    expect(metrics.points).toEqual([]);
  });

  it('keys no policy governs are reported under the policy "none"', async () => {
    const { w, metrics } = await workspace();
    w.ctx.config = loadConfig(YAML.replace(/policies:[\s\S]*$/, 'policies: []\n'), 'bare.yaml');
    await reportCosts(w.ctx);
    expect(
      new Set(metrics.points.filter((p) => p.name === 'rekey.cost.monthly').map((p) => p.dimensions.policy)),
    ).toEqual(new Set(['none']));
  });
});
