import { describe, expect, it } from 'vitest';
import { buildCatalog, tieredCost } from '../../../shared/core/cost/catalog.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { awsKey, catalog, catalogJson } from './helpers.js';

describe('price catalog', () => {
  it('the shipped catalog validates and covers every price the model uses', () => {
    const c = catalog();
    expect(c.version).toBe('2026.11.1');
    for (const sku of [
      'aws-kms/key-month',
      'aws-kms/rotation-month',
      'aws-kms/requests-symmetric',
      'aws-kms/requests-rsa-2048',
      'aws-kms/requests-asymmetric',
      'aws-kms/requests-gdkp-ecc',
      'aws-kms/requests-gdkp-rsa',
      'aws-cloudhsm/hsm2m.medium',
      'gcp-kms/version-software',
      'gcp-kms/version-hsm',
      'gcp-kms/version-hsm-advanced',
      'gcp-kms/version-external',
      'gcp-kms/ops',
      'gcp-kms/ops-hsm-advanced',
      'azure-kv/ops-standard',
      'azure-kv/ops-advanced',
      'azure-kv/rotation',
      'azure-kv/hsm-key-rsa2048',
      'azure-kv/hsm-key-advanced',
      'azure-managed-hsm/pool-hour',
    ]) {
      const p = c.lookup(sku, undefined, '2026-11-01');
      expect(p, sku).toBeDefined();
      expect(p!.source).toMatch(/^https:\/\//);
    }
    expect(c.lookup('aws-kms/rotation-month', undefined, '2026-11-01')!.params.maxBilledRotations).toBe(2);
    expect(c.lookup('aws-kms/requests-gdkp-rsa', undefined, '2026-11-01')!.amount).toBe(12);
    expect(c.lookup('aws-kms/requests-gdkp-ecc', undefined, '2026-11-01')!.amount).toBe(0.1);
  });

  it('graduated tiers: each rate applies to the units inside its tier', () => {
    const tiers = [
      { upTo: 250, amount: 5 },
      { upTo: 1500, amount: 2.5 },
      { upTo: 4000, amount: 0.9 },
      { upTo: null, amount: 0.4 },
    ];
    expect(tieredCost(tiers, 300).cost).toBe(1375);
    // 250 x 5 + 1250 x 2.5 + 2500 x 0.9 + 1000 x 0.4
    expect(tieredCost(tiers, 5000).cost).toBeCloseTo(1250 + 3125 + 2250 + 400, 9);
  });

  it('a regional price wins over the default for that region only', () => {
    const json = catalogJson() as { prices: Record<string, unknown>[] };
    json.prices.push({ ...json.prices[0]!, region: 'me-central-1', usd: 1.2 });
    const c = buildCatalog(json);
    expect(c.lookup('aws-kms/key-month', 'me-central-1', '2026-11-01')!.amount).toBe(1.2);
    expect(c.lookup('aws-kms/key-month', 'us-east-1', '2026-11-01')!.amount).toBe(1);
  });

  it('rejects a malformed catalog with the field named', () => {
    const json = catalogJson() as { prices: Record<string, unknown>[] };
    delete json.prices[2]!.usd;
    expect(() => buildCatalog(json)).toThrow(/price catalog: prices\.2: give exactly one of usd or tiers/);
    const bad = catalogJson() as { prices: Record<string, unknown>[] };
    bad.prices[0]!.source = 'not a url';
    expect(() => buildCatalog(bad)).toThrow(/prices\.0\.source/);
  });

  it('overrides: negotiated multipliers and replacements, a currency at a fixed rate, and a digest in every output', () => {
    const ov = {
      name: 'acme EDP',
      currency: { code: 'EUR', perUsd: 0.9 },
      rules: [
        { sku: 'aws-kms/*', multiply: 0.8, note: 'EDP' },
        { sku: 'aws-kms/rotation-month', replace: 0.5 },
      ],
    };
    const c = buildCatalog(catalogJson(), ov);
    expect(c.currency).toBe('EUR');
    expect(c.overrideDigest).toMatch(/^[0-9a-f]{16}$/);
    const key = awsKey(1, {
      versions: [
        { id: 'm1', createdAt: '2026-01-01T00:00:00.000Z' },
        { id: 'm2', createdAt: '2026-02-01T00:00:00.000Z' },
      ],
    });
    const r = computeCosts({ keys: [key] }, [], c, '2026-11');
    // key-month 1 x 0.8 x 0.9 = 0.72 EUR; rotation replaced by 0.5 USD = 0.45 EUR.
    expect(r.keys[0]!.total).toBeCloseTo(0.72 + 0.45, 12);
    expect(r.keys[0]!.overrideDigest).toBe(c.overrideDigest);
    expect(r.keys[0]!.parts[0]!.explanation).toContain('override x0.8 (EDP); EUR at 0.9/USD');
    expect(buildCatalog(catalogJson(), ov).overrideDigest).toBe(c.overrideDigest);
  });

  it('an override naming an unknown SKU is an error, not a silent no-op', () => {
    expect(() =>
      buildCatalog(catalogJson(), { rules: [{ sku: 'aws-kms/key-mnth', multiply: 0.5 }] }),
    ).toThrow(ValidationError);
    expect(() =>
      buildCatalog(catalogJson(), { rules: [{ sku: 'aws-kms/key-mnth', multiply: 0.5 }] }),
    ).toThrow('price overrides: rules[0].sku: "aws-kms/key-mnth" matches no SKU of catalog 2026.11.1');
    expect(() => buildCatalog(catalogJson(), { rules: [{ sku: 'aws-kms/key-month' }] })).toThrow(
      /give exactly one of multiply or replace/,
    );
  });
});
