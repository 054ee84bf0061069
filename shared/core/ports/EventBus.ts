/**
 * Outgoing events: what rekey did, for other systems to react to (alerting, ticketing, a
 * FinOps pipeline). Adapters deliver them to EventBridge, Event Grid, Pub/Sub or a file.
 *
 * Every event has the same envelope; `detail` depends on `type` and is documented below.
 * Events never carry key material, DEKs, plaintext or secrets: only refs, version ids,
 * counts and times. Times are ISO-8601 UTC strings.
 */

export type RekeyEventType =
  | 'KeyRotated'
  | 'RewrapCompleted'
  | 'VersionRetired'
  | 'PolicyViolation'
  | 'CompromiseContained';

export const REKEY_EVENT_TYPES: readonly RekeyEventType[] = [
  'KeyRotated',
  'RewrapCompleted',
  'VersionRetired',
  'PolicyViolation',
  'CompromiseContained',
];

/** Why a rotation happened. */
export type RotationReason = 'schedule' | 'policy' | 'compromise' | 'manual';

/** A new version became primary. */
export interface KeyRotatedDetail {
  keyRef: string;
  providerId: string;
  previousVersion: string;
  newVersion: string;
  reason: RotationReason;
  /** Policy that asked for it, if any. */
  policy?: string;
  planId?: string;
}

/** Every DEK of one store that was wrapped under older versions now is under `toVersion`. */
export interface RewrapCompletedDetail {
  keyRef: string;
  providerId: string;
  store: string;
  toVersion: string;
  fromVersions: string[];
  rewrapped: number;
  /** DEKs that could not be re-wrapped (left under their old version). */
  failed: number;
  /** DEKs whose new ciphertext was unwrapped again and compared. */
  verified: number;
  /** `server-side` when the provider re-encrypted without releasing the DEK. */
  mode: 'server-side' | 'unwrap-wrap';
  jobId: string;
  startedAt: string;
  durationMs: number;
}

/** A non-primary version left service. */
export interface VersionRetiredDetail {
  keyRef: string;
  providerId: string;
  version: string;
  state: 'disabled' | 'destroy_scheduled' | 'destroyed';
  /** Set when state is destroy_scheduled. */
  destroyAt?: string;
  /** Operators (service identities) whose approvals allowed it. */
  approvedBy?: string[];
}

/** A key breaks a policy and rekey will not (or cannot) fix it by itself. */
export interface PolicyViolationDetail {
  keyRef: string;
  providerId: string;
  policy: string;
  /** Finding kind, e.g. `rotation_overdue`, `protection_mismatch`, `over_budget`. */
  rule: string;
  severity: 'info' | 'warning' | 'critical';
  message: string;
}

/** A compromised version no longer protects any DEK and is disabled. */
export interface CompromiseContainedDetail {
  keyRef: string;
  providerId: string;
  compromisedVersion: string;
  newVersion: string;
  /** Id of the `key.compromised` event that started it (compromise handling is idempotent by it). */
  incidentId: string;
  reportedAt: string;
  containedAt: string;
  /** containedAt - reportedAt. */
  timeToContainMs: number;
  rewrapped: number;
}

export interface RekeyEventDetails {
  KeyRotated: KeyRotatedDetail;
  RewrapCompleted: RewrapCompletedDetail;
  VersionRetired: VersionRetiredDetail;
  PolicyViolation: PolicyViolationDetail;
  CompromiseContained: CompromiseContainedDetail;
}

interface EventOf<T extends RekeyEventType> {
  type: T;
  /** Unique and stable: consumers de-duplicate on it (a retried publish may deliver twice). */
  id: string;
  /** When it happened (not when it was published). */
  time: string;
  detail: RekeyEventDetails[T];
}

export type RekeyEvent = { [T in RekeyEventType]: EventOf<T> }[RekeyEventType];

export interface EventBus {
  /**
   * Delivers the events, in order per batch. Resolves once every event was accepted; rejects
   * (a ProviderError naming the events that failed) if any could not be delivered after the
   * adapter's retries. Delivery is at least once: a retry may repeat accepted events.
   */
  publish(events: RekeyEvent[]): Promise<void>;
}
