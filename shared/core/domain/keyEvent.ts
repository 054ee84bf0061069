import type { ProviderType } from './keyRef.js';

/**
 * A provider's notification about a key, in one shape whatever the provider: Azure Event Grid
 * (`KeyNewVersionCreated`, `KeyNearExpiry`, `KeyExpired`), AWS EventBridge (`KMS CMK Rotation`),
 * GCP audit-log events. Adapters parse and validate their own envelopes into this.
 */
export interface KeyEvent {
  provider: ProviderType;
  /** Canonical key ref. */
  keyRef: string;
  kind: 'version_created' | 'near_expiry' | 'expired';
  /** The version the event is about, when the provider says. */
  version?: string;
  /** When it happened (ISO-8601). */
  at: string;
  /** The provider's event id: delivery is at least once, so the same id may arrive again. */
  eventId: string;
}
