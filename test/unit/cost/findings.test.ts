import { describe, expect, it } from 'vitest';
import { costFindings } from '../../../shared/core/cost/findings.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import type { CostKey } from '../../../shared/core/cost/types.js';
import type { DekCensus } from '../../../shared/core/plan/evaluate.js';
import type { Policy } from '../../../shared/core/policy/types.js';
import { awsKey, catalog, versionsEvery } from './helpers.js';

const cat = catalog();
const NOW = '2026-11-30T00:00:00.000Z';
const gcp = (name: string, extra: Partial<CostKey> = {}): CostKey => ({
  ref: `gcp-kms://projects/acme-prod/locations/eu/keyRings/r/cryptoKeys/${name}`,
  provider: 'gcp-kms',
  account: 'billing-01',
  providerId: 'gcp-prod',
  name,
  tags: {},
  protection: 'hsm',
  algorithm: 'AES_256',
  createdAt: '2026-01-01T00:00:00.000Z',
  versions: versionsEvery('2026-01-01T00:00:00.000Z', 90, 3),
  ...extra,
});
const policy = (p: Partial<Policy>): Policy => ({ name: 'p', index: 0, match: {}, ...p });

describe('costFindings', () => {
  it('idle keys: from lastUsedAt, or from usage data when the provider does not say', () => {
    const a = awsKey(1, { lastUsedAt: '2026-06-01T00:00:00.000Z' });
    const b = awsKey(2);
    const c = awsKey(3);
    const keys = [a, b, c];
    const costs = computeCosts({ keys }, [], cat, '2026-11').keys;
    const usage = [{ ref: c.ref, class: 'symmetric' as const, count: 5, period: '2026-10' }];
    const f = costFindings({ keys, costs, now: NOW, usage });
    expect(f.map((x) => [x.kind, x.keyRef])).toEqual([
      ['idle_key', a.ref],
      ['idle_key', b.ref],
    ]);
    expect(f[0]!.message).toContain('last used 2026-06-01 (182 days ago)');
    expect(f[0]!.monthlySaving).toBe(1);
  });

  it('surplus versions: non-primary, no DEK, still billed (GCP bills disabled versions too)', () => {
    const k = gcp('orders');
    k.versions[0]!.states = [{ at: '2026-05-01T00:00:00.000Z', state: 'disabled' }];
    const census: DekCensus = new Map([[k.ref, { s: { '1': 0, '2': 4, '3': 10 } }]]);
    const costs = computeCosts({ keys: [k] }, [], cat, '2026-11').keys;
    const f = costFindings({
      keys: [k],
      costs,
      now: NOW,
      census,
      policies: [policy({ require: { protection: 'hsm' } })],
    });
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ kind: 'surplus_version', version: '1', monthlySaving: 1 });
    expect(f[0]!.message).toContain('schedule its destruction');
  });

  it('key-per-object explosion: many keys holding one DEK each', () => {
    const keys = Array.from({ length: 120 }, (_, i) => awsKey(i + 10, { lastUsedAt: NOW }));
    const census: DekCensus = new Map(keys.map((k) => [k.ref, { s: { m1: 1 } }]));
    const costs = computeCosts({ keys }, [], cat, '2026-11').keys;
    const f = costFindings({ keys, costs, now: NOW, census });
    expect(f).toHaveLength(1);
    expect(f[0]!.kind).toBe('key_per_object');
    expect(f[0]!.message).toContain('120 of 120 aws-kms keys in account 111111111111');
    expect(f[0]!.monthlySaving).toBe(119);
    // Below the threshold: nothing.
    expect(costFindings({ keys: keys.slice(0, 50), costs, now: NOW, census })).toEqual([]);
  });

  it('HSM keys the policy does not require, priced against software protection', () => {
    const k = gcp('logs', { versions: versionsEvery('2026-01-01T00:00:00.000Z', 1, 1) });
    const costs = computeCosts({ keys: [k] }, [], cat, '2026-11').keys;
    const f = costFindings({
      keys: [k],
      costs,
      now: NOW,
      catalog: cat,
      policies: [policy({ name: 'logs' })],
    });
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ kind: 'hsm_not_required', policy: 'logs' });
    // $1.00 HSM version - $0.06 software version.
    expect(f[0]!.monthlySaving).toBeCloseTo(0.94, 12);
  });

  it('budget breaches per policy, and a budget in another currency is not compared', () => {
    const k = gcp('orders', { lastUsedAt: NOW });
    const costs = computeCosts({ keys: [k] }, [], cat, '2026-11').keys; // 3 versions = $3.00
    const usd = policy({
      require: { protection: 'hsm' },
      budget: { perKeyMonthly: { amount: 2, currency: 'USD' } },
    });
    const f = costFindings({ keys: [k], costs, now: NOW, policies: [usd] });
    expect(f).toHaveLength(1);
    expect(f[0]!.message).toBe('2026-11: $3.00 exceeds the $2.00 per-key budget of policy p by $1.00');
    const eur = policy({
      require: { protection: 'hsm' },
      budget: { perKeyMonthly: { amount: 2, currency: 'EUR' } },
    });
    expect(costFindings({ keys: [k], costs, now: NOW, policies: [eur] })[0]!.severity).toBe('info');
    const fine = policy({
      require: { protection: 'hsm' },
      budget: { perKeyMonthly: { amount: 5, currency: 'USD' } },
    });
    expect(costFindings({ keys: [k], costs, now: NOW, policies: [fine] })).toEqual([]);
  });
});
