import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { buildCatalog, type PriceCatalog } from '../../../shared/core/cost/catalog.js';
import type { CostKey, CostKeyVersion } from '../../../shared/core/cost/types.js';

export const ROOT = resolve(import.meta.dirname, '../../..');
export const catalogJson = (): unknown =>
  JSON.parse(readFileSync(resolve(ROOT, 'data/prices/catalog.json'), 'utf8'));
export const catalog = (overrides?: unknown): PriceCatalog => buildCatalog(catalogJson(), overrides);

export const DAY = 86_400_000;
export const iso = (t: number) => new Date(t).toISOString();
export const addDays = (at: string, d: number) => iso(Date.parse(at) + d * DAY);

export function awsKey(n: number, extra: Partial<CostKey> = {}): CostKey {
  const id = `0000000${n}`.slice(-8);
  return {
    ref: `aws-kms://arn:aws:kms:us-east-1:111111111111:key/${id}-1111-2222-3333-444444444444`,
    provider: 'aws-kms',
    account: '111111111111',
    region: 'us-east-1',
    protection: 'software',
    algorithm: 'AES_256',
    createdAt: '2026-01-01T00:00:00.000Z',
    versions: [{ id: 'm1', createdAt: '2026-01-01T00:00:00.000Z' }],
    ...extra,
  };
}

/** Versions created every `everyDays` from `start`, `count` of them. */
export function versionsEvery(start: string, everyDays: number, count: number): CostKeyVersion[] {
  return Array.from({ length: count }, (_, i) => ({
    id: String(i + 1),
    createdAt: addDays(start, i * everyDays),
  }));
}
