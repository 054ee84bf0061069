import type { Algorithm, Protection } from '../../core/domain/key.js';

/**
 * Cloud KMS list prices per active key version and month (USD), effective 2025-03-17:
 * https://cloud.google.com/kms/pricing. Every version that is not DESTROYED bills, whatever
 * its state (ENABLED, DISABLED and DESTROY_SCHEDULED alike), with no cap per key: each
 * rotation adds a billed version until an old one is destroyed.
 *
 * Kept here as plain constants until prices move into the versioned price catalog.
 */
export const GCP_VERSION_PRICES = {
  source: 'https://cloud.google.com/kms/pricing',
  effective: '2025-03-17',
  currency: 'USD',
  software: 0.06,
  hsmStandard: 1.0,
  hsmAdvancedFirst: 2.5,
  hsmAdvancedAfter: 1.0,
  hsmAdvancedTierSize: 2000,
  external: 3.0,
} as const;

/** HSM algorithms billed at the higher rate: RSA 3072 bits and more, and elliptic curves. */
const HSM_ADVANCED: ReadonlySet<Algorithm> = new Set(['RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384']);

/**
 * Monthly list cost of `activeVersions` billed versions of one protection level and algorithm.
 * For advanced HSM algorithms the first 2,000 versions cost $2.50 and the rest $1.00; the tier
 * applies per billing account, so pass the count across every key when pricing a fleet.
 */
export function gcpMonthlyVersionCost(
  protection: Protection,
  algorithm: Algorithm,
  activeVersions: number,
): number {
  if (!Number.isInteger(activeVersions) || activeVersions < 0) {
    throw new RangeError(`activeVersions must be a non-negative integer (got ${activeVersions})`);
  }
  const p = GCP_VERSION_PRICES;
  let cost: number;
  if (protection === 'software') cost = activeVersions * p.software;
  else if (protection === 'external') cost = activeVersions * p.external;
  else if (!HSM_ADVANCED.has(algorithm)) cost = activeVersions * p.hsmStandard;
  else {
    const first = Math.min(activeVersions, p.hsmAdvancedTierSize);
    cost = first * p.hsmAdvancedFirst + (activeVersions - first) * p.hsmAdvancedAfter;
  }
  // Cents are the unit prices are quoted in; avoid 0.06 * 3 = 0.18000000000000002.
  return Math.round(cost * 1e6) / 1e6;
}

/** Whether a version in this GCP state still bills. Only DESTROYED (and never-generated) versions are free. */
export function gcpVersionBills(state: 'enabled' | 'disabled' | 'destroy_scheduled' | 'destroyed'): boolean {
  return state !== 'destroyed';
}

/** The monthly saving of destroying one version: what it stops costing once DESTROYED. */
export function gcpMonthlySavingPerRetiredVersion(protection: Protection, algorithm: Algorithm): number {
  if (protection === 'hsm' && HSM_ADVANCED.has(algorithm)) return GCP_VERSION_PRICES.hsmAdvancedFirst;
  return gcpMonthlyVersionCost(protection, algorithm, 1);
}
