import type { RequestClass } from '../../core/cost/types.js';
import { at, azureRef, fail, type ImportResult, logRecords, monthOf, UsageAccumulator } from './common.js';

/**
 * Key Vault `AuditEvent` resource logs: JSON lines (or `{"records": [...]}` batches) as written
 * to a storage account or Event Hub, or Log Analytics rows (OperationName, id_s, TimeGenerated).
 * Key operations are counted on the key in properties.id; secret and certificate operations are
 * skipped. Azure bills all operations: non-cryptographic key operations are `management`.
 */
const CRYPTO = new Set(['KeyEncrypt', 'KeyDecrypt', 'KeyWrap', 'KeyUnwrap', 'KeySign', 'KeyVerify']);

export function importAzureAudit(text: string, source = 'Key Vault AuditEvent log'): ImportResult {
  const acc = new UsageAccumulator('azure-audit');
  for (const { rec, where } of logRecords(text, source, ['records'])) {
    if (rec === null || typeof rec !== 'object') fail(where('(record)'), 'not a JSON object');
    const category = at(rec, 'category') ?? at(rec, 'Category');
    if (category !== undefined && category !== 'AuditEvent') {
      acc.skipped++;
      continue;
    }
    const op = at(rec, 'operationName') ?? at(rec, 'OperationName');
    if (typeof op !== 'string' || !op) fail(where('operationName'), 'missing or not a string');
    if (!op.startsWith('Key')) {
      acc.skipped++;
      continue;
    }
    const cls: RequestClass = CRYPTO.has(op) ? 'asymmetric' : 'management';
    const time = at(rec, 'time') ?? at(rec, 'TimeGenerated');
    const period = monthOf(time);
    if (!period) fail(where('time'), `${JSON.stringify(time)} is not an ISO-8601 time`);
    const id = at(rec, 'properties.id') ?? at(rec, 'id_s');
    const r = typeof id === 'string' ? azureRef(id) : undefined;
    if (!r) {
      acc.skipped++; // KeyList and other vault-level operations
      continue;
    }
    acc.add(r.ref, cls, 1, period, r.version);
  }
  return acc.result();
}
