import { AsyncLocalStorage } from 'node:async_hooks';
import type { TokenCredential } from '@azure/core-auth';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import {
  CryptographyClient,
  type CryptographyClientOptions,
  KeyClient,
  type KeyClientOptions,
  type KeyRotationLifetimeAction,
  type KeyVaultKey,
} from '@azure/keyvault-keys';
import { durationDays, parseDuration } from '../../core/domain/duration.js';
import type { Algorithm, KeyVersion, ManagedKey, Protection } from '../../core/domain/key.js';
import { type AzureKvRef, type KeyRef, parseKeyRef } from '../../core/domain/keyRef.js';
import {
  ConfigError,
  ConflictError,
  InvariantViolation,
  NotFoundError,
  ProviderError,
  RekeyError,
  ValidationError,
} from '../../core/errors.js';
import { type Clock, systemClock } from '../../core/ports/Clock.js';
import type {
  ImportParameters,
  ImportWrapAlgorithm,
  KeyCreator,
  KeyProvider,
  ListScope,
  Page,
  ProviderCapabilities,
  RecoveryInfo,
  WrapContext,
  Wrapped,
} from '../../core/ports/KeyProvider.js';
import { isKeyExchangeKey, kekNameFor, kekPublicKeyDer, parseKeyId, transferBlob } from './byok.js';
import { toRekeyError, unsupported } from './errors.js';
import { decodePayload, encodePayload } from './wrapFormat.js';

export interface AzureKeyVaultProviderOptions {
  /** Configured provider id, e.g. `azure-prod`. */
  id: string;
  /** Vault and Managed HSM hosts to inventory, e.g. `prod.vault.azure.net`. createKey() uses the first. */
  vaults: string[];
  /**
   * Where requests for a host go (an emulator, a private endpoint): host -> https URL. Refs
   * keep the real host. For an overridden host the SDK's check that the challenge resource
   * matches the URL is off unless `disableChallengeResourceVerification` says otherwise.
   */
  endpoints?: Record<string, string>;
  /** Default: DefaultAzureCredential from @azure/identity, loaded on first use. */
  credential?: TokenCredential;
  /** PEM CA(s) the client trusts instead of the system store (tests, private CAs). */
  ca?: string | Buffer;
  disableChallengeResourceVerification?: boolean;
  /** SDK retry settings (the SDK retries 429 after Retry-After, and 5xx/network with backoff). */
  retry?: { maxRetries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
  /** api-version to call (default: the SDK's latest). */
  serviceVersion?: string;
  /** Protection of RSA keys createKey() makes in a vault: `software` (RSA, default) or `hsm` (RSA-HSM, Premium). */
  vaultKeyProtection?: 'software' | 'hsm';
  /** Keys described in parallel while listing. Default 8. */
  listConcurrency?: number;
  /** RSA size of the key exchange keys prepareImport() creates: 2048, 3072 (default) or 4096. */
  kekKeySize?: 2048 | 3072 | 4096;
  /** How long a key exchange key prepareImport() creates accepts imports, in hours. Default 24. */
  kekValidityHours?: number;
  /** What "now" is for key exchange key expiry. Default: the system clock. */
  clock?: Clock;
}

/** Azure-specific facts kept beside the neutral key model. */
export interface AzureKeyDetails {
  host: string;
  kind: 'vault' | 'managedhsm';
  keyType: string;
  /** Expiry of the primary version, if set. */
  expiresOn?: string;
  rotationPolicy?: { lifetimeActions: KeyRotationLifetimeAction[]; expiresIn?: string };
  /** A BYOK key exchange key (RSA-HSM, key_ops ['import']): listed by nothing, used by imports. */
  keyExchangeKey?: true;
}

export interface AzureManagedKey extends ManagedKey {
  azure: AzureKeyDetails;
}

/** Rotation policy minimum (rotate >= 7 days after create); 100 years as a sane ceiling. */
export const AUTO_ROTATION = { minDays: 7, maxDays: 36_500 };
/** Backup of a key fails above 500 versions; past that a vault key can no longer be backed up. */
/** How long wrap() trusts the latest version it read. */
const LATEST_REFRESH_MS = 1000;
export const VAULT_MAX_VERSIONS = 500;
export const MANAGED_HSM_MAX_VERSIONS = 100;
const VERSION_ID = /^[0-9A-Za-z]{1,64}$/;
const WRAP_OPS = ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'];
const IMPORT_ALGORITHMS: ImportWrapAlgorithm[] = ['rsa-aes-kwp-sha1'];
/** A key exchange key closer than this to expiry is replaced rather than reused. */
const KEK_REUSE_MARGIN_MS = 3_600_000;
const CACHE_LIMIT = 10_000;

interface CryptoEntry {
  client: CryptographyClient;
  algorithm: string;
  /** The client has completed a request (its authentication challenge is done). */
  ready?: boolean;
  /** Settles when the request running alone (see firstAlone) is done. */
  first?: Promise<void>;
}

/**
 * A fresh client's first request carries Key Vault's authentication challenge, and the SDK puts
 * that request's body back only if no other request completed the challenge first: concurrent
 * first requests can go out with an empty body (400 "Property 'alg' is required"). So requests
 * through a client run one at a time until one has succeeded.
 */
async function firstAlone<T>(entry: CryptoEntry, fn: () => Promise<T>): Promise<T> {
  while (!entry.ready && entry.first) await entry.first;
  if (entry.ready) return fn();
  let done!: () => void;
  entry.first = new Promise<void>((r) => {
    done = r;
  });
  try {
    const out = await fn();
    entry.ready = true;
    return out;
  } finally {
    entry.first = undefined;
    done();
  }
}

/** Captures the nextLink of list responses, so a listing can resume from a cursor. */
const listContext = new AsyncLocalStorage<{ nextLink?: string | null }>();
const nextLinkPolicy: PipelinePolicy = {
  name: 'rekeyNextLinkCapture',
  async sendRequest(request, next) {
    const response = await next(request);
    const holder = listContext.getStore();
    if (holder && response.status === 200 && response.bodyAsText) {
      try {
        const body = JSON.parse(response.bodyAsText) as { nextLink?: unknown };
        holder.nextLink = typeof body.nextLink === 'string' ? body.nextLink : null;
      } catch {
        holder.nextLink = null;
      }
    }
    return response;
  },
};

export class AzureKeyVaultProvider implements KeyProvider, KeyCreator {
  readonly id: string;
  readonly type = 'azure-kv' as const;
  private readonly hosts: string[];
  private readonly endpoints: Map<string, string>;
  private credential: TokenCredential | undefined;
  private readonly keyClients = new Map<string, KeyClient>();
  private readonly crypto = new Map<string, CryptoEntry>();

  constructor(private readonly opts: AzureKeyVaultProviderOptions) {
    if (!opts.id) throw new ConfigError('azure-kv provider: id is required');
    if (!Array.isArray(opts.vaults) || opts.vaults.length === 0) {
      throw new ConfigError(`azure-kv provider ${opts.id}: vaults must list at least one vault host`);
    }
    this.id = opts.id;
    this.hosts = opts.vaults.map((h) => {
      const ref = parseKeyRef(`azure-kv://${h}/keys/probe`) as AzureKvRef;
      return ref.host;
    });
    this.endpoints = new Map();
    for (const [host, url] of Object.entries(opts.endpoints ?? {})) {
      const h = host.toLowerCase();
      if (!this.hosts.includes(h)) {
        throw new ConfigError(
          `azure-kv provider ${opts.id}: endpoints names ${host}, which is not in vaults`,
        );
      }
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        throw new ConfigError(`azure-kv provider ${opts.id}: endpoints.${host} is not a URL`);
      }
      if (u.protocol !== 'https:')
        throw new ConfigError(`azure-kv provider ${opts.id}: endpoints.${host} must be https`);
      this.endpoints.set(h, u.origin);
    }
    this.credential = opts.credential;
    if (opts.kekKeySize !== undefined && ![2048, 3072, 4096].includes(opts.kekKeySize))
      throw new ConfigError(`azure-kv provider ${opts.id}: kekKeySize must be 2048, 3072 or 4096`);
    const hours = opts.kekValidityHours;
    if (hours !== undefined && !(Number.isFinite(hours) && hours >= 2 && hours <= 24 * 365)) {
      throw new ConfigError(
        `azure-kv provider ${opts.id}: kekValidityHours must be from 2 to 8760 (got ${hours})`,
      );
    }
    this.clock = opts.clock ?? systemClock;
  }

  private readonly clock: Clock;

  private readonly latest = new Map<string, { key: KeyVaultKey; atMs: number }>();

  capabilities(): ProviderCapabilities {
    const anyHsm = this.hosts.some((h) => kindOf(h) === 'managedhsm');
    return {
      // Managed HSM sends no Event Grid events and its rotation is best driven by rekey: a
      // provider made only of Managed HSMs rotates on demand (configure vaults and Managed
      // HSMs as separate providers to get both behaviours).
      ...(this.hosts.every((h) => kindOf(h) === 'managedhsm') ? {} : { autoRotation: { ...AUTO_ROTATION } }),
      serverSideRewrap: false,
      choosePrimary: false,
      destroyDelayDays: { min: 0, max: 0 },
      lastUsed: false,
      maxVersions: anyHsm ? MANAGED_HSM_MAX_VERSIONS : VAULT_MAX_VERSIONS,
      // Versions can be disabled but never deleted on their own (only the whole key).
      versionControl: { disable: true, destroy: false },
      // AES material is what rekey imports, and only a Managed HSM holds AES keys.
      ...(anyHsm ? { import: { algorithms: [...IMPORT_ALGORITHMS] } } : {}),
    };
  }

  // ---------- clients ----------

  private urlOf(host: string): string {
    return this.endpoints.get(host) ?? `https://${host}`;
  }

  private clientOptions(host: string): KeyClientOptions & CryptographyClientOptions {
    const overridden = this.endpoints.has(host);
    return {
      ...(this.opts.serviceVersion
        ? { serviceVersion: this.opts.serviceVersion as KeyClientOptions['serviceVersion'] }
        : {}),
      disableChallengeResourceVerification: this.opts.disableChallengeResourceVerification ?? overridden,
      ...(this.opts.ca ? { tlsOptions: { ca: this.opts.ca } } : {}),
      ...(this.opts.retry ? { retryOptions: { ...this.opts.retry } } : {}),
      additionalPolicies: [{ policy: nextLinkPolicy, position: 'perCall' }],
    };
  }

  private async cred(): Promise<TokenCredential> {
    if (!this.credential) {
      try {
        const { DefaultAzureCredential } = await import('@azure/identity');
        this.credential = new DefaultAzureCredential();
      } catch (e) {
        throw new ConfigError(
          `azure-kv provider ${this.id}: cannot load @azure/identity for DefaultAzureCredential`,
          {
            cause: e,
          },
        );
      }
    }
    return this.credential;
  }

  private async keys(host: string): Promise<KeyClient> {
    let c = this.keyClients.get(host);
    if (!c) {
      c = new KeyClient(this.urlOf(host), await this.cred(), this.clientOptions(host));
      this.keyClients.set(host, c);
    }
    return c;
  }

  private refOf(ref: KeyRef): AzureKvRef {
    if (ref.type !== 'azure-kv') throw new ValidationError(`${this.id}: ${ref.uri} is not an azure-kv ref`);
    if (!this.hosts.includes(ref.host)) {
      throw new ValidationError(
        `${this.id}: vault host ${ref.host} of ${ref.uri} is not one of this provider's vaults`,
      );
    }
    return ref;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof RekeyError) throw e;
      throw toRekeyError(this.id, e, what);
    }
  }

  // ---------- inventory ----------

  async listKeys(scope: ListScope, cursor: string | null): Promise<Page<ManagedKey>> {
    const pageSize = Math.min(Math.max(scope.pageSize ?? 25, 1), 25);
    let pos = decodeCursor(cursor, this.hosts.length);
    while (pos !== null) {
      const host = this.hosts[pos.v]!;
      // The token is a nextLink the SDK will follow with a bearer token: only to this vault.
      if (pos.t !== undefined && originOf(pos.t) !== originOf(this.urlOf(host))) {
        throw new ValidationError(`${this.id}: list cursor does not belong to vault ${host}`);
      }
      const client = await this.keys(host);
      const holder: { nextLink?: string | null } = {};
      const names = await this.call(`list keys of ${host}`, () =>
        listContext.run(holder, async () => {
          const pages = client
            .listPropertiesOfKeys()
            .byPage({ maxPageSize: pageSize, ...(pos!.t ? { continuationToken: pos!.t } : {}) });
          const first = await pages.next();
          // Keys backing certificates (`managed`) are rotated with their certificate, not by rekey.
          return first.done ? [] : first.value.filter((p) => p.managed !== true).map((p) => p.name);
        }),
      );
      const next = holder.nextLink
        ? { v: pos.v, t: holder.nextLink }
        : pos.v + 1 < this.hosts.length
          ? { v: pos.v + 1 }
          : null;
      const wanted = names.filter((n) => !scope.namePrefix || n.startsWith(scope.namePrefix));
      const items = await mapLimit(wanted, this.opts.listConcurrency ?? 8, async (name) => {
        try {
          const key = await this.describe(parseKeyRef(`azure-kv://${host}/keys/${name}`) as AzureKvRef);
          // Key exchange keys exist for imports only: nothing to rotate or re-wrap.
          return key.azure.keyExchangeKey ? null : key;
        } catch (e) {
          // Deleted between the listing and the read, or of a type rekey does not model.
          if (e instanceof NotFoundError || e instanceof ValidationError) return null;
          throw e;
        }
      });
      const found = items.filter((k): k is AzureManagedKey => k !== null);
      if (found.length > 0 || next === null)
        return { items: found, cursor: next ? encodeCursor(next) : null };
      pos = next;
    }
    return { items: [], cursor: null };
  }

  /**
   * The key's latest version for wrapping. Fetched at most once per refresh interval: a GET per
   * wrap would triple the requests of a bulk re-wrap, and Key Vault counts them against the
   * same quota. getKey() and rotate() refresh it, so a re-wrap that starts from getKey() wraps
   * under the version it read.
   */
  private async latestKey(r: AzureKvRef): Promise<KeyVaultKey> {
    const hit = this.latest.get(r.uri);
    if (hit && Date.now() - hit.atMs < LATEST_REFRESH_MS) return hit.key;
    const client = await this.keys(r.host);
    const key = await this.call(`get ${r.uri}`, () => client.getKey(r.name));
    this.latest.set(r.uri, { key, atMs: Date.now() });
    return key;
  }

  async getKey(ref: KeyRef): Promise<AzureManagedKey> {
    return this.describe(this.refOf(ref));
  }

  /**
   * Key Vault keeps vault contents in the vault's region and, where the region has a pair,
   * replicates them to the paired region (read-only during a failover); Managed HSM pools stay in
   * their region unless multi-region replication is set up, which the key API does not show.
   */
  async recovery(ref: KeyRef): Promise<RecoveryInfo> {
    const r = this.refOf(ref);
    const client = await this.keys(r.host);
    const key = await this.call(`get ${r.uri}`, () => client.getKey(r.name));
    const level = key.properties.recoveryLevel;
    const days = key.properties.recoverableDays;
    const protection = level?.startsWith('Recoverable')
      ? `soft delete${days ? ` for ${days} days` : ''} (${level})${level.includes('Purgeable') ? '' : ', purge protection on'}`
      : null;
    const notes = [
      'a key backup (backupKey) restores only into a vault of the same Azure geography and subscription',
    ];
    if (r.kind === 'managedhsm')
      notes.push(
        "Managed HSM: check the pool's multi-region replication and security-domain backup out of band",
      );
    return {
      locations: [r.host],
      copies:
        r.kind === 'vault'
          ? [
              {
                kind: 'paired-region',
                location: 'paired region',
                detail: 'Key Vault replicates vault contents to the paired region',
              },
            ]
          : [],
      deletionProtection: protection,
      notes,
    };
  }

  private async describe(ref: AzureKvRef): Promise<AzureManagedKey> {
    const client = await this.keys(ref.host);
    const latest = await this.call(`get ${ref.uri}`, () => client.getKey(ref.name));
    this.latest.set(ref.uri, { key: latest, atMs: Date.now() });
    const versions = await this.call(`list versions of ${ref.uri}`, async () => {
      const out: KeyVersion[] = [];
      for await (const p of client.listPropertiesOfKeyVersions(ref.name)) {
        if (!p.version) continue;
        out.push({
          id: p.version,
          state: p.enabled === false ? 'disabled' : 'enabled',
          createdAt: (p.createdOn ?? new Date(0)).toISOString(),
        });
      }
      return out;
    });
    const primary = latest.properties.version!;
    // Azure timestamps have one-second resolution: order by time, the latest (primary) last on ties.
    versions.sort(
      (a, b) => a.createdAt.localeCompare(b.createdAt) || Number(a.id === primary) - Number(b.id === primary),
    );
    if (!versions.some((v) => v.id === primary)) {
      versions.push({
        id: primary,
        state: latest.properties.enabled === false ? 'disabled' : 'enabled',
        createdAt: (latest.properties.createdOn ?? new Date(0)).toISOString(),
      });
    }
    const policy = await this.call(`get rotation policy of ${ref.uri}`, async () => {
      try {
        return await client.getKeyRotationPolicy(ref.name);
      } catch (e) {
        // 403: no permission to read it; 404: no policy (the key itself was just read).
        const status = (e as { statusCode?: number }).statusCode;
        if (status === 403 || status === 404) return undefined;
        throw e;
      }
    });
    const rotate = policy?.lifetimeActions?.find(
      (a) => a.action.toLowerCase() === 'rotate' && a.timeAfterCreate,
    );
    const primaryCreated = latest.properties.createdOn ?? new Date(0);
    let autoRotation: ManagedKey['autoRotation'];
    const periodDays = rotate?.timeAfterCreate ? daysOf(rotate.timeAfterCreate) : null;
    if (periodDays !== null) {
      autoRotation = {
        periodDays,
        nextRotationAt: new Date(primaryCreated.getTime() + periodDays * 86_400_000).toISOString(),
      };
    }
    const kty = latest.keyType ?? latest.key?.kty ?? 'unknown';
    return {
      ref: ref.uri,
      providerType: 'azure-kv',
      providerId: this.id,
      name: ref.name,
      tags: { ...(latest.properties.tags ?? {}) },
      protection: protectionOf(ref.kind, kty),
      algorithm: algorithmOf(ref.uri, latest),
      enabled: latest.properties.enabled !== false,
      primaryVersion: primary,
      versions,
      createdAt: versions[0]!.createdAt,
      ...(autoRotation ? { autoRotation } : {}),
      azure: {
        host: ref.host,
        kind: ref.kind,
        keyType: kty,
        ...(isKeyExchangeKey(latest) ? { keyExchangeKey: true as const } : {}),
        ...(latest.properties.expiresOn ? { expiresOn: latest.properties.expiresOn.toISOString() } : {}),
        ...(policy
          ? {
              rotationPolicy: {
                lifetimeActions: policy.lifetimeActions ?? [],
                ...(policy.expiresIn ? { expiresIn: policy.expiresIn } : {}),
              },
            }
          : {}),
      },
    };
  }

  // ---------- lifecycle ----------

  async createKey(spec: {
    name: string;
    tags?: Record<string, string>;
    algorithm?: Algorithm;
    createdAt?: string;
    /** Which configured vault (default: the first). */
    vault?: string;
  }): Promise<AzureManagedKey> {
    if (spec.createdAt !== undefined) {
      throw new ValidationError(
        `${this.id}: Key Vault sets creation times itself; createdAt cannot be backdated`,
      );
    }
    const host = (spec.vault ?? this.hosts[0]!).toLowerCase();
    const ref = this.refOf(parseKeyRef(`azure-kv://${host}/keys/${spec.name}`));
    const hsm = ref.kind === 'managedhsm';
    const algorithm = spec.algorithm ?? (hsm ? 'AES_256' : 'RSA_2048');
    let kty: string;
    let options: Record<string, unknown>;
    switch (algorithm) {
      case 'RSA_2048':
      case 'RSA_3072':
      case 'RSA_4096':
        kty = hsm || this.opts.vaultKeyProtection === 'hsm' ? 'RSA-HSM' : 'RSA';
        options = { keySize: Number(algorithm.slice(4)), keyOps: WRAP_OPS };
        break;
      case 'AES_256':
        if (!hsm) throw new ValidationError(`${this.id}: AES keys need a Managed HSM; ${host} is a vault`);
        kty = 'oct-HSM';
        options = { keySize: 256, keyOps: WRAP_OPS };
        break;
      case 'EC_P256':
      case 'EC_P384':
        kty = hsm || this.opts.vaultKeyProtection === 'hsm' ? 'EC-HSM' : 'EC';
        options = { curve: algorithm === 'EC_P256' ? 'P-256' : 'P-384', keyOps: ['sign', 'verify'] };
        break;
      default:
        throw new ValidationError(
          `${this.id}: algorithm ${algorithm} cannot be created in Azure Key Vault by rekey`,
        );
    }
    const client = await this.keys(host);
    const key = await this.call(`create ${ref.uri}`, () =>
      client.createKey(ref.name, kty, { ...options, ...(spec.tags ? { tags: spec.tags } : {}) }),
    );
    const created = (key.properties.createdOn ?? new Date()).toISOString();
    return {
      ref: ref.uri,
      providerType: 'azure-kv',
      providerId: this.id,
      name: ref.name,
      tags: { ...(key.properties.tags ?? {}) },
      protection: protectionOf(ref.kind, kty),
      algorithm,
      enabled: true,
      primaryVersion: key.properties.version!,
      versions: [{ id: key.properties.version!, state: 'enabled', createdAt: created }],
      createdAt: created,
      azure: { host, kind: ref.kind, keyType: kty },
    };
  }

  async rotate(ref: KeyRef): Promise<KeyVersion> {
    const r = this.refOf(ref);
    const client = await this.keys(r.host);
    const key = await this.call(`rotate ${r.uri}`, () => client.rotateKey(r.name));
    this.latest.set(r.uri, { key, atMs: Date.now() });
    return {
      id: key.properties.version!,
      state: key.properties.enabled === false ? 'disabled' : 'enabled',
      createdAt: (key.properties.createdOn ?? new Date()).toISOString(),
    };
  }

  async setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void> {
    const r = this.refOf(ref);
    if (periodDays !== null && r.kind === 'managedhsm') {
      throw new ProviderError(
        this.id,
        'UnsupportedOperation',
        `${r.uri}: rekey rotates Managed HSM keys on demand; it sets no rotation policy there`,
      );
    }
    if (periodDays !== null) {
      if (
        !Number.isInteger(periodDays) ||
        periodDays < AUTO_ROTATION.minDays ||
        periodDays > AUTO_ROTATION.maxDays
      ) {
        throw new ValidationError(
          `${this.id}: rotation period for ${r.uri} must be a whole number of days from ${AUTO_ROTATION.minDays} to ${AUTO_ROTATION.maxDays} (got ${periodDays})`,
        );
      }
    }
    const client = await this.keys(r.host);
    await this.call(`set rotation policy of ${r.uri}`, async () => {
      const current = await client.getKeyRotationPolicy(r.name).catch((e: unknown) => {
        // No policy yet: start from an empty one (a missing key fails on the update instead).
        if ((e as { statusCode?: number }).statusCode === 404)
          return { lifetimeActions: [], expiresIn: undefined };
        throw e;
      });
      const kept = (current.lifetimeActions ?? []).filter((a) => a.action.toLowerCase() !== 'rotate');
      const lifetimeActions: KeyRotationLifetimeAction[] =
        periodDays === null ? kept : [...kept, { action: 'Rotate', timeAfterCreate: `P${periodDays}D` }];
      await client.updateKeyRotationPolicy(r.name, {
        lifetimeActions,
        ...(current.expiresIn ? { expiresIn: current.expiresIn } : {}),
      });
    });
  }

  async setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void> {
    const r = this.refOf(ref);
    checkVersion(version);
    const client = await this.keys(r.host);
    const latest = await this.call(`get ${r.uri}`, () => client.getKey(r.name));
    if (state === 'disabled' && latest.properties.version === version) {
      throw new InvariantViolation(
        `${r.uri}: version ${version} is the primary (latest) and cannot be disabled`,
      );
    }
    await this.call(`set state of ${r.uri} version ${version}`, () =>
      client.updateKeyProperties(r.name, version, { enabled: state === 'enabled' }),
    );
  }

  async scheduleDestroy(ref: KeyRef, version: string, _days: number): Promise<{ destroyAt: string }> {
    const r = this.refOf(ref);
    throw unsupported(
      this.id,
      `${r.uri} version ${version}: Key Vault cannot delete a single key version (only whole keys, with soft delete); disable the version instead`,
    );
  }

  // ---------- import (BYOK) ----------

  /**
   * A key exchange key (KEK) for importing AES material into `ref`: `byok-kek-<key name>` in
   * the same Managed HSM (see kekNameFor), RSA-HSM with key_ops ['import'] and an expiry
   * (kekValidityHours). An enabled KEK with more than an hour left is reused; otherwise a new
   * version of it is created. Returns its public key (SPKI DER) and its full key id as the
   * import token. A vault host is refused: only a Managed HSM holds AES (oct-HSM) keys.
   */
  async prepareImport(ref: KeyRef, algorithm: ImportWrapAlgorithm): Promise<ImportParameters> {
    const r = this.importRef(ref, algorithm);
    const client = await this.keys(r.host);
    const kekName = kekNameFor(r.name);
    const kekUri = `azure-kv://${r.host}/keys/${kekName}`;
    let kek: KeyVaultKey | undefined;
    try {
      kek = await this.call(`get ${kekUri}`, () => client.getKey(kekName));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    if (kek && !isKeyExchangeKey(kek)) {
      throw new ConflictError(
        `${this.id}: ${kekUri} exists but is not a key exchange key (RSA-HSM, key_ops ['import']); rekey will not import into ${r.uri} through it`,
      );
    }
    const now = this.clock.now().getTime();
    const usable =
      kek &&
      kek.properties.enabled !== false &&
      (!kek.properties.expiresOn || kek.properties.expiresOn.getTime() - now > KEK_REUSE_MARGIN_MS);
    if (!kek || !usable) {
      const expiresOn = new Date(now + (this.opts.kekValidityHours ?? 24) * 3_600_000);
      kek = await this.call(`create ${kekUri}`, () =>
        client.createKey(kekName, 'RSA-HSM', {
          keySize: this.opts.kekKeySize ?? 3072,
          keyOps: ['import'],
          expiresOn,
          tags: { 'rekey-byok-target': r.name },
        }),
      );
    }
    if (!kek.id) throw new ProviderError(this.id, 'MalformedResponse', `create ${kekUri}: no key id`);
    return {
      importToken: kek.id,
      wrappingPublicKey: kekPublicKeyDer(this.id, kek),
      algorithm,
      expiresAt: kek.properties.expiresOn ? kek.properties.expiresOn.toISOString() : null,
    };
  }

  /**
   * Imports AES material into `ref` (a new key, or a new version that becomes the latest, and
   * so the primary) from a key transfer blob built around `wrappedMaterial` for the KEK in
   * `params`. The new version keeps the key's tags, so the policies that matched it still do;
   * `opts.expiresAt` becomes the version's expiry. There is no re-import (`opts.reimport`):
   * Key Vault never removes material from a version, so there is nothing to restore.
   */
  async importMaterial(
    ref: KeyRef,
    params: ImportParameters,
    wrappedMaterial: Uint8Array,
    opts: { expiresAt?: string; reimport?: boolean },
  ): Promise<KeyVersion> {
    const r = this.importRef(ref, params.algorithm);
    if (opts.reimport) {
      throw new ValidationError(
        `${this.id}: ${r.uri}: Key Vault has no re-import: a version's material is never removed (only whole keys are deleted, and recovered with their material); import without reimport to add a version`,
      );
    }
    const kid = parseKeyId(params.importToken);
    const served = new URL(this.urlOf(r.host)).host.toLowerCase();
    if (!kid || (kid.host !== r.host && kid.host !== served)) {
      throw new ValidationError(
        `${this.id}: import token "${params.importToken.slice(0, 200)}" is not the id of a key exchange key in ${r.host}`,
      );
    }
    const now = this.clock.now().getTime();
    if (params.expiresAt !== null && Date.parse(params.expiresAt) <= now) {
      throw new ValidationError(
        `${this.id}: key exchange key ${params.importToken} expired at ${params.expiresAt}; prepare the import again and re-wrap the material`,
      );
    }
    if (wrappedMaterial.length === 0)
      throw new ValidationError(`${this.id}: ${r.uri}: the wrapped material is empty`);
    let expiresOn: Date | undefined;
    if (opts.expiresAt !== undefined) {
      expiresOn = new Date(opts.expiresAt);
      if (Number.isNaN(expiresOn.getTime()) || expiresOn.getTime() <= now) {
        throw new ValidationError(`${this.id}: ${r.uri}: expiresAt "${opts.expiresAt}" is not a future date`);
      }
    }
    const client = await this.keys(r.host);
    let tags: Record<string, string> = {};
    try {
      const current = await this.call(`get ${r.uri}`, () => client.getKey(r.name));
      tags = { ...(current.properties.tags ?? {}) };
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    const blob = transferBlob(params.importToken, wrappedMaterial);
    const key = await this.call(`import into ${r.uri}`, () =>
      client.importKey(
        r.name,
        { kty: 'oct-HSM', keyOps: WRAP_OPS as KeyVaultKey['keyOperations'], t: blob },
        { hardwareProtected: true, tags, ...(expiresOn ? { expiresOn } : {}) },
      ),
    );
    this.latest.set(r.uri, { key, atMs: Date.now() });
    return {
      id: key.properties.version!,
      state: key.properties.enabled === false ? 'disabled' : 'enabled',
      createdAt: (key.properties.createdOn ?? this.clock.now()).toISOString(),
    };
  }

  private importRef(ref: KeyRef, algorithm: ImportWrapAlgorithm): AzureKvRef {
    const r = this.refOf(ref);
    if (!IMPORT_ALGORITHMS.includes(algorithm)) {
      throw new ValidationError(
        `${this.id}: ${r.uri}: Key Vault imports key transfer blobs wrapped with ${IMPORT_ALGORITHMS.join(', ')} (CKM_RSA_AES_KEY_WRAP), not ${String(algorithm)}`,
      );
    }
    if (r.kind !== 'managedhsm') {
      throw new ValidationError(
        `${this.id}: ${r.uri}: AES key material can be imported only into a Managed HSM (oct-HSM keys); ${r.host} is a vault`,
      );
    }
    return r;
  }

  // ---------- crypto ----------

  private cacheKey(host: string, name: string, version: string): string {
    return `${host}/${name.toLowerCase()}/${version.toLowerCase()}`;
  }

  private remember(k: string, entry: CryptoEntry): CryptoEntry {
    if (this.crypto.size >= CACHE_LIMIT) this.crypto.delete(this.crypto.keys().next().value!);
    this.crypto.set(k, entry);
    return entry;
  }

  private async cryptoFor(r: AzureKvRef, key: KeyVaultKey): Promise<CryptoEntry> {
    const k = this.cacheKey(r.host, r.name, key.properties.version!);
    const hit = this.crypto.get(k);
    if (hit) return hit;
    const client = new CryptographyClient(key, await this.cred(), this.clientOptions(r.host));
    return this.remember(k, { client, algorithm: wrapAlgorithm(r.uri, key) });
  }

  async wrap(ref: KeyRef, plaintext: Uint8Array, ctx: WrapContext): Promise<Wrapped> {
    const r = this.refOf(ref);
    const payload = encodePayload(plaintext, ctx);
    try {
      const latest = await this.latestKey(r);
      const entry = await this.cryptoFor(r, latest);
      const result = await this.call(`wrap under ${r.uri}`, () =>
        firstAlone(entry, () => entry.client.wrapKey(entry.algorithm as 'RSA-OAEP-256', payload)),
      );
      return { version: latest.properties.version!, ciphertext: Uint8Array.from(result.result) };
    } finally {
      payload.fill(0);
    }
  }

  async unwrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Promise<Uint8Array> {
    const r = this.refOf(ref);
    checkVersion(wrapped.version);
    let entry = this.crypto.get(this.cacheKey(r.host, r.name, wrapped.version));
    if (!entry) {
      const client = await this.keys(r.host);
      const key = await this.call(`get ${r.uri} version ${wrapped.version}`, () =>
        client.getKey(r.name, { version: wrapped.version }),
      );
      entry = await this.cryptoFor(r, key);
    }
    if (wrapped.ciphertext.length === 0) {
      throw new ProviderError(this.id, 'BadParameter', `unwrap under ${r.uri}: empty ciphertext`);
    }
    const e = entry;
    const result = await this.call(`unwrap under ${r.uri} version ${wrapped.version}`, () =>
      firstAlone(e, () =>
        e.client.unwrapKey(e.algorithm as 'RSA-OAEP-256', Uint8Array.from(wrapped.ciphertext)),
      ),
    );
    const decoded = decodePayload(Buffer.from(result.result), ctx, `unwrap under ${r.uri}`);
    result.result.fill(0);
    if (!decoded.ok) {
      throw new ProviderError(
        this.id,
        'WrapContextMismatch',
        `unwrap under ${r.uri} version ${wrapped.version}: the wrap context does not match the one the DEK was wrapped with`,
      );
    }
    return new Uint8Array(decoded.dek.buffer, decoded.dek.byteOffset, decoded.dek.length);
  }

  async close(): Promise<void> {
    this.crypto.clear();
    this.keyClients.clear();
  }
}

// ---------- helpers ----------

function kindOf(host: string): 'vault' | 'managedhsm' {
  return /\.managedhsm\./.test(host) ? 'managedhsm' : 'vault';
}

function protectionOf(kind: 'vault' | 'managedhsm', kty: string): Protection {
  return kind === 'managedhsm' || kty.endsWith('-HSM') ? 'hsm' : 'software';
}

function algorithmOf(uri: string, key: KeyVaultKey): Algorithm {
  const kty = key.keyType ?? key.key?.kty ?? '';
  if (kty.startsWith('RSA')) {
    const bits = (key.key?.n?.length ?? 0) * 8;
    if (bits === 2048 || bits === 3072 || bits === 4096) return `RSA_${bits}` as Algorithm;
    throw new ValidationError(`${uri}: RSA key of ${bits} bits is not modelled`);
  }
  if (kty.startsWith('EC')) {
    const crv = key.key?.crv;
    if (crv === 'P-256') return 'EC_P256';
    if (crv === 'P-384') return 'EC_P384';
    throw new ValidationError(`${uri}: EC curve ${crv} is not modelled`);
  }
  if (kty.startsWith('oct')) return 'AES_256';
  throw new ValidationError(`${uri}: key type ${kty} is not modelled`);
}

function wrapAlgorithm(uri: string, key: KeyVaultKey): string {
  const kty = key.keyType ?? key.key?.kty ?? '';
  if (kty.startsWith('RSA')) return 'RSA-OAEP-256';
  if (kty.startsWith('oct')) return 'A256KW';
  throw new ProviderError('azure-kv', 'UnsupportedOperation', `${uri}: ${kty} keys cannot wrap data keys`);
}

function checkVersion(version: string): void {
  if (typeof version !== 'string' || !VERSION_ID.test(version)) {
    throw new ValidationError(`"${String(version).slice(0, 80)}" is not a Key Vault key version`);
  }
}

/** Whole days of an ISO-8601 duration; null for one rekey cannot read. */
function daysOf(text: string): number | null {
  try {
    return Math.round(durationDays(parseDuration(text)));
  } catch {
    return null;
  }
}

/** Origin of a URL, default port dropped (Key Vault's nextLinks spell out :443). */
function originOf(url: string): string | null {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

function encodeCursor(c: { v: number; t?: string }): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

function decodeCursor(cursor: string | null, vaults: number): { v: number; t?: string } | null {
  if (cursor === null) return { v: 0 };
  try {
    const c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; t?: unknown };
    if (
      typeof c.v === 'number' &&
      Number.isInteger(c.v) &&
      c.v >= 0 &&
      c.v < vaults &&
      (c.t === undefined || typeof c.t === 'string')
    ) {
      return c.t === undefined ? { v: c.v } : { v: c.v, t: c.t };
    }
  } catch {
    // fall through
  }
  throw new ValidationError('azure-kv: invalid list cursor');
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let i = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) {
      const at = i++;
      out[at] = await fn(items[at]!);
    }
  });
  await Promise.all(workers);
  return out;
}
