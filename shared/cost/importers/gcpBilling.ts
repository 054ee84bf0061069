import type { RequestClass } from '../../core/cost/types.js';
import { at, fail, gcpRef, type ImportResult, logRecords, monthOf, UsageAccumulator } from './common.js';

/**
 * Cloud Billing export rows (BigQuery export as JSON lines, or a JSON array). Rows of Cloud KMS
 * whose SKU is an operations SKU become request counters for the key in resource.global_name
 * (or resource.name); key-version rows are skipped (storage is priced from the inventory).
 */
export function classOfSku(description: string): RequestClass | 'storage' | undefined {
  if (/key version/i.test(description)) return 'storage';
  if (!/operation/i.test(description)) return undefined;
  if (/admin|management/i.test(description)) return 'management';
  if (/RSA[ -]?(3072|4096)|\bEC\b|ECDSA|elliptic/i.test(description)) return 'asymmetric';
  if (/RSA[ -]?2048/i.test(description)) return 'rsa_2048';
  return 'symmetric';
}

export function importGcpBilling(text: string, source = 'GCP billing export'): ImportResult {
  const acc = new UsageAccumulator('gcp-billing');
  for (const { rec, where } of logRecords(text, source, ['rows'])) {
    if (rec === null || typeof rec !== 'object') fail(where('(row)'), 'not a JSON object');
    const service = at(rec, 'service.description');
    if (typeof service !== 'string' || !/Key Management/i.test(service)) {
      acc.skipped++;
      continue;
    }
    const sku = at(rec, 'sku.description');
    if (typeof sku !== 'string') fail(where('sku.description'), 'missing or not a string');
    const cls = classOfSku(sku);
    if (cls === 'storage') {
      acc.skipped++;
      continue;
    }
    if (cls === undefined) fail(where('sku.description'), `unknown Cloud KMS SKU "${sku}"`);
    const amount = at(rec, 'usage.amount');
    const n = typeof amount === 'string' ? Number(amount) : amount;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
      fail(where('usage.amount'), `${JSON.stringify(amount)} is not a non-negative number`);
    }
    const invoice = at(rec, 'invoice.month');
    const period =
      typeof invoice === 'string' && /^\d{6}$/.test(invoice)
        ? `${invoice.slice(0, 4)}-${invoice.slice(4)}`
        : monthOf(at(rec, 'usage_start_time'));
    if (!period) fail(where('usage_start_time'), 'no invoice.month and no usable usage_start_time');
    const name = at(rec, 'resource.global_name') ?? at(rec, 'resource.name');
    const r = typeof name === 'string' ? gcpRef(name) : undefined;
    if (!r) {
      acc.skipped++;
      acc.warn(`${where('resource.global_name')}: no Cloud KMS key name: not attributed to a key`);
      continue;
    }
    acc.add(r.ref, cls, n, period, r.version);
  }
  return acc.result();
}
