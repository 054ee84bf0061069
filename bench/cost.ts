/**
 * Cost model throughput: N keys with 3 versions and a month of usage each, priced in two
 * streaming passes (no result is kept), against a raw loop that sums the same quantities
 * times the same prices with none of the model's work (lookups, allocation, explanations).
 * Runs in its own process with its peak RSS: `node --expose-gc dist/bench/scenarios.js cost
 * 1000000`, or as part of `npm run bench -- --all` (`--cost-keys N`).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildCatalog } from '../shared/core/cost/catalog.js';
import { CostModel } from '../shared/core/cost/model.js';
import type { CostKey, UsageCounter } from '../shared/core/cost/types.js';

const PERIOD = '2026-11';
const START = Date.UTC(2026, 10, 1);
const HOURS = 720;
const H = 3_600_000;

function catalogPath(): string {
  for (const rel of ['../data/prices/catalog.json', '../../data/prices/catalog.json']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    try {
      readFileSync(p);
      return p;
    } catch {}
  }
  throw new Error('data/prices/catalog.json not found');
}

/** Key i: one of AWS / GCP HSM / Azure HSM, versions 400 d, 200 d and i % 700 h before the period ends. */
function makeKey(i: number): { key: CostKey; usage: UsageCounter[] } {
  const kind = i % 3;
  const created = new Date(START - 400 * 24 * H).toISOString();
  const v2 = new Date(START - 200 * 24 * H).toISOString();
  const v3 = new Date(START + (i % 700) * H).toISOString();
  const versions = [
    { id: '1', createdAt: created },
    { id: '2', createdAt: v2 },
    { id: '3', createdAt: v3 },
  ];
  const account = `acct-${i % 50}`;
  const key: CostKey =
    kind === 0
      ? {
          ref: `aws-kms://arn:aws:kms:us-east-1:111111111111:key/${i}`,
          provider: 'aws-kms',
          account,
          protection: 'hsm',
          algorithm: 'AES_256',
          createdAt: created,
          versions,
        }
      : kind === 1
        ? {
            ref: `gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k${i}`,
            provider: 'gcp-kms',
            account,
            protection: 'hsm',
            algorithm: 'AES_256',
            createdAt: created,
            versions,
          }
        : {
            ref: `azure-kv://v.vault.azure.net/keys/k${i}`,
            provider: 'azure-kv',
            account,
            protection: 'hsm',
            algorithm: 'RSA_2048',
            createdAt: created,
            versions,
          };
  const usage: UsageCounter[] = [
    { ref: key.ref, class: 'symmetric', count: 1000 + (i % 10_000), period: PERIOD },
    { ref: key.ref, class: 'management', count: 10, period: PERIOD },
  ];
  return { key, usage };
}

export interface CostBenchResult {
  scenario: 'cost';
  n: number;
  seconds: number;
  perSecond: number;
  rawPerSecond: number;
  /** Model throughput / raw loop throughput. */
  ratioToRaw: number;
  /** Sum of all key totals (guards against dead-code elimination; equal runs give equal sums). */
  total: number;
}

export function costBench(keys: number): CostBenchResult {
  const catalog = buildCatalog(JSON.parse(readFileSync(catalogPath(), 'utf8')));
  const t0 = performance.now();
  const model = new CostModel(catalog, PERIOD);
  for (let i = 0; i < keys; i++) {
    const { key, usage } = makeKey(i);
    model.observe(key, usage);
  }
  let total = 0;
  for (let i = 0; i < keys; i++) {
    const { key, usage } = makeKey(i);
    total += model.priceKey(key, usage).knownTotal;
  }
  const seconds = (performance.now() - t0) / 1000;

  // Raw: the same quantities (billed hours per version, requests) times flat prices.
  const r0 = performance.now();
  let raw = 0;
  for (let i = 0; i < keys; i++) {
    const { key, usage } = makeKey(i);
    for (const v of key.versions) {
      const from = Math.max(Date.parse(v.createdAt), START);
      raw += (Math.max(0, START + HOURS * H - from) / H / HOURS) * 1;
    }
    for (const u of usage) raw += (u.count / 10_000) * 0.03;
  }
  const rawSeconds = (performance.now() - r0) / 1000;
  const perSecond = Math.round(keys / seconds);
  const rawPerSecond = Math.round(keys / rawSeconds);
  return {
    scenario: 'cost',
    n: keys,
    seconds: Math.round(seconds * 1000) / 1000,
    perSecond,
    rawPerSecond,
    ratioToRaw: Math.round((perSecond / rawPerSecond) * 1000) / 1000,
    total: total + raw * 0,
  };
}
