import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tieredCost } from '../../../shared/core/cost/catalog.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import type { CostKey, UsageCounter } from '../../../shared/core/cost/types.js';
import { awsKey, catalog } from './helpers.js';

const cat = catalog();

describe('allocation properties', () => {
  it('the free tier shared across an account always sums to min(total, 20,000) free and the rest billed', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 60_000 }), { minLength: 1, maxLength: 12 }),
        (counts) => {
          const keys = counts.map((_, i) => awsKey(i + 1));
          const usage: UsageCounter[] = counts.map((count, i) => ({
            ref: keys[i]!.ref,
            class: 'symmetric',
            count,
            period: '2026-11',
          }));
          const r = computeCosts({ keys }, usage, cat, '2026-11');
          const total = counts.reduce((s, c) => s + c, 0);
          const parts = r.keys.flatMap((k) => k.parts.filter((p) => p.kind === 'requests'));
          const free = parts.reduce((s, p) => s + (p.freeQuantity ?? 0) * 10_000, 0);
          const billed = parts.reduce((s, p) => s + (p.cost ?? 0), 0);
          expect(free).toBeCloseTo(Math.min(total, 20_000), 6);
          expect(billed).toBeCloseTo((Math.max(0, total - 20_000) / 10_000) * 0.03, 9);
          for (const p of parts) expect(p.quantity).toBeGreaterThanOrEqual(-1e-12);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('tiered keys of an account always add up to the tiered cost of the account total', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 0, max: 719 }), (n, lateHours) => {
        // n Azure advanced HSM keys; the last one created `lateHours` into the month.
        const keys: CostKey[] = Array.from({ length: n }, (_, i) => {
          const createdAt =
            i === n - 1
              ? new Date(Date.UTC(2026, 10, 1) + lateHours * 3_600_000).toISOString()
              : '2026-01-01T00:00:00.000Z';
          return {
            ref: `azure-kv://v.vault.azure.net/keys/k${i}`,
            provider: 'azure-kv',
            account: 'sub',
            protection: 'hsm',
            algorithm: 'EC_P256',
            createdAt,
            versions: [{ id: 'a', createdAt }],
          };
        });
        const r = computeCosts({ keys }, [], cat, '2026-11');
        const qty = n - 1 + (720 - lateHours) / 720;
        const tiers = cat.lookup('azure-kv/hsm-key-advanced', undefined, '2026-11-01')!.tiers!;
        expect(r.total!).toBeCloseTo(tieredCost(tiers, qty).cost, 6);
      }),
      { numRuns: 100 },
    );
  });

  it('an AWS key never costs more than $3 a month in storage and rotations, however often it rotates', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 719 }), { maxLength: 30 }), (hours) => {
        const sorted = [...hours].sort((a, b) => a - b);
        const key = awsKey(1, {
          versions: [
            { id: 'm0', createdAt: '2026-01-01T00:00:00.000Z' },
            ...sorted.map((h, i) => ({
              id: `m${i + 1}`,
              createdAt: new Date(Date.UTC(2026, 10, 1) + h * 3_600_000).toISOString(),
            })),
          ],
        });
        const t = computeCosts({ keys: [key] }, [], cat, '2026-11').keys[0]!.total!;
        expect(t).toBeLessThanOrEqual(3 + 1e-12);
        // Exactly: $1 + each of the first two rotations prorated from its hour.
        const expected = 1 + sorted.slice(0, 2).reduce((s, h) => s + (720 - h) / 720, 0);
        expect(t).toBeCloseTo(expected, 12);
      }),
      { numRuns: 200 },
    );
  });
});
