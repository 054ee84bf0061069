import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explainKey, explanationLines, findCostKey } from '../../../shared/core/cost/explain.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import { NotFoundError, ValidationError } from '../../../shared/core/errors.js';
import { parseInventoryFile, parseUsageFile } from '../../../shared/cost/estimate.js';
import { catalog, ROOT } from './helpers.js';

const FX = resolve(ROOT, 'test/fixtures/cost');
const inventory = parseInventoryFile(readFileSync(resolve(FX, 'inventory.json'), 'utf8'));
const usage = parseUsageFile(readFileSync(resolve(FX, 'usage.json'), 'utf8'));
const cat = catalog();
const report = computeCosts(inventory, usage, cat, '2026-11');
const explain = (name: string) => {
  const key = findCostKey(inventory.keys, name);
  const kc = report.keys.find((k) => k.ref === key.ref)!;
  return explainKey(kc, key, cat, { usage, policy: 'pci' });
};

describe('explainKey', () => {
  it('AWS key, November 2026, by hand: storage, two billed rotations, requests with their free share', () => {
    const x = explain('orders');
    expect(x.policy).toBe('pci');
    // Storage: 720 of 720 h at $1 per key-month.
    expect(x.storage).toHaveLength(1);
    expect(x.storage[0]).toMatchObject({
      sku: 'aws-kms/key-month',
      quantity: 1,
      unitPrice: 1,
      cost: 1,
      price: { source: 'https://aws.amazon.com/kms/pricing/', effective: '2024-04-01', confidence: 'list' },
    });
    // Rotations: m2 (June) a full month, m3 (Nov 16) 360 of 720 h.
    expect(x.rotations.inPeriod).toBe(1);
    expect(x.rotations.sinceCreation).toBe(2);
    expect(x.rotations.figures.map((f) => [f.version, f.quantity, f.cost])).toEqual([
      ['m2', 1, 1],
      ['m3', 0.5, 0.5],
    ]);
    // Requests: the account has 1,250,000 + 30,000 symmetric requests (aws/s3) = 1,280,000; the
    // 20,000 free ones are shared in proportion: this key gets 20,000 x 1,250,000 / 1,280,000.
    const free = (20_000 * 1_250_000) / 1_280_000;
    expect(free).toBe(19_531.25);
    const sym = x.requests.find((f) => f.requestClass === 'symmetric')!;
    expect(sym.sku).toBe('aws-kms/requests-symmetric');
    expect(sym.quantity).toBeCloseTo((1_250_000 - free) / 10_000, 12);
    expect(sym.freeQuantity).toBeCloseTo(free / 10_000, 12);
    expect(sym.cost).toBeCloseTo(((1_250_000 - free) / 10_000) * 0.03, 12);
    expect(sym.usage).toEqual({ counters: 1, sources: ['rekey'] });
    // GenerateDataKeyPair RSA: 120 requests at $12 per 10k, no free share, secondary source.
    const gdkp = x.requests.find((f) => f.requestClass === 'gdkp_rsa')!;
    expect(gdkp.cost).toBeCloseTo(0.144, 12);
    expect(gdkp.price?.confidence).toBe('secondary');
    expect(x.freeTier).toEqual([
      {
        allowance: expect.any(String),
        account: '111122223333',
        requestClass: 'symmetric',
        allowanceQuantity: 20_000,
        accountQuantity: 1_280_000,
        keyShare: free,
        saved: (free / 10_000) * 0.03,
      },
    ]);
    expect(x.hsm).toEqual([]);
    // The parts add up to the total: 1 + 1 + 0.5 + 3.69140625 + 0.144.
    expect(x.total).toBeCloseTo(6.33540625, 12);
    const lines = explanationLines(x).join('\n');
    expect(lines).toContain('[aws-kms/key-month] 1 Key-Months x $1.00 = $1.00');
    expect(lines).toContain('https://aws.amazon.com/kms/pricing/');
    expect(lines).toContain('19,531.25 symmetric requests of this key are free');
  });

  it('a key in an HSM pool gets its share of the HSM-hours, with the split spelled out', () => {
    const x = explain('custom-key-store');
    // Two HSMs x 720 h at $1.60, shared by two keys present all month: 1,440 HSM-hours / 2.
    expect(x.hsm).toHaveLength(1);
    expect(x.hsm[0]).toMatchObject({
      sku: 'aws-cloudhsm/hsm2m.medium',
      quantity: 720,
      unitPrice: 1.6,
      cost: 1152,
      allocation: {
        kind: 'hsm_pool',
        pool: 'cluster-1a2b3c4d5e6',
        hsms: 2,
        poolHsmHours: 1440,
        keyHours: 720,
        totalKeyHours: 1440,
        keys: 2,
      },
    });
    expect(x.hsm[0]!.price?.confidence).toBe('secondary');
  });

  it('GCP: each billed version is a figure, destroyed versions are not', () => {
    const x = explain('orders-kek');
    // v1 destroyed 2026-10-01: nothing. v2 destroyed 2026-11-11: 240 h. v3: 720 h. $1 per version-month.
    expect(x.versions.figures.map((f) => [f.version, f.quantity])).toEqual([
      ['2', 240 / 720],
      ['3', 1],
    ]);
    expect(x.versions.billable).toBe(2);
    expect(x.versions.list.find((v) => v.id === '1')).toMatchObject({ billableHours: 0, cost: 0 });
    expect(x.total).toBeCloseTo(240 / 720 + 1 + x.requests.reduce((s, f) => s + f.cost!, 0), 12);
  });

  it('without usage, says requests are not included', () => {
    const key = findCostKey(inventory.keys, 'orders');
    const r = computeCosts(inventory, [], cat, '2026-11');
    const x = explainKey(r.keys.find((k) => k.ref === key.ref)!, key, cat);
    expect(x.requests).toEqual([]);
    expect(x.notes.join(' ')).toContain('no usage counters for 2026-11');
  });
});

describe('findCostKey', () => {
  it('finds a key by ref, by canonical ref or by unique name', () => {
    const ref = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    expect(findCostKey(inventory.keys, ref).name).toBe('orders');
    expect(findCostKey(inventory.keys, ` ${ref} `).name).toBe('orders');
    expect(findCostKey(inventory.keys, 'tls-signing').provider).toBe('azure-kv');
  });

  it('an unknown key or an ambiguous name is an error that names it', () => {
    expect(() => findCostKey(inventory.keys, 'local://nope', 'inv.json')).toThrow(NotFoundError);
    expect(() => findCostKey(inventory.keys, 'local://nope', 'inv.json')).toThrow(
      'key "local://nope" is not in inv.json',
    );
    const twice = [...inventory.keys, { ...inventory.keys[0]!, ref: 'local://other' }];
    expect(() => findCostKey(twice, 'orders')).toThrow(ValidationError);
    expect(() => findCostKey(twice, 'orders')).toThrow('"orders" names 2 keys');
    expect(() => findCostKey(inventory.keys, '  ')).toThrow('KEYREF is empty');
  });
});
