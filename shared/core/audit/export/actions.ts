import type { AuditRecord } from '../../ports/StateStore.js';

/**
 * What each rekey audit action means to a SIEM: which OCSF class carries it, the activity,
 * how severe it is and whether it records a failure. Key lifecycle changes are Entity
 * Management events on the key; the rest is API Activity of rekey itself. Unknown actions
 * (added later, or by another tool) export as API Activity "Other".
 */
export type OcsfClass = 'api_activity' | 'entity_management';
/** OCSF activity ids shared by both classes: 1 Create, 2 Read, 3 Update, 4 Delete, 99 Other. */
export type ActivityId = 1 | 2 | 3 | 4 | 99;
/** OCSF severity_id: 1 Informational, 2 Low, 3 Medium, 4 High. */
export type SeverityId = 1 | 2 | 3 | 4;

export interface ActionMeaning {
  ocsfClass: OcsfClass;
  activityId: ActivityId;
  severityId: SeverityId;
  /** A short human-readable name (CEF Name, OCSF message). */
  name: string;
  failure?: boolean;
}

export const ACTION_MEANINGS: Readonly<Record<string, ActionMeaning>> = {
  'key.created': { ocsfClass: 'entity_management', activityId: 1, severityId: 1, name: 'Key created' },
  'key.rotated': { ocsfClass: 'entity_management', activityId: 3, severityId: 1, name: 'Key rotated' },
  'key.rotation_already_done': {
    ocsfClass: 'entity_management',
    activityId: 2,
    severityId: 1,
    name: 'Key rotation already done',
  },
  'key.auto_rotation_set': {
    ocsfClass: 'entity_management',
    activityId: 3,
    severityId: 1,
    name: 'Key automatic rotation set',
  },
  'version.disabled': {
    ocsfClass: 'entity_management',
    activityId: 3,
    severityId: 2,
    name: 'Key version disabled',
  },
  'version.destroy_scheduled': {
    ocsfClass: 'entity_management',
    activityId: 4,
    severityId: 3,
    name: 'Key version destruction scheduled',
  },
  'version.destroy_awaiting_approval': {
    ocsfClass: 'entity_management',
    activityId: 99,
    severityId: 2,
    name: 'Key version destruction awaiting approval',
  },
  'rewrap.completed': {
    ocsfClass: 'entity_management',
    activityId: 3,
    severityId: 1,
    name: 'Data keys re-wrapped',
  },
  'demo.key_seeded': {
    ocsfClass: 'entity_management',
    activityId: 3,
    severityId: 1,
    name: 'Demo key seeded',
  },
  'plan.created': { ocsfClass: 'api_activity', activityId: 1, severityId: 1, name: 'Plan created' },
  'apply.started': { ocsfClass: 'api_activity', activityId: 99, severityId: 1, name: 'Plan apply started' },
  'apply.finished': { ocsfClass: 'api_activity', activityId: 99, severityId: 1, name: 'Plan apply finished' },
  'action.failed': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 3,
    name: 'Plan action failed',
    failure: true,
  },
  'action.skipped': { ocsfClass: 'api_activity', activityId: 99, severityId: 2, name: 'Plan action skipped' },
  'lease.taken_over': { ocsfClass: 'api_activity', activityId: 3, severityId: 2, name: 'Lease taken over' },
  'workspace.initialised': {
    ocsfClass: 'api_activity',
    activityId: 1,
    severityId: 1,
    name: 'Workspace initialised',
  },
  // Compromise response and dual control (docs/governance.md).
  'version.compromised': {
    ocsfClass: 'entity_management',
    activityId: 3,
    severityId: 4,
    name: 'Key version marked compromised',
  },
  'version.disable_awaiting_approval': {
    ocsfClass: 'entity_management',
    activityId: 99,
    severityId: 2,
    name: 'Key version disable awaiting approval',
  },
  'incident.opened': {
    ocsfClass: 'api_activity',
    activityId: 1,
    severityId: 4,
    name: 'Compromise incident opened',
  },
  'incident.contained': {
    ocsfClass: 'api_activity',
    activityId: 3,
    severityId: 3,
    name: 'Compromise incident contained',
  },
  'incident.step_failed': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 4,
    name: 'Compromise response step failed',
    failure: true,
  },
  'incident.refused': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 2,
    name: 'Compromise report refused',
    failure: true,
  },
  'incident.event_accepted': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 3,
    name: 'Compromise event accepted',
  },
  'incident.event_refused': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 3,
    name: 'Compromise event refused',
    failure: true,
  },
  'approval.requested': {
    ocsfClass: 'api_activity',
    activityId: 1,
    severityId: 1,
    name: 'Approval requested',
  },
  'approval.granted': { ocsfClass: 'api_activity', activityId: 3, severityId: 2, name: 'Approval granted' },
  'approval.approved': {
    ocsfClass: 'api_activity',
    activityId: 3,
    severityId: 2,
    name: 'Approval quorum reached',
  },
  'approval.denied': { ocsfClass: 'api_activity', activityId: 3, severityId: 2, name: 'Approval denied' },
  'approval.used': { ocsfClass: 'api_activity', activityId: 3, severityId: 2, name: 'Approval used' },
  'approval.refused': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 3,
    name: 'Approval refused',
    failure: true,
  },
  'approval.void': { ocsfClass: 'api_activity', activityId: 99, severityId: 2, name: 'Approval void' },
  'approval.quorum_missing': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 2,
    name: 'Action refused without approvals',
    failure: true,
  },
  'approval.integrity_failed': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 4,
    name: 'Approval not vouched for by the audit log',
    failure: true,
  },
  'approval.auth_failed': {
    ocsfClass: 'api_activity',
    activityId: 99,
    severityId: 3,
    name: 'Approvals API authentication failed',
    failure: true,
  },
  'config.accepted': { ocsfClass: 'api_activity', activityId: 3, severityId: 2, name: 'Config accepted' },
  'audit.checkpoint': {
    ocsfClass: 'api_activity',
    activityId: 1,
    severityId: 1,
    name: 'Audit checkpoint signed',
  },
};

const UNKNOWN: ActionMeaning = { ocsfClass: 'api_activity', activityId: 99, severityId: 1, name: '' };

export function meaningOf(r: AuditRecord): ActionMeaning {
  // Own properties only: an action named `__proto__` or `constructor` is just an unknown action.
  if (Object.hasOwn(ACTION_MEANINGS, r.action)) return ACTION_MEANINGS[r.action]!;
  return { ...UNKNOWN, name: r.action || 'unknown action' };
}

/** An apply that did not complete, or an action record, counts as a failure. */
export function isFailure(r: AuditRecord): boolean {
  if (meaningOf(r).failure) return true;
  const status = r.details.status;
  return r.action === 'apply.finished' && (status === 'failed' || status === 'partial');
}

/** The cloud behind a key ref, for OCSF's cloud object. */
export function cloudOf(target: string | null): { provider: string; region?: string } | undefined {
  if (!target) return undefined;
  const aws = /^aws-kms:\/\/arn:[^:]+:kms:([^:]+):/.exec(target);
  if (aws) return { provider: 'AWS', region: aws[1]! };
  const gcp = /^gcp-kms:\/\/projects\/[^/]+\/locations\/([^/]+)\//.exec(target);
  if (gcp) return { provider: 'GCP', region: gcp[1]! };
  if (target.startsWith('azure-kv://')) return { provider: 'Azure' };
  return undefined;
}

/** Whether the record's target is a key ref (as opposed to a plan id, lease name or folder). */
export function isKeyTarget(target: string | null): boolean {
  return !!target && /^(aws-kms|gcp-kms|azure-kv|local):\/\/|^pkcs11:/.test(target);
}
