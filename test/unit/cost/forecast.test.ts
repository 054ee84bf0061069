import { describe, expect, it } from 'vitest';
import { actionCostDelta, forecastDelta, forecastKey } from '../../../shared/core/cost/forecast.js';
import type { CostKey } from '../../../shared/core/cost/types.js';
import { parseDuration } from '../../../shared/core/domain/duration.js';
import type { PlanAction } from '../../../shared/core/plan/types.js';
import type { Policy } from '../../../shared/core/policy/types.js';
import { awsKey, catalog } from './helpers.js';

const cat = catalog();
const rotate = (every: string): Policy['rotate'] => ({ every: parseDuration(every), mode: 'auto' });
const retire = (destroyAfter: string, destroyDelay = 'P30D'): Policy['retire'] => ({
  destroyAfter: parseDuration(destroyAfter),
  destroyDelay: parseDuration(destroyDelay),
  approvals: 0,
});

const gcpHsm = (): CostKey => ({
  ref: 'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/r/cryptoKeys/orders',
  provider: 'gcp-kms',
  account: 'billing-01',
  protection: 'hsm',
  algorithm: 'AES_256',
  createdAt: '2026-01-01T00:00:00.000Z',
  versions: [{ id: '1', createdAt: '2026-01-01T00:00:00.000Z' }],
});

describe('forecastKey', () => {
  it('a GCP HSM key rotated every 30 days reaches ~$12/month after a year unless retired', () => {
    // Same history as the model test: versions on days 0, 30, ..., 360; December has 744 h.
    // 2026: GCP's catalog prices apply from 2025-03-17, so 2025-01 would be unknown.
    const base = { key: gcpHsm(), catalog: cat, from: '2026-01', months: 12 };
    const kept = forecastKey({ ...base, policy: { rotate: rotate('P30D') } });
    expect(kept.months[11]!.total).toBeCloseTo(12 + 120 / 744, 12);
    // January: v1 all 744 h, v2 from Jan 31: 24 h.
    expect(kept.months[0]!.total).toBeCloseTo((744 + 24) / 744, 12);
    // Retired: destroy scheduled 30 d after being superseded, destroyed 30 d later -> (624+744+744+120)/744 = 3.
    const retired = forecastKey({ ...base, policy: { rotate: rotate('P30D'), retire: retire('P30D') } });
    expect(retired.months[11]!.total).toBeCloseTo(3, 12);
    expect(retired.assumptions).toContain('old versions are retired on time (re-wrapping finished)');
  });

  it('the delta of adding retirement is negative and explained', () => {
    const d = forecastDelta(
      { key: gcpHsm(), catalog: cat, from: '2026-01', months: 12 },
      { rotate: rotate('P30D') },
      { rotate: rotate('P30D'), retire: retire('P30D') },
    );
    expect(d.monthly[11]!.delta).toBeCloseTo(3 - (12 + 120 / 744), 12);
    expect(d.totalDelta!).toBeLessThan(0);
    expect(d.explanation).toContain('in 2026-12: $12.16');
    expect(d.explanation).toContain('-> $3.00 per month');
  });

  it('AWS: rotating every 30 days instead of yearly costs at most $2/month more (cap)', () => {
    const key = awsKey(1, {
      createdAt: '2026-01-01T00:00:00.000Z',
      versions: [{ id: 'm1', createdAt: '2026-01-01T00:00:00.000Z' }],
    });
    const d = forecastDelta(
      { key, catalog: cat, from: '2026-01', months: 12 },
      { rotate: rotate('P365D') },
      {
        rotate: rotate('P30D'),
      },
    );
    // By December both rotations are long billed under P30D; P365D has not rotated yet.
    expect(d.proposed.months[11]!.total).toBeCloseTo(3, 12);
    expect(d.current.months[11]!.total).toBeCloseTo(1, 12);
    for (const m of d.proposed.months) expect(m.total!).toBeLessThanOrEqual(3 + 1e-12);
  });

  it('usage is priced every month, without the shared free tier', () => {
    const f = forecastKey({
      key: awsKey(1),
      policy: undefined,
      catalog: cat,
      from: '2026-11',
      months: 2,
      usagePerMonth: [{ class: 'symmetric', count: 10_000 }],
    });
    expect(f.months.map((m) => m.total)).toEqual([1.03, 1.03]);
    expect(f.total).toBeCloseTo(2.06, 12);
  });
});

describe('actionCostDelta', () => {
  const base = { provider: 'p', policy: 'pol', reason: 'r' };
  const rot = (keyRef: string): PlanAction => ({ ...base, keyRef, type: 'rotate', expectPrimary: '1' });
  const at = '2026-11-15T00:00:00.000Z';

  it('AWS: +$1/month for the first two rotations, then nothing', () => {
    const k0 = awsKey(1);
    expect(actionCostDelta(rot(k0.ref), k0, cat, { at }).monthly).toBe(1);
    const k2 = awsKey(1, {
      versions: ['m1', 'm2', 'm3'].map((id) => ({ id, createdAt: '2026-01-01T00:00:00.000Z' })),
    });
    const d = actionCostDelta(rot(k2.ref), k2, cat, { at });
    expect(d.monthly).toBe(0);
    expect(d.explanation).toContain('only the first 2 rotations');
  });

  it('GCP: rotate adds a version, schedule_destroy saves one, disable saves nothing', () => {
    const k = gcpHsm();
    expect(actionCostDelta(rot(k.ref), k, cat, { at }).monthly).toBe(1);
    const destroy: PlanAction = {
      ...base,
      keyRef: k.ref,
      type: 'schedule_destroy',
      version: '1',
      delayDays: 30,
      approvalsRequired: 1,
    };
    expect(actionCostDelta(destroy, k, cat, { at }).monthly).toBe(-1);
    const disable: PlanAction = { ...base, keyRef: k.ref, type: 'disable_version', version: '1' };
    const d = actionCostDelta(disable, k, cat, { at });
    expect(d.monthly).toBe(0);
    expect(d.explanation).toContain('still bill');
  });

  it('Azure: $1 per rotation once, plus one more HSM version a month', () => {
    const k: CostKey = {
      ref: 'azure-kv://prod.vault.azure.net/keys/k',
      provider: 'azure-kv',
      account: 'sub',
      protection: 'hsm',
      algorithm: 'RSA_2048',
      createdAt: '2026-01-01T00:00:00.000Z',
      versions: [{ id: 'a', createdAt: '2026-01-01T00:00:00.000Z' }],
    };
    expect(actionCostDelta(rot(k.ref), k, cat, { at })).toMatchObject({ monthly: 1, oneOff: 1 });
  });

  it('re-wrap: AWS uses one ReEncrypt per DEK; elsewhere decrypt + encrypt', () => {
    const rewrap = (keyRef: string): PlanAction => ({
      ...base,
      keyRef,
      type: 'rewrap',
      stores: ['s'],
      fromVersions: [],
      estimatedDeks: 100_000,
      verify: 'none',
      batchSize: 100,
    });
    // 100,000 requests = 10 x $0.03.
    expect(actionCostDelta(rewrap(awsKey(1).ref), awsKey(1), cat, { at }).oneOff).toBeCloseTo(0.3, 12);
    // 200,000 operations = 20 x $0.03.
    expect(actionCostDelta(rewrap(gcpHsm().ref), gcpHsm(), cat, { at }).oneOff).toBeCloseTo(0.6, 12);
  });
});
