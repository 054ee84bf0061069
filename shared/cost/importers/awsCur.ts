import type { RequestClass } from '../../core/cost/types.js';
import { CsvTable, parseCsv } from '../csv.js';
import { awsRef, type ImportResult, monthOf, UsageAccumulator } from './common.js';

/**
 * AWS Cost and Usage Report 2.0 (CSV). KMS request lines carry the key ARN in
 * line_item_resource_id; the usage type says the request class (after a Region prefix such as
 * `USE2-`). Key storage lines (`KMS-Keys`) are skipped: rekey prices storage from the inventory.
 */
export function classOfUsageType(usageType: string): RequestClass | 'storage' | undefined {
  if (!/KMS-/i.test(usageType)) return undefined;
  if (!/Requests/i.test(usageType)) return /Keys/i.test(usageType) ? 'storage' : undefined;
  if (/GenerateDataKeyPair/i.test(usageType)) {
    if (/RSA/i.test(usageType)) return 'gdkp_rsa';
    if (/EC/i.test(usageType)) return 'gdkp_ecc';
    return undefined;
  }
  if (/RSA[-_]?2048/i.test(usageType)) return 'rsa_2048';
  if (/Asymmetric|ECC|RSA/i.test(usageType)) return 'asymmetric';
  return 'symmetric';
}

export function importAwsCur(text: string, source = 'CUR'): ImportResult {
  const acc = new UsageAccumulator('aws-cur');
  const records = parseCsv(text, source);
  const head = records.next();
  if (head.done) return acc.result();
  const t: CsvTable = new CsvTable(source, head.value);
  const cProduct = t.require('line_item_product_code');
  const cType = t.require('line_item_usage_type');
  const cAmount = t.require('line_item_usage_amount');
  const cResource = t.require('line_item_resource_id');
  const cStart = t.require('line_item_usage_start_date');
  const cItemType = t.find('line_item_line_item_type');
  for (const rec of records) {
    const product = t.cell(rec, cProduct);
    if (product !== 'awskms') {
      acc.skipped++;
      continue;
    }
    if (cItemType !== undefined) {
      const it = t.cell(rec, cItemType);
      if (it !== 'Usage' && it !== 'DiscountedUsage') {
        acc.skipped++;
        continue;
      }
    }
    const usageType = t.cell(rec, cType);
    const cls = classOfUsageType(usageType);
    if (cls === 'storage') {
      acc.skipped++;
      continue;
    }
    if (cls === undefined) {
      t.fail(rec, cType, `unknown KMS usage type "${usageType}"`);
    }
    const raw = t.cell(rec, cAmount);
    const amount = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(amount) || amount < 0) {
      t.fail(rec, cAmount, `"${raw}" is not a non-negative number`);
    }
    const period = monthOf(t.cell(rec, cStart));
    if (!period) t.fail(rec, cStart, `"${t.cell(rec, cStart)}" is not a date`);
    const resource = t.cell(rec, cResource);
    const ref = awsRef(resource);
    if (!ref) {
      acc.skipped++;
      acc.warn(
        `${source}: line ${rec.line}: ${usageType} without a key ARN in line_item_resource_id: not attributed to a key`,
      );
      continue;
    }
    acc.add(ref, cls, amount, period);
  }
  return acc.result();
}
