import type { KeyVersion, ManagedKey } from '../domain/key.js';
import type { KeyRef, ProviderType } from '../domain/keyRef.js';

/** Caller context bound to a wrapped DEK (AAD / encryption context). Must match on unwrap. */
export type WrapContext = Record<string, string>;

/** A DEK wrapped under one key version. The version is carried beside the ciphertext. */
export interface Wrapped {
  version: string;
  ciphertext: Uint8Array;
}

/** One DEK for a batched re-wrap. */
export interface RewrapItem {
  wrapped: Wrapped;
  ctx: WrapContext;
}

/** Per-item outcome of a batched re-wrap: a bad item is reported, never fails the batch. */
export type RewrapItemResult =
  | { ok: true; wrapped: Wrapped }
  | { ok: false; error: { code: string; providerCode?: string; message: string; retryable: boolean } };

export interface ProviderCapabilities {
  /** Native automatic rotation and its allowed period, in days; absent if the provider has none. */
  autoRotation?: { minDays: number; maxDays: number };
  /** rewrap() runs server-side or inside the HSM: the DEK never reaches rekey in clear. */
  serverSideRewrap: boolean;
  /** The caller can choose which version is primary. */
  choosePrimary: boolean;
  /** Allowed waiting period for scheduled destruction, in days. */
  destroyDelayDays: { min: number; max: number };
  /** lastUsed() is available. */
  lastUsed: boolean;
  /** Hard limit on versions per key, if any. */
  maxVersions?: number;
  /** Hard limit on on-demand rotations per key, if any. */
  maxOnDemandRotations?: number;
  /**
   * Whether a single version can be disabled or scheduled for destruction. Absent means both.
   * AWS KMS: neither (it acts on whole keys); Azure Key Vault: disable only (versions cannot be deleted).
   */
  versionControl?: { disable: boolean; destroy: boolean };
  /** Key material can be brought in from outside (BYOK), wrapped by one of these schemes. */
  import?: { algorithms: ImportWrapAlgorithm[] };
}

/**
 * How key material travels from a customer HSM into a cloud KMS:
 * - `rsa-oaep-sha1`: the AES-256 material encrypted directly with RSA-OAEP (SHA-1).
 * - `rsa-aes-kwp-sha1`: an ephemeral AES-256 key encrypted with RSA-OAEP (SHA-1), followed by
 *   the material wrapped under that key with AES key wrap with padding (RFC 5649). AWS calls it
 *   RSA_AES_KEY_WRAP_SHA_1, Google RSA_OAEP_*_SHA1_AES_256, Azure CKM_RSA_AES_KEY_WRAP.
 */
export type ImportWrapAlgorithm = 'rsa-oaep-sha1' | 'rsa-aes-kwp-sha1';

/** What a provider hands out so material can be wrapped for import into one key. */
export interface ImportParameters {
  /** Opaque to rekey: the AWS import token, the GCP import job name, the Azure KEK id. */
  importToken: string;
  /** The RSA wrapping public key, SubjectPublicKeyInfo DER. */
  wrappingPublicKey: Uint8Array;
  algorithm: ImportWrapAlgorithm;
  /** When the import token or job stops being accepted, if it expires. */
  expiresAt: string | null;
}

/** Where a key can be recovered from if the place it lives is lost (disaster recovery). */
export interface RecoveryInfo {
  /** Where the key material is served from: regions, locations, HSM tokens, files. */
  locations: string[];
  /** Independent copies outside those locations, or the way the service keeps them. */
  copies: { kind: 'replica' | 'multi-region-location' | 'paired-region' | 'backup'; location: string; detail: string }[];
  /** What protects the key from deletion (soft delete, waiting period), if anything. */
  deletionProtection: string | null;
  /** What rekey cannot see and an operator must confirm (out-of-band backups). */
  notes: string[];
}

/** The HSM side of BYOK: wraps a key it holds for transport, without exposing it in clear. */
export interface KeyMaterialSource {
  exportWrapped(
    source: KeyRef,
    wrappingPublicKey: Uint8Array,
    algorithm: ImportWrapAlgorithm,
  ): Promise<Uint8Array>;
  /**
   * Makes new exportable AES-256 material inside the source, named `label`, and returns its
   * ref. Optional: a source without it can export existing material only (rotation of an
   * imported key needs it).
   */
  generateMaterial?(spec: { label: string }): Promise<KeyRef>;
}

export interface Page<T> {
  items: T[];
  /** Opaque cursor for the next page; null when done. */
  cursor: string | null;
}

/** Which keys to list. Providers interpret fields they understand and ignore none silently. */
export interface ListScope {
  /** Only keys whose name matches this prefix (optional optimisation). */
  namePrefix?: string;
  pageSize?: number;
}

/**
 * A key management system. Implementations translate their own errors into ProviderError at
 * this boundary and never log key material or plaintext.
 */
export interface KeyProvider {
  /** Configured provider id (from the config file), e.g. `local-dev`. */
  readonly id: string;
  readonly type: ProviderType;
  capabilities(): ProviderCapabilities;
  /**
   * Capabilities for one key, where they differ from the provider's (an AWS alias chain can
   * retire versions one by one, imported material has no native schedule...). Optional: absent,
   * every key has capabilities().
   */
  capabilitiesFor?(key: ManagedKey): ProviderCapabilities;
  listKeys(scope: ListScope, cursor: string | null): Promise<Page<ManagedKey>>;
  getKey(ref: KeyRef): Promise<ManagedKey>;
  /** Creates a new version and makes it primary. */
  rotate(ref: KeyRef): Promise<KeyVersion>;
  /** Sets (or, with null, removes) the native rotation schedule. */
  setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void>;
  setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void>;
  /** Schedules destruction after `days`; returns when it will happen. */
  scheduleDestroy(ref: KeyRef, version: string, days: number): Promise<{ destroyAt: string }>;
  /** Wraps under the primary version. */
  wrap(ref: KeyRef, plaintext: Uint8Array, ctx: WrapContext): Promise<Wrapped>;
  /** Returns a fresh buffer the caller owns and must zero. */
  unwrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Promise<Uint8Array>;
  /**
   * Re-wraps under `toVersion` (default: primary) without the DEK leaving the provider in
   * clear. Only present when capabilities().serverSideRewrap is true.
   */
  rewrap?(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext, toVersion?: string): Promise<Wrapped>;
  /**
   * Server-side re-wrap of many DEKs in one call (an HSM session loop, a batch API), results in
   * order. Optional: the engine falls back to rewrap() per item.
   */
  rewrapMany?(ref: KeyRef, items: RewrapItem[], toVersion?: string): Promise<RewrapItemResult[]>;
  /** When the key was last used for a cryptographic operation, if the provider knows. */
  lastUsed?(ref: KeyRef): Promise<string | null>;
  /** Recovery facts for disaster-recovery checks; absent when the provider cannot tell. */
  recovery?(ref: KeyRef): Promise<RecoveryInfo>;
  /** BYOK, step 1: a wrapping key and token for importing material into `ref`. */
  prepareImport?(ref: KeyRef, algorithm: ImportWrapAlgorithm): Promise<ImportParameters>;
  /**
   * BYOK, step 2: imports wrapped material into `ref` as its first material or a new version
   * (which becomes primary); returns that version. `expiresAt` sets material expiry where the
   * provider supports it. `reimport`: the material is one the key already has (AWS: restore
   * expired or deleted material, or change its expiry); the version it belongs to is returned.
   */
  importMaterial?(
    ref: KeyRef,
    params: ImportParameters,
    wrappedMaterial: Uint8Array,
    opts: { expiresAt?: string; reimport?: boolean },
  ): Promise<KeyVersion>;
  close?(): Promise<void>;
}

/** Adds a key to a provider; used by `rekey keys create` and the demo (not every provider offers it). */
export interface KeyCreator {
  createKey(spec: {
    name: string;
    tags?: Record<string, string>;
    algorithm?: ManagedKey['algorithm'];
    /** Backdates the first version (demo and tests only). */
    createdAt?: string;
  }): Promise<ManagedKey>;
}
