import type { ProviderType } from './keyRef.js';

/** Closed set of version states; `compromised` is a flag, not a state. */
export type VersionState = 'enabled' | 'disabled' | 'destroy_scheduled' | 'destroyed';
export const VERSION_STATES: readonly VersionState[] = [
  'enabled',
  'disabled',
  'destroy_scheduled',
  'destroyed',
];

export type Protection = 'software' | 'hsm' | 'external';
export const PROTECTIONS: readonly Protection[] = ['software', 'hsm', 'external'];

export type Algorithm =
  | 'AES_256'
  | 'AES_128'
  | 'RSA_2048'
  | 'RSA_3072'
  | 'RSA_4096'
  | 'EC_P256'
  | 'EC_P384'
  | 'HMAC_256';
export const ALGORITHMS: readonly Algorithm[] = [
  'AES_256',
  'AES_128',
  'RSA_2048',
  'RSA_3072',
  'RSA_4096',
  'EC_P256',
  'EC_P384',
  'HMAC_256',
];

export interface KeyVersion {
  /** Provider's own version id (AWS key material id, GCP version number, Azure version, local "1"...). */
  id: string;
  state: VersionState;
  /** ISO-8601 UTC */
  createdAt: string;
  compromised?: boolean;
  /** Set when state is destroy_scheduled. */
  destroyAt?: string;
  /**
   * Imported (BYOK) material only: when the provider deletes this version's material, after
   * which it cannot be used until the same material is imported again.
   */
  expiresAt?: string;
}

export interface AutoRotation {
  periodDays: number;
  nextRotationAt?: string;
}

/** A key as rekey sees it: one primary, an ordered list of versions (oldest first). */
export interface ManagedKey {
  /** Canonical key ref URI. */
  ref: string;
  providerType: ProviderType;
  /** The configured provider id this key was inventoried from (e.g. `aws-prod`). */
  providerId: string;
  name: string;
  tags: Record<string, string>;
  protection: Protection;
  algorithm: Algorithm;
  enabled: boolean;
  primaryVersion: string;
  versions: KeyVersion[];
  createdAt: string;
  autoRotation?: AutoRotation;
  /**
   * The key material was brought in from outside the provider (BYOK). The provider cannot make
   * new material itself: a rotation imports material from a source (a policy's `byok`).
   */
  imported?: boolean;
}

export function versionOf(key: ManagedKey, id: string): KeyVersion | undefined {
  return key.versions.find((v) => v.id === id);
}

export function primaryOf(key: ManagedKey): KeyVersion {
  const v = versionOf(key, key.primaryVersion);
  if (!v) throw new Error(`key ${key.ref} has no version ${key.primaryVersion}`);
  return v;
}

/** When the primary was created: the age that rotation policies compare against. */
export function lastRotatedAt(key: ManagedKey): string {
  return primaryOf(key).createdAt;
}

/**
 * When a non-primary version stopped being used for new encryptions: the creation time of
 * the first version created after it. Retirement delays count from here.
 */
export function supersededAt(key: ManagedKey, id: string): string | undefined {
  if (id === key.primaryVersion) return undefined;
  const v = versionOf(key, id);
  if (!v) return undefined;
  const later = key.versions
    .filter((o) => o.id !== id && o.createdAt >= v.createdAt && (o.createdAt > v.createdAt || o.id > id))
    .map((o) => o.createdAt)
    .sort();
  return later[0];
}
