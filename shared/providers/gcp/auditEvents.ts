import type { KeyEvent } from '../../core/domain/keyEvent.js';
import { parseKeyRef } from '../../core/domain/keyRef.js';
import { ValidationError } from '../../core/errors.js';

/** The CloudEvent type Eventarc delivers for Cloud Audit Logs entries. */
export const AUDIT_LOG_WRITTEN = 'google.cloud.audit.log.v1.written';
export const KMS_SERVICE = 'cloudkms.googleapis.com';

/**
 * Cloud KMS methods (as audit logs name them) after which DEKs may sit under a version that is
 * no longer the primary: a new version (automatic rotation creates one and makes it primary)
 * or a new primary. Both are, for rekey, "a new version to re-wrap to".
 */
export const KMS_KEY_METHODS: Record<string, KeyEvent['kind']> = {
  CreateCryptoKeyVersion: 'version_created',
  UpdateCryptoKeyPrimaryVersion: 'version_created',
};

export type GcpAuditOutcome = { event: KeyEvent } | { ignored: string };

const fail = (field: string, why: string): never => {
  throw new ValidationError(`Cloud Audit Logs event: ${field} ${why}`);
};

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function str(o: Record<string, unknown>, field: string, path: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0) fail(path, 'must be a non-empty string');
  return v as string;
}

const KEY_NAME =
  /^(projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+)(?:\/cryptoKeyVersions\/([0-9]+))?$/;

/**
 * Reads one Eventarc CloudEvent carrying a Cloud KMS audit log entry (`data` is the LogEntry:
 * `protoPayload` an AuditLog with serviceName, methodName, resourceName, status, request,
 * response). Returns the key event rekey acts on, or why the entry is of no interest (another
 * method, a failed call). Malformed events are refused with a ValidationError naming the field.
 */
export function parseKmsAuditEvent(input: unknown): GcpAuditOutcome {
  if (!isObject(input)) return fail('event', 'must be an object');
  if (input.specversion !== undefined && input.specversion !== '1.0') fail('specversion', 'must be "1.0"');
  const type = str(input, 'type', 'type');
  if (type !== AUDIT_LOG_WRITTEN) fail('type', `"${type.slice(0, 100)}" is not ${AUDIT_LOG_WRITTEN}`);
  const eventId = str(input, 'id', 'id');
  let data = input.data;
  if (typeof data === 'string' || Buffer.isBuffer(data)) {
    try {
      data = JSON.parse(data.toString());
    } catch {
      return fail('data', 'is not JSON');
    }
  }
  if (!isObject(data)) return fail('data', 'must be a LogEntry object');
  const payload = data.protoPayload;
  if (!isObject(payload)) return fail('data.protoPayload', 'must be an AuditLog object');
  const service = str(payload, 'serviceName', 'data.protoPayload.serviceName');
  if (service !== KMS_SERVICE)
    fail('data.protoPayload.serviceName', `is ${service.slice(0, 100)}, not ${KMS_SERVICE}`);
  const method = str(payload, 'methodName', 'data.protoPayload.methodName').replace(
    /^google\.cloud\.kms\.v1\.KeyManagementService\./,
    '',
  );
  const kind = KMS_KEY_METHODS[method];
  if (!kind) return { ignored: `${method.slice(0, 100)} does not change which version DEKs should be under` };
  const st = payload.status;
  if (isObject(st) && st.code !== undefined && st.code !== 0) {
    return { ignored: `the ${method} call failed (status ${String(st.code)})` };
  }
  const resourceName = str(payload, 'resourceName', 'data.protoPayload.resourceName');
  const m = KEY_NAME.exec(resourceName);
  if (!m) return fail('data.protoPayload.resourceName', 'must name a Cloud KMS crypto key');
  let keyRef: string;
  try {
    keyRef = parseKeyRef(`gcp-kms://${m[1]}`).uri;
  } catch (e) {
    return fail('data.protoPayload.resourceName', `does not name a Cloud KMS key: ${(e as Error).message}`);
  }
  const version = versionOf(method, payload, m[1]!) ?? m[2];
  const at = timeOf(data.timestamp) ?? timeOf(input.time) ?? fail('time', 'must be an ISO-8601 date-time');
  return {
    event: {
      provider: 'gcp-kms',
      keyRef,
      kind,
      ...(version ? { version } : {}),
      at,
      eventId,
    },
  };
}

/** The version the call created or promoted, when the log entry carries it. */
function versionOf(method: string, payload: Record<string, unknown>, keyName: string): string | undefined {
  const fromName = (v: unknown) => {
    if (typeof v !== 'string') return undefined;
    const m = KEY_NAME.exec(v);
    return m && m[1] === keyName ? m[2] : undefined;
  };
  const request = isObject(payload.request) ? payload.request : {};
  const response = isObject(payload.response) ? payload.response : {};
  if (method === 'CreateCryptoKeyVersion') return fromName(response.name);
  const id = request.cryptoKeyVersionId;
  if (typeof id === 'string' && /^[0-9]+$/.test(id)) return id;
  return fromName(isObject(response.primary) ? response.primary.name : undefined);
}

function timeOf(v: unknown): string | undefined {
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}T/.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}
