import type { RequestClass } from '../../core/cost/types.js';
import { at, awsRef, fail, type ImportResult, logRecords, monthOf, UsageAccumulator } from './common.js';

/**
 * CloudTrail records (`{"Records": [...]}` as delivered to S3, a JSON array, or JSON lines).
 * Only kms.amazonaws.com events count; each is one request on the key in `resources` (for
 * ReEncrypt, the destination key). Cryptographic events are classed by algorithm; other events
 * naming a key (DescribeKey, ...) are `management`; events naming no key are skipped.
 */
const SYMMETRIC = new Set(['GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'VerifyMac']);
const ASYMMETRIC = new Set(['Sign', 'Verify', 'GetPublicKey', 'DeriveSharedSecret']);
const BY_ALGORITHM = new Set(['Encrypt', 'Decrypt', 'ReEncrypt']);
const PAIR = new Set(['GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext']);

export function importCloudTrail(text: string, source = 'CloudTrail'): ImportResult {
  const acc = new UsageAccumulator('cloudtrail');
  for (const { rec, where } of logRecords(text, source, ['Records'])) {
    if (rec === null || typeof rec !== 'object') fail(where('(record)'), 'not a JSON object');
    if (at(rec, 'eventSource') !== 'kms.amazonaws.com') {
      acc.skipped++;
      continue;
    }
    const name = at(rec, 'eventName');
    if (typeof name !== 'string' || !name) fail(where('eventName'), 'missing or not a string');
    const period = monthOf(at(rec, 'eventTime'));
    if (!period) fail(where('eventTime'), `${JSON.stringify(at(rec, 'eventTime'))} is not an ISO-8601 time`);
    const params = (at(rec, 'requestParameters') ?? {}) as Record<string, unknown>;
    let cls: RequestClass;
    if (SYMMETRIC.has(name)) cls = 'symmetric';
    else if (ASYMMETRIC.has(name)) cls = 'asymmetric';
    else if (BY_ALGORITHM.has(name)) {
      const alg = params.encryptionAlgorithm ?? params.destinationEncryptionAlgorithm ?? 'SYMMETRIC_DEFAULT';
      cls = alg === 'SYMMETRIC_DEFAULT' ? 'symmetric' : 'asymmetric';
    } else if (PAIR.has(name)) {
      const spec = params.keyPairSpec;
      if (typeof spec !== 'string') fail(where('requestParameters.keyPairSpec'), `missing on ${name}`);
      cls = spec.startsWith('RSA') ? 'gdkp_rsa' : 'gdkp_ecc';
    } else cls = 'management';

    const resources = at(rec, 'resources');
    if (resources !== undefined && !Array.isArray(resources)) fail(where('resources'), 'not an array');
    const arns = ((resources as unknown[] | undefined) ?? [])
      .map((r) => at(r, 'ARN'))
      .filter((a): a is string => typeof a === 'string')
      .map((a) => awsRef(a))
      .filter((a): a is string => a !== undefined);
    const dest = typeof params.destinationKeyId === 'string' ? awsRef(params.destinationKeyId) : undefined;
    const keyParam = typeof params.keyId === 'string' ? awsRef(params.keyId) : undefined;
    const ref = (dest && arns.includes(dest) ? dest : undefined) ?? arns[0] ?? keyParam;
    if (!ref) {
      acc.skipped++;
      continue;
    }
    acc.add(ref, cls, 1, period);
  }
  return acc.result();
}
