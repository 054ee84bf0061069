import type { KeyEvent } from '../../core/domain/keyEvent.js';
import { parseKeyRef } from '../../core/domain/keyRef.js';
import { ValidationError } from '../../core/errors.js';

/**
 * AWS KMS service events as EventBridge delivers them (source `aws.kms`):
 * - `KMS CMK Rotation`: new key material became current (automatic or on-demand);
 * - `KMS Imported Key Material Expiration`: imported material expired and was deleted;
 * - `KMS CMK Deletion`: a key scheduled for deletion was deleted.
 * The first two become rekey KeyEvents; a deletion is a notice (there is nothing to rotate or
 * re-wrap any more: DEKs still under that key can no longer be unwrapped).
 */
export type KmsEventNotice =
  | { kind: 'key_event'; event: KeyEvent }
  | { kind: 'key_deleted'; keyRef: string; at: string; eventId: string };

const KINDS: Record<string, KeyEvent['kind'] | 'deleted'> = {
  'KMS CMK Rotation': 'version_created',
  'KMS Imported Key Material Expiration': 'expired',
  'KMS CMK Deletion': 'deleted',
};

const fail = (field: string, why: string): never => {
  throw new ValidationError(`KMS event: ${field} ${why}`);
};

function str(o: Record<string, unknown>, field: string, path = field): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0) fail(path, 'must be a non-empty string');
  return v as string;
}

const KEY_ID = /^(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/**
 * Parses one EventBridge event from AWS KMS. Other sources and detail types, and malformed
 * fields, are refused with a ValidationError naming the field. The key is taken from
 * `resources[0]` and must agree with `detail.key-id`, `region` and `account`.
 */
export function parseKmsEvent(input: unknown): KmsEventNotice {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    return fail('event', 'must be an object');
  const e = input as Record<string, unknown>;
  const eventId = str(e, 'id');
  if (e.source !== 'aws.kms')
    fail('source', `must be "aws.kms" (got ${JSON.stringify(e.source)?.slice(0, 60)})`);
  const detailType = str(e, 'detail-type');
  const kind = KINDS[detailType];
  if (!kind)
    return fail(
      'detail-type',
      `"${detailType.slice(0, 80)}" is not a KMS key event (${Object.keys(KINDS).join(', ')})`,
    );
  const time = str(e, 'time');
  const t = Date.parse(time);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}T/.test(time)) fail('time', 'must be an ISO-8601 date-time');
  const region = str(e, 'region');
  const account = str(e, 'account');
  if (!/^\d{12}$/.test(account)) fail('account', 'must be a 12-digit account id');
  const resources = e.resources;
  if (!Array.isArray(resources) || resources.length !== 1 || typeof resources[0] !== 'string')
    return fail('resources', 'must hold exactly one key ARN');
  const arn = resources[0] as string;
  const m = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):key\/([A-Za-z0-9-]+)$/.exec(arn);
  if (!m)
    return fail('resources[0]', 'must be a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)');
  const [, , arnRegion, arnAccount, keyId] = m;
  if (arnRegion !== region) fail('region', 'does not match the Region of the key ARN');
  if (arnAccount !== account) fail('account', 'does not match the account of the key ARN');
  if (!KEY_ID.test(keyId!)) fail('resources[0]', 'does not end with a KMS key id');
  const d = e.detail;
  if (d === null || typeof d !== 'object' || Array.isArray(d)) return fail('detail', 'must be an object');
  const detail = d as Record<string, unknown>;
  if (str(detail, 'key-id', 'detail.key-id') !== keyId) fail('detail.key-id', 'does not match the key ARN');
  let keyRef: string;
  try {
    keyRef = parseKeyRef(`aws-kms://${arn}`).uri;
  } catch (err) {
    return fail('resources[0]', `does not name a KMS key: ${(err as Error).message}`);
  }
  const at = new Date(t).toISOString();
  if (kind === 'deleted') return { kind: 'key_deleted', keyRef, at, eventId };
  // Newer events name the key material; rekey's version id of an AWS key is its KeyMaterialId.
  let version: string | undefined;
  const material = detail['key-material-id'];
  if (material !== undefined && material !== null) {
    if (typeof material !== 'string' || !/^[0-9a-f]{64}$/.test(material))
      fail('detail.key-material-id', 'must be 64 hex characters');
    version = material as string;
  }
  return {
    kind: 'key_event',
    event: { provider: 'aws-kms', keyRef, kind, ...(version ? { version } : {}), at, eventId },
  };
}
