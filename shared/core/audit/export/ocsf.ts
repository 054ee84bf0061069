import type { AuditRecord } from '../../ports/StateStore.js';
import { type ActivityId, cloudOf, isFailure, isKeyTarget, meaningOf, type SeverityId } from './actions.js';
import { redactDetails } from './redact.js';

/** The OCSF schema version events claim. */
export const OCSF_VERSION = '1.1.0';

export const OCSF_CLASSES = {
  api_activity: {
    class_uid: 6003,
    class_name: 'API Activity',
    category_uid: 6,
    category_name: 'Application Activity',
  },
  entity_management: {
    class_uid: 3004,
    class_name: 'Entity Management',
    category_uid: 3,
    category_name: 'Identity & Access Management',
  },
} as const;

const ACTIVITY_NAMES: Record<ActivityId, string> = {
  1: 'Create',
  2: 'Read',
  3: 'Update',
  4: 'Delete',
  99: 'Other',
};
const SEVERITY_NAMES: Record<SeverityId, string> = { 1: 'Informational', 2: 'Low', 3: 'Medium', 4: 'High' };

export interface OcsfOptions {
  /** rekey's version: metadata.product.version. */
  productVersion: string;
  /** Host rekey ran on, if known: src_endpoint.hostname. */
  hostname?: string;
  /** Whether the chain verified up to this record (carried in unmapped). */
  chainValid?: boolean;
}

export type OcsfEvent = Record<string, unknown>;

function keyName(ref: string): string {
  const cut = ref.replace(/^pkcs11:/, '').split(/[/;:]/);
  return cut[cut.length - 1] || ref;
}

/** Maps one audit record onto an OCSF API Activity (6003) or Entity Management (3004) event. */
export function toOcsf(r: AuditRecord, opts: OcsfOptions): OcsfEvent {
  const m = meaningOf(r);
  const cls = OCSF_CLASSES[m.ocsfClass];
  const failed = isFailure(r);
  const { value: details, removed } = redactDetails(r.details);
  const planId = typeof r.details.planId === 'string' ? r.details.planId : undefined;
  const cloud = cloudOf(r.target);
  const time = Date.parse(r.ts);

  const event: OcsfEvent = {
    activity_id: m.activityId,
    activity_name: ACTIVITY_NAMES[m.activityId],
    category_uid: cls.category_uid,
    category_name: cls.category_name,
    class_uid: cls.class_uid,
    class_name: cls.class_name,
    type_uid: cls.class_uid * 100 + m.activityId,
    type_name: `${cls.class_name}: ${ACTIVITY_NAMES[m.activityId]}`,
    severity_id: m.severityId,
    severity: SEVERITY_NAMES[m.severityId],
    status_id: failed ? 2 : 1,
    status: failed ? 'Failure' : 'Success',
    time,
    message: r.target ? `${m.name}: ${r.target}` : m.name,
    metadata: {
      version: OCSF_VERSION,
      product: { name: 'rekey', vendor_name: 'rekey', version: opts.productVersion },
      uid: r.hash,
      sequence: r.seq,
      log_name: 'rekey-audit',
      ...(planId ? { correlation_uid: planId } : {}),
      ...(cloud ? { profiles: ['cloud'] } : {}),
    },
    actor: { user: { name: r.actor || 'unknown', uid: r.actor || 'unknown' }, app_name: 'rekey' },
    ...(cloud ? { cloud } : {}),
    unmapped: {
      action: r.action,
      details,
      prevHash: r.prevHash,
      hash: r.hash,
      ...(opts.chainValid !== undefined ? { chainValid: opts.chainValid } : {}),
      ...(removed.length ? { redacted: removed } : {}),
    },
  };
  if (failed && typeof r.details.error === 'string') event.status_detail = r.details.error;

  if (m.ocsfClass === 'entity_management') {
    const version = r.details.version ?? r.details.primary ?? r.details.toVersion;
    event.entity = {
      uid: r.target ?? 'unknown',
      name: r.target ? keyName(r.target) : 'unknown',
      type: 'Encryption Key',
      ...(typeof version === 'string' ? { version } : {}),
    };
  } else {
    event.api = { operation: r.action || 'unknown', service: { name: 'rekey' } };
    event.src_endpoint = opts.hostname ? { hostname: opts.hostname } : { svc_name: 'rekey' };
    if (r.target) {
      event.resources = [
        { uid: r.target, type: isKeyTarget(r.target) ? 'Encryption Key' : r.action.split('.')[0] },
      ];
    }
  }
  return event;
}
