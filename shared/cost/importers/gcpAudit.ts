import type { RequestClass } from '../../core/cost/types.js';
import { at, fail, gcpRef, type ImportResult, logRecords, monthOf, UsageAccumulator } from './common.js';

/**
 * Cloud Audit Logs (Data Access) entries for cloudkms.googleapis.com, as JSON lines or the JSON
 * array `gcloud logging read --format=json` prints. Each entry is one operation on
 * protoPayload.resourceName.
 */
const SYMMETRIC = new Set(['Encrypt', 'Decrypt', 'RawEncrypt', 'RawDecrypt', 'MacSign', 'MacVerify']);
const ASYMMETRIC = new Set(['AsymmetricSign', 'AsymmetricDecrypt', 'GetPublicKey', 'Decapsulate']);

export function importGcpAudit(text: string, source = 'GCP audit log'): ImportResult {
  const acc = new UsageAccumulator('gcp-audit');
  for (const { rec, where } of logRecords(text, source, ['entries'])) {
    if (rec === null || typeof rec !== 'object') fail(where('(entry)'), 'not a JSON object');
    const service = at(rec, 'protoPayload.serviceName');
    if (service !== 'cloudkms.googleapis.com') {
      acc.skipped++;
      continue;
    }
    const method = at(rec, 'protoPayload.methodName');
    if (typeof method !== 'string' || !method)
      fail(where('protoPayload.methodName'), 'missing or not a string');
    const short = method.slice(method.lastIndexOf('.') + 1);
    const cls: RequestClass = SYMMETRIC.has(short)
      ? 'symmetric'
      : ASYMMETRIC.has(short)
        ? 'asymmetric'
        : 'management';
    const period = monthOf(at(rec, 'timestamp') ?? at(rec, 'receiveTimestamp'));
    if (!period) fail(where('timestamp'), `${JSON.stringify(at(rec, 'timestamp'))} is not an ISO-8601 time`);
    const name = at(rec, 'protoPayload.resourceName');
    if (typeof name !== 'string') fail(where('protoPayload.resourceName'), 'missing or not a string');
    const r = gcpRef(name);
    if (!r) {
      acc.skipped++; // key rings, import jobs, locations
      continue;
    }
    acc.add(r.ref, cls, 1, period, r.version);
  }
  return acc.result();
}
