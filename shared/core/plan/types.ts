import type { Duration } from '../domain/duration.js';
import type { ImportWrapAlgorithm } from '../ports/KeyProvider.js';

/** What evaluation found about a key, before anything is decided. */
export type FindingKind =
  | 'rotation_due'
  | 'rotation_not_due'
  | 'outside_window'
  | 'auto_rotation_mismatch'
  | 'rewrap_pending'
  | 'rewrap_overdue'
  | 'version_retirable'
  | 'version_destroyable'
  | 'protection_mismatch'
  | 'algorithm_mismatch'
  | 'unmanaged_key'
  | 'shadowed_policy'
  | 'key_disabled'
  | 'compromised_version'
  | 'version_limit'
  | 'material_expiring'
  | 'byok_source_missing';

export type Severity = 'info' | 'warning' | 'critical';

export interface Finding {
  kind: FindingKind;
  severity: Severity;
  keyRef: string;
  provider?: string;
  policy?: string;
  version?: string;
  message: string;
}

interface ActionBase {
  keyRef: string;
  /** Configured provider id the key belongs to. */
  provider: string;
  policy: string;
  /** Why this action is in the plan, in one sentence a person can read. */
  reason: string;
  /** What the action does to the bill, from the price catalog (absent without a catalog). */
  costDelta?: CostDelta;
}

export interface CostDelta {
  /** Change of the monthly bill once done; null when a price is unknown (never guessed as 0). */
  monthly: number | null;
  /** One-off charge (a rotation fee, the requests of a re-wrap). */
  oneOff: number | null;
  currency: string;
  catalogVersion: string;
  explanation: string;
}

/** Create a new version and make it primary, unless the primary already moved on. */
export interface RotateAction extends ActionBase {
  type: 'rotate';
  /** Precondition: the primary when the plan was made. If it changed, the rotation already happened. */
  expectPrimary: string;
  /**
   * The key's material is imported: the new version is new material from this source,
   * imported (BYOK), rather than material the provider makes.
   */
  byok?: {
    /** Provider id of the material source. */
    source: string;
    algorithm: ImportWrapAlgorithm;
    /** ISO-8601 duration: the new material expires this long after its import. */
    expiresAfter?: string;
  };
}

/** Set the provider's native schedule. */
export interface SetAutoRotationAction extends ActionBase {
  type: 'set_auto_rotation';
  periodDays: number | null;
}

/** Move DEKs from older versions to the primary as it stands when the action runs. */
export interface RewrapAction extends ActionBase {
  type: 'rewrap';
  stores: string[];
  /** Versions to move away from; empty means every non-primary version. */
  fromVersions: string[];
  /** DEKs per store and version when the plan was made (informational). */
  estimatedDeks: number;
  verify: 'full' | 'none' | { sample: number };
  batchSize: number;
  ratePerSecond?: number;
}

/** Disable a version once nothing references it. */
export interface DisableVersionAction extends ActionBase {
  type: 'disable_version';
  /** A literal version id, or `previous-primary`: the primary the rotate action of this plan replaces. */
  version: string;
}

export interface ScheduleDestroyAction extends ActionBase {
  type: 'schedule_destroy';
  version: string;
  delayDays: number;
  approvalsRequired: number;
}

export type PlanAction =
  | RotateAction
  | SetAutoRotationAction
  | RewrapAction
  | DisableVersionAction
  | ScheduleDestroyAction;

export type ActionType = PlanAction['type'];

export interface Plan {
  id: string;
  createdAt: string;
  /** Digest of the config that produced it. */
  configDigest: string;
  inventoryId: string;
  actions: PlanAction[];
  findings: Finding[];
}

export type ActionStatus =
  | 'pending'
  | 'running'
  | 'done'
  | 'already_done'
  | 'skipped'
  | 'awaiting_approval'
  /** Re-wrap queued for workers; this and the key's later actions resume on a later apply. */
  | 'awaiting_rewrap'
  | 'failed';

export interface ActionRecord {
  planId: string;
  index: number;
  status: ActionStatus;
  attempts: number;
  updatedAt: string;
  /** Result details (new version id, DEK counts...). Never key material. */
  result?: Record<string, unknown>;
  error?: string;
}

export type { Duration };
