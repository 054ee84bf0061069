import { CsvTable, parseCsv } from '../csv.js';
import { type ImportResult, monthOf, UsageAccumulator } from './common.js';

/**
 * Azure Cost Management export (cost details CSV). Azure bills Key Vault per vault, not per key:
 * operations lines become counters on the vault, `azure-kv://<vault>.vault.azure.net`, which
 * match no key and are reported as unmatched usage. Per-key counts come from AuditEvent logs.
 * Key, rotation and pool lines are skipped (priced from the inventory).
 */
export function importAzureCost(text: string, source = 'Azure cost export'): ImportResult {
  const acc = new UsageAccumulator('azure-cost');
  const records = parseCsv(text, source);
  const head = records.next();
  if (head.done) return acc.result();
  const t: CsvTable = new CsvTable(source, head.value);
  const cDate = t.require('Date', 'UsageDate', 'BillingPeriodStartDate');
  const cResource = t.require('ResourceId', 'InstanceId', 'ResourceUri');
  const cCategory = t.require('MeterCategory');
  const cMeter = t.require('MeterName');
  const cQty = t.require('Quantity');
  const cUnit = t.find('UnitOfMeasure');
  for (const rec of records) {
    if (t.cell(rec, cCategory) !== 'Key Vault') {
      acc.skipped++;
      continue;
    }
    const meter = t.cell(rec, cMeter);
    if (!/Operations/i.test(meter)) {
      acc.skipped++;
      continue;
    }
    const raw = t.cell(rec, cQty);
    const q = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(q) || q < 0)
      t.fail(rec, cQty, `"${raw}" is not a non-negative number`);
    let scale = 1;
    if (cUnit !== undefined) {
      const unit = t.cell(rec, cUnit).trim();
      const m = /^(\d+)\s*(K)?(?:\s|$)/i.exec(unit);
      if (!m) t.fail(rec, cUnit, `unit of measure "${unit}" is not a count such as "10K" or "1"`);
      scale = Number(m[1]) * (m[2] ? 1000 : 1);
    }
    const period = monthOf(t.cell(rec, cDate));
    if (!period) t.fail(rec, cDate, `"${t.cell(rec, cDate)}" is not a date`);
    const resource = t.cell(rec, cResource);
    const vault = /\/providers\/Microsoft\.KeyVault\/vaults\/([^/]+)$/i.exec(resource);
    if (!vault) t.fail(rec, cResource, `"${resource}" is not a Key Vault resource id`);
    const cls = /Advanced/i.test(meter) ? 'asymmetric' : 'symmetric';
    acc.add(`azure-kv://${vault[1]!.toLowerCase()}.vault.azure.net`, cls, q * scale, period);
  }
  return acc.result();
}
