import { describe, expect, it } from 'vitest';
import { computeCosts, explainKeyCost } from '../../../shared/core/cost/model.js';
import type { CostKey, UsageCounter } from '../../../shared/core/cost/types.js';
import { addDays, awsKey, catalog, versionsEvery } from './helpers.js';

const cat = catalog();
const cents = (n: number | null) => (n === null ? null : Math.round(n * 100) / 100);

describe('AWS KMS', () => {
  // Key created long before November 2026 (720 h). Five rotations on Nov 6, 11, 16, 21, 26 at 00:00.
  const rotations = [6, 11, 16, 21, 26].map((d, i) => ({
    id: `m${i + 2}`,
    createdAt: `2026-11-${String(d).padStart(2, '0')}T00:00:00.000Z`,
  }));
  const key = awsKey(1, { versions: [{ id: 'm1', createdAt: '2026-01-01T00:00:00.000Z' }, ...rotations] });

  it('a key rotated 5 times in a month pays for 2 rotations only, prorated from each rotation', () => {
    // storage 720/720 h = 1.00; rotation #1 from Nov 6: 600/720 h; rotation #2 from Nov 11: 480/720 h;
    // rotations #3-#5 free. Total = (720 + 600 + 480) / 720 = 1800 / 720 = $2.50.
    // (Ignoring rotations would say $1.00; the pre-2024 uncapped rule would say (720+600+480+360+240+120)/720 = $3.50.)
    const r = computeCosts({ keys: [key] }, [], cat, '2026-11');
    const k = r.keys[0]!;
    expect(k.total).toBeCloseTo(2.5, 12);
    expect(k.parts.map((p) => [p.kind, p.version, p.status])).toEqual([
      ['key_storage', 'm1', 'priced'],
      ['rotation', 'm2', 'priced'],
      ['rotation', 'm3', 'priced'],
      ['rotation', 'm4', 'free'],
      ['rotation', 'm5', 'free'],
      ['rotation', 'm6', 'free'],
    ]);
    expect(k.parts[1]!.quantity).toBeCloseTo(600 / 720, 12);
    expect(k.parts[2]!.quantity).toBeCloseTo(480 / 720, 12);
    expect(k.billableVersions).toBe(3);
    expect(k.rotationsInPeriod).toBe(5);
    expect(k.parts[3]!.explanation).toContain('AWS bills only the first 2 rotations');
  });

  it('the next full month of that key tops out at $3.00', () => {
    const r = computeCosts({ keys: [key] }, [], cat, '2026-12');
    expect(r.keys[0]!.total).toBeCloseTo(3, 12);
  });

  it('a key pending deletion is not billed for those hours', () => {
    // Pending deletion from Nov 16 00:00: billed 15 days = 360 of 720 h = $0.50.
    const k = awsKey(2, { keyStates: [{ at: '2026-11-16T00:00:00.000Z', state: 'pending_deletion' }] });
    const r = computeCosts({ keys: [k] }, [], cat, '2026-11');
    expect(r.keys[0]!.total).toBeCloseTo(0.5, 12);
    expect(r.keys[0]!.parts[0]!.explanation).toContain('360 h pending deletion are not billed');
  });

  it('AWS-managed keys pay no storage fee but pay for requests', () => {
    const k = awsKey(3, { managedBy: 'provider', account: '999999999999' });
    const usage: UsageCounter[] = [{ ref: k.ref, class: 'symmetric', count: 30_000, period: '2026-11' }];
    // 30,000 requests, 20,000 free (only key of its account): 10,000 billed = $0.03.
    const r = computeCosts({ keys: [k] }, usage, cat, '2026-11');
    expect(r.keys[0]!.parts[0]!.status).toBe('free');
    expect(r.keys[0]!.total).toBeCloseTo(0.03, 12);
  });

  it('an account whose requests straddle the free tier shares it in proportion to requests', () => {
    const a = awsKey(10);
    // Same account, another Region: the free tier is per account across Regions.
    const b = awsKey(11, {
      region: 'eu-west-1',
      ref: 'aws-kms://arn:aws:kms:eu-west-1:111111111111:key/00000011-1111-2222-3333-444444444444',
    });
    const c = awsKey(12, {
      account: '222222222222',
      ref: 'aws-kms://arn:aws:kms:eu-west-1:222222222222:key/00000012-1111-2222-3333-444444444444',
    });
    const d = awsKey(13, {
      algorithm: 'RSA_2048',
      region: 'eu-west-1',
      ref: 'aws-kms://arn:aws:kms:eu-west-1:111111111111:key/00000013-1111-2222-3333-444444444444',
    });
    const usage: UsageCounter[] = [
      { ref: a.ref, class: 'symmetric', count: 15_000, period: '2026-11' },
      { ref: b.ref, class: 'symmetric', count: 15_000, period: '2026-11' },
      { ref: c.ref, class: 'symmetric', count: 5_000, period: '2026-11' },
      // Asymmetric requests are outside the free tier; the importer says "asymmetric", the key says RSA 2048.
      { ref: d.ref, class: 'asymmetric', count: 10_000, period: '2026-11' },
      // GenerateDataKeyPair RSA on a symmetric key: $12 per 10k, not the ECC rate.
      { ref: a.ref, class: 'gdkp_rsa', count: 10_000, period: '2026-11' },
      { ref: b.ref, class: 'gdkp_ecc', count: 10_000, period: '2026-11' },
      { ref: b.ref, class: 'symmetric', count: 1, period: '2026-10' }, // other month: ignored
    ];
    const r = computeCosts({ keys: [a, b, c, d] }, usage, cat, '2026-11');
    const req = (i: number, cls: string) => r.keys[i]!.parts.find((p) => p.requestClass === cls)!;
    // Account 1111: 30,000 symmetric requests, 20,000 free, shared 15/30 each: each key 10,000 free,
    // 5,000 billed = 0.5 x $0.03 = $0.015. Together $0.03 = (30,000 - 20,000) / 10,000 x $0.03.
    expect(req(0, 'symmetric').freeQuantity).toBeCloseTo(1, 12);
    expect(req(0, 'symmetric').cost).toBeCloseTo(0.015, 12);
    expect(req(1, 'symmetric').cost).toBeCloseTo(0.015, 12);
    expect(req(0, 'symmetric').explanation).toContain('in proportion to requests');
    // Account 2222: 5,000 requests, all free.
    expect(req(2, 'symmetric').cost).toBe(0);
    expect(req(3, 'rsa_2048').cost).toBeCloseTo(0.03, 12);
    expect(req(0, 'gdkp_rsa').cost).toBeCloseTo(12, 12);
    expect(req(1, 'gdkp_ecc').cost).toBeCloseTo(0.1, 12);
    // Storage: 4 keys x $1. Requests: 0.015 + 0.015 + 0 + 0.03 + 12 + 0.10.
    expect(cents(r.total)).toBe(cents(4 + 0.015 + 0.015 + 0.03 + 12 + 0.1));
  });
});

describe('GCP KMS', () => {
  // An HSM AES key rotated every 30 days from 2025-01-01: versions on days 0, 30, ..., 360
  // (v13 on Dec 27). December 2025 has 744 h.
  const base = (): CostKey => ({
    ref: 'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/r/cryptoKeys/orders',
    provider: 'gcp-kms',
    account: 'billing-01',
    region: 'europe-west1',
    protection: 'hsm',
    algorithm: 'AES_256',
    createdAt: '2025-01-01T00:00:00.000Z',
    versions: versionsEvery('2025-01-01T00:00:00.000Z', 30, 13),
  });

  it('without retirement every version stays billed: ~$12/month after a year', () => {
    // v1..v12 billed all 744 h, v13 from Dec 27: 120 h. (12 x 744 + 120) / 744 = 12.161290... = $12.16.
    const r = computeCosts({ keys: [base()] }, [], cat, '2025-12');
    expect(r.keys[0]!.total).toBeCloseTo(12 + 120 / 744, 12);
    expect(cents(r.keys[0]!.total)).toBe(12.16);
    expect(r.keys[0]!.billableVersions).toBe(13);
  });

  it('with retirement (disabled after 10 d, destroy scheduled after 30 d, destroyed 30 d later) about 3 versions bill', () => {
    const k = base();
    k.versions = k.versions.map((v, i, all) => {
      const next = all[i + 1];
      if (!next) return v;
      return {
        ...v,
        states: [
          { at: addDays(next.createdAt, 10), state: 'disabled' as const },
          { at: addDays(next.createdAt, 30), state: 'destroy_scheduled' as const },
        ],
        destroyedAt: addDays(next.createdAt, 60),
      };
    });
    // Destroyed = superseded + 60 d = created + 90 d. In December (days 334-365):
    // v9 destroyed day 330: 0 h. v10 destroyed day 360 (Dec 27): 26 d = 624 h. v11, v12: 744 h each
    // (disabled and destroy-scheduled versions still bill). v13 from day 360: 120 h.
    // (624 + 744 + 744 + 120) / 744 = 2232 / 744 = $3.00.
    const r = computeCosts({ keys: [k] }, [], cat, '2025-12');
    expect(r.keys[0]!.total).toBeCloseTo(3, 12);
    expect(
      r.keys[0]!.versions.filter((v) => v.billableHours > 0).map((v) => [v.id, v.billableHours]),
    ).toEqual([
      ['10', 624],
      ['11', 744],
      ['12', 744],
      ['13', 120],
    ]);
  });

  it('HSM RSA 3072+/EC versions: the first 2,000 per billing account at $2.50, the rest at $1.00', () => {
    // 2,100 EC keys with one version each: 2,000 x $2.50 + 100 x $1.00 = $5,100.
    const keys: CostKey[] = Array.from({ length: 2100 }, (_, i) => ({
      ...base(),
      ref: `gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/r/cryptoKeys/k${i}`,
      algorithm: 'EC_P256',
      versions: versionsEvery('2025-01-01T00:00:00.000Z', 1, 1),
    }));
    const r = computeCosts({ keys }, [], cat, '2025-12');
    expect(r.total).toBeCloseTo(5100, 6);
    expect(r.keys[0]!.parts[0]!.unitPrice).toBeCloseTo(5100 / 2100, 12);
  });

  it('operations on HSM EC keys use the advanced rate; GenerateDataKeyPair is unknown on GCP', () => {
    const k: CostKey = {
      ...base(),
      algorithm: 'EC_P256',
      versions: versionsEvery('2025-01-01T00:00:00.000Z', 1, 1),
    };
    const usage: UsageCounter[] = [
      { ref: k.ref, class: 'asymmetric', count: 20_000, period: '2025-12' },
      { ref: k.ref, class: 'gdkp_ecc', count: 5, period: '2025-12' },
    ];
    const r = computeCosts({ keys: [k] }, usage, cat, '2025-12');
    const kc = r.keys[0]!;
    // 1 version-month at $2.50 (first tier) + 2 x $0.15; the GDKP line is unknown, so the total is unknown.
    expect(kc.knownTotal).toBeCloseTo(2.5 + 0.3, 12);
    expect(kc.total).toBeNull();
    expect(kc.unknownParts).toBe(1);
    expect(kc.parts.find((p) => p.status === 'unknown')!.explanation).toContain('price unknown');
  });
});

describe('Azure Key Vault', () => {
  const hsmKeys = (n: number, algorithm: CostKey['algorithm'] = 'RSA_3072'): CostKey[] =>
    Array.from({ length: n }, (_, i) => ({
      ref: `azure-kv://prod-premium.vault.azure.net/keys/k${i}`,
      provider: 'azure-kv' as const,
      account: 'sub-1',
      region: 'westeurope',
      protection: 'hsm' as const,
      algorithm,
      createdAt: '2026-01-01T00:00:00.000Z',
      versions: [{ id: `v${i}`, createdAt: '2026-01-01T00:00:00.000Z' }],
    }));

  it('300 advanced HSM keys cross the 250-key tier: 250 x $5 + 50 x $2.50 = $1,375.00', () => {
    const r = computeCosts({ keys: hsmKeys(300) }, [], cat, '2026-11');
    expect(r.total).toBeCloseTo(1375, 9);
    expect(r.keys[0]!.total).toBeCloseTo(1375 / 300, 12);
    expect(r.keys[0]!.parts[0]!.explanation).toContain('250 x 5 + 50 x 2.5 = $1,375.00');
  });

  it('unknown pool SKUs are reported as unknown with the reason', () => {
    const k: CostKey = { ...hsmKeys(1)[0]!, provider: 'pkcs11', pool: 'c1' };
    const pools = [{ id: 'c1', sku: 'aws-cloudhsm/hsm1.medium', hsms: 2, account: 'sub-1' }];
    const r = computeCosts({ keys: [k], pools }, [], cat, '2026-11');
    expect(r.keys[0]!.total).toBeNull();
    expect(r.pools[0]!.explanation).toContain('catalog 2026.11.1 has no SKU aws-cloudhsm/hsm1.medium');
  });

  it('250 keys stay in the first tier; RSA 2048 HSM keys are $1 flat', () => {
    expect(computeCosts({ keys: hsmKeys(250) }, [], cat, '2026-11').total).toBeCloseTo(1250, 9);
    expect(computeCosts({ keys: hsmKeys(300, 'RSA_2048') }, [], cat, '2026-11').total).toBeCloseTo(300, 9);
  });

  it('charges each rotation once, and operations by key type', () => {
    const k: CostKey = {
      ...hsmKeys(1, 'RSA_2048')[0]!,
      versions: [
        { id: 'a', createdAt: '2026-01-01T00:00:00.000Z' },
        { id: 'b', createdAt: '2026-11-16T00:00:00.000Z', origin: 'automatic' },
        { id: 'c', createdAt: '2026-11-20T00:00:00.000Z', origin: 'manual' },
      ],
    };
    const usage: UsageCounter[] = [{ ref: k.ref, class: 'asymmetric', count: 50_000, period: '2026-11' }];
    const r = computeCosts({ keys: [k] }, usage, cat, '2026-11');
    // Versions: a 720 h, b 360 h, c 264 h at $1/key-month: (720 + 360 + 264) / 720.
    // One billed rotation (b; c was created directly) $1. 50,000 RSA 2048 ops = 5 x $0.03.
    expect(r.keys[0]!.total).toBeCloseTo((720 + 360 + 264) / 720 + 1 + 0.15, 12);
  });

  it('software keys pay only for operations', () => {
    const k: CostKey = { ...hsmKeys(1, 'EC_P256')[0]!, protection: 'software' };
    const usage: UsageCounter[] = [{ ref: k.ref, class: 'symmetric', count: 10_000, period: '2026-11' }];
    expect(computeCosts({ keys: [k] }, usage, cat, '2026-11').total).toBeCloseTo(0.15, 12);
  });
});

describe('HSM pools', () => {
  it('a CloudHSM cluster of 2 HSMs holding 40 keys: 2 x 720 h x $1.60 / 40 = $57.60 per key', () => {
    const keys: CostKey[] = Array.from({ length: 40 }, (_, i) => ({
      ref: `pkcs11:token=prod;object=k${i}`,
      provider: 'pkcs11',
      account: '111111111111',
      protection: 'hsm',
      algorithm: 'AES_256',
      createdAt: '2026-01-01T00:00:00.000Z',
      versions: [{ id: '1', createdAt: '2026-01-01T00:00:00.000Z' }],
      pool: 'cluster-abc',
    }));
    const pools = [{ id: 'cluster-abc', sku: 'aws-cloudhsm/hsm2m.medium', hsms: 2, account: '111111111111' }];
    const r = computeCosts({ keys, pools }, [], cat, '2026-11');
    for (const k of r.keys) expect(k.total).toBeCloseTo(57.6, 12);
    expect(r.total).toBeCloseTo(2304, 9);
    expect(r.pools[0]).toMatchObject({ keys: 40, unallocated: 0 });
    expect(r.keys[0]!.parts[0]!.quantity).toBeCloseTo(36, 12);
  });

  it('an empty pool keeps its cost unallocated; a PKCS#11 key without a pool is unknown, not zero', () => {
    const pools = [{ id: 'mhsm', sku: 'azure-managed-hsm/pool-hour', hsms: 1, account: 'sub-1' }];
    const k: CostKey = {
      ref: 'pkcs11:token=onprem;object=x',
      provider: 'pkcs11',
      account: 'dc',
      protection: 'hsm',
      algorithm: 'AES_256',
      createdAt: '2026-01-01T00:00:00.000Z',
      versions: [{ id: '1', createdAt: '2026-01-01T00:00:00.000Z' }],
    };
    const r = computeCosts({ keys: [k], pools }, [], cat, '2026-11');
    expect(r.pools[0]!.unallocated).toBeCloseTo(720 * 3.2, 9);
    expect(r.keys[0]!.total).toBeNull();
    expect(r.total).toBeNull();
    expect(r.knownTotal).toBeCloseTo(2304, 9);
  });
});

describe('keys with no provider charge', () => {
  it('local keys cost zero (free, not unknown); Managed HSM keys pay only their pool share', () => {
    const local: CostKey = {
      ref: 'local://orders',
      provider: 'local',
      account: 'local',
      protection: 'software',
      algorithm: 'AES_256',
      createdAt: '2026-01-01T00:00:00.000Z',
      versions: [{ id: '1', createdAt: '2026-01-01T00:00:00.000Z' }],
    };
    const mhsm: CostKey = {
      ...local,
      ref: 'azure-kv://corp.managedhsm.azure.net/keys/k',
      provider: 'azure-managed-hsm',
      account: 'sub-1',
      protection: 'hsm',
      pool: 'corp',
    };
    const usage: UsageCounter[] = [
      { ref: local.ref, class: 'symmetric', count: 1000, period: '2026-11' },
      { ref: mhsm.ref, class: 'symmetric', count: 1000, period: '2026-11' },
    ];
    const pools = [{ id: 'corp', sku: 'azure-managed-hsm/pool-hour', hsms: 1, account: 'sub-1' }];
    const r = computeCosts({ keys: [local, mhsm], pools }, usage, cat, '2026-11');
    expect(r.keys[0]!.total).toBe(0);
    expect(r.keys[0]!.parts.every((p) => p.status === 'free')).toBe(true);
    // 720 h x $3.20 = $2,304.00, the only key in the pool.
    expect(r.keys[1]!.total).toBeCloseTo(2304, 9);
    expect(r.total).toBeCloseTo(2304, 9);
  });
});

describe('unknown prices and explanations', () => {
  it('a period before the catalog vouches for a price is unknown, with the reason', () => {
    const r = computeCosts(
      { keys: [awsKey(1, { createdAt: '2023-01-01T00:00:00.000Z' })] },
      [],
      cat,
      '2023-05',
    );
    expect(r.keys[0]!.total).toBeNull();
    expect(r.keys[0]!.parts[0]!.explanation).toContain('no price for aws-kms/key-month before 2024-04-01');
  });

  it('explainKeyCost gives one line per part with the arithmetic, catalog version and override digest', () => {
    const r = computeCosts({ keys: [awsKey(1)] }, [], cat, '2026-11');
    const lines = explainKeyCost(r.keys[0]!);
    expect(lines[0]).toContain('2026-11: $1.00 [catalog 2026.11.1, overrides none]');
    expect(lines[1]).toContain('key storage version m1 [aws-kms/key-month] $1.00: key billed 720 of 720 h');
    expect(lines[1]).toContain('1 x $1.00 = $1.00');
  });

  it('usage for refs not in the inventory is reported, not dropped', () => {
    const usage: UsageCounter[] = [
      { ref: 'azure-vault:/x', class: 'symmetric', count: 3, period: '2026-11' },
    ];
    expect(computeCosts({ keys: [] }, usage, cat, '2026-11').unmatchedUsage).toHaveLength(1);
  });
});
