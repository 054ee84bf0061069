import { KeyManagementServiceClient, type protos } from '@google-cloud/kms';
import * as grpc from '@grpc/grpc-js';
import type { Algorithm, KeyVersion, ManagedKey, Protection, VersionState } from '../../core/domain/key.js';
import { type GcpKmsRef, type KeyRef, parseKeyRef } from '../../core/domain/keyRef.js';
import {
  ConflictError,
  IntegrityError,
  InvariantViolation,
  NotFoundError,
  ProviderError,
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
import { canonicalJson } from '../../core/util/canonicalJson.js';
import { crc32c, int64Value } from './crc32c.js';
import { integrityFailure, toRekeyError } from './errors.js';
import {
  type ImportRsaBits,
  importMethodFor,
  newImportJobId,
  parseImportJobName,
  pollUntil,
  reusable,
  timestampMs,
  wrappingKeyDer,
} from './importing.js';
import { gcpMonthlyVersionCost } from './pricing.js';

type ICryptoKey = protos.google.cloud.kms.v1.ICryptoKey;
type ICryptoKeyVersion = protos.google.cloud.kms.v1.ICryptoKeyVersion;
type IImportJob = protos.google.cloud.kms.v1.IImportJob;

export interface GcpKmsProviderOptions {
  /** Configured provider id, e.g. `gcp-prod`. */
  id: string;
  /** Projects to inventory. The first is where createKey() creates keys. */
  projects: string[];
  /** Locations to inventory in every project (`global`, `europe-west1`...). The first is createKey()'s. */
  locations: string[];
  /**
   * Key ring ids to inventory in every project and location; default: every key ring found.
   * A listed ring that does not exist in one place is skipped there. createKey() uses the
   * first (default `rekey`), creating it if needed.
   */
  keyRings?: string[];
  /** Host of the API (an emulator, a private endpoint). Default: cloudkms.googleapis.com. */
  apiEndpoint?: string;
  port?: number;
  /** Plain-text gRPC without credentials: for a local emulator only. */
  insecure?: boolean;
  /**
   * Let the client library retry UNAVAILABLE and DEADLINE_EXCEEDED with its own backoff (its
   * default). false: every failure surfaces at once, for callers with their own backoff.
   */
  libraryRetries?: boolean;
  /** Per-call deadline in ms. Default: the library's (60 s). */
  timeoutMs?: number;
  /** What "now" is when computing next_rotation_time. Default: the system clock. */
  clock?: Clock;
  /** Protection level of keys createKey() makes. Default software. */
  createProtection?: 'software' | 'hsm';
  /** destroy_scheduled_duration of keys createKey() makes, in days (1-120). Default 30, as in GCP. */
  destroyScheduledDays?: number;
  /** Keys described in parallel while listing. Default 8. */
  listConcurrency?: number;
  /** Size of the RSA wrapping key of import jobs prepareImport() creates: 3072 (default) or 4096. */
  importRsaBits?: ImportRsaBits;
  /**
   * How long prepareImport() waits for a new import job's wrapping key (PENDING_GENERATION) and
   * importMaterial() for an import to finish (PENDING_IMPORT), in ms. Default 120,000.
   */
  importWaitMs?: number;
  /** A ready client (tests, custom transports); overrides apiEndpoint, port and insecure. */
  client?: KeyManagementServiceClient;
}

/** GCP-specific facts kept beside the neutral key model. */
export interface GcpKeyDetails {
  /** `projects/P/locations/L/keyRings/R/cryptoKeys/K` */
  name: string;
  project: string;
  location: string;
  keyRing: string;
  purpose: string;
  /** GCP's protection level: SOFTWARE, HSM, EXTERNAL, EXTERNAL_VPC, HSM_SINGLE_TENANT. */
  protectionLevel: string;
  /** GCP's algorithm, e.g. GOOGLE_SYMMETRIC_ENCRYPTION. */
  algorithm: string;
  /** Fixed at key creation: how long DESTROY_SCHEDULED lasts. */
  destroyScheduledDays: number;
  /** Versions come only from imports (BYOK); the key cannot rotate by itself. */
  importOnly: boolean;
  rotationPeriodSeconds?: number;
  nextRotationTime?: string;
  /** Versions that bill: every one not DESTROYED (ENABLED, DISABLED, DESTROY_SCHEDULED, pending). */
  billableVersions: number;
  /** List price of those versions per month, USD. */
  monthlyListCostUsd: number;
}

export interface GcpManagedKey extends ManagedKey {
  gcp: GcpKeyDetails;
}

const AUTO_ROTATION = { minDays: 1, maxDays: 36_500 };
const DESTROY_DELAY = { min: 1, max: 120 };
const DAY_S = 86_400;
const KEY_ID = /^[a-zA-Z0-9_-]{1,63}$/;
const MAX_PLAINTEXT = 64 * 1024;

const STATES: Record<string, VersionState> = {
  ENABLED: 'enabled',
  DISABLED: 'disabled',
  DESTROY_SCHEDULED: 'destroy_scheduled',
  DESTROYED: 'destroyed',
};
const PROTECTION: Record<string, Protection> = {
  SOFTWARE: 'software',
  HSM: 'hsm',
  HSM_SINGLE_TENANT: 'hsm',
  EXTERNAL: 'external',
  EXTERNAL_VPC: 'external',
};
/** Version states that hold no material and do not bill. */
const UNBILLED = new Set(['DESTROYED', 'IMPORT_FAILED', 'GENERATION_FAILED']);
const IMPORT_ALGORITHMS: ImportWrapAlgorithm[] = ['rsa-aes-kwp-sha1'];
/** Symmetric encryption is the only algorithm of ENCRYPT_DECRYPT keys. */
const ALGORITHM: Record<string, Algorithm> = {
  GOOGLE_SYMMETRIC_ENCRYPTION: 'AES_256',
  EXTERNAL_SYMMETRIC_ENCRYPTION: 'AES_256',
};

interface ListCursor {
  /** index into projects x locations */
  p: number;
  /** ListKeyRings page token of the page holding the current ring (discovery only) */
  rt?: string;
  /** index of the current ring in that page (or in options.keyRings) */
  ri: number;
  /** ListCryptoKeys page token within the current ring */
  kt?: string;
}

/**
 * Google Cloud KMS behind the KeyProvider port, through the official gRPC client.
 *
 * Versions are CryptoKeyVersions, identified by their number ("1", "2"...). Every version
 * that is not DESTROYED bills, so retiring versions matters here more than anywhere. There is
 * no server-side re-encrypt: the engine unwraps and wraps in memory. See docs/gcp.md.
 */
export class GcpKmsProvider implements KeyProvider, KeyCreator {
  readonly id: string;
  readonly type = 'gcp-kms' as const;
  private readonly opts: GcpKmsProviderOptions;
  private readonly client: KeyManagementServiceClient;
  private readonly clock: Clock;
  private readonly places: { project: string; location: string }[];
  /** Primary version id per key name, as last seen: lets unwrap check used_primary cheaply. */
  private readonly primaries = new Map<string, string>();

  constructor(opts: GcpKmsProviderOptions) {
    const where = `gcp-kms provider ${opts.id || '(no id)'}`;
    if (!opts.id) throw new ValidationError('gcp-kms provider: id is required');
    if (!Array.isArray(opts.projects) || opts.projects.length === 0)
      throw new ValidationError(`${where}: projects must list at least one project`);
    if (!Array.isArray(opts.locations) || opts.locations.length === 0)
      throw new ValidationError(`${where}: locations must list at least one location`);
    for (const p of opts.projects) {
      if (!/^([a-z][a-z0-9-]{4,28}[a-z0-9]|\d{1,19})$/.test(p))
        throw new ValidationError(`${where}: projects: "${p}" is not a project id or number`);
    }
    for (const l of opts.locations) {
      if (!/^[a-z0-9-]{1,63}$/.test(l))
        throw new ValidationError(`${where}: locations: "${l}" is not a location`);
    }
    for (const r of opts.keyRings ?? []) {
      if (!KEY_ID.test(r)) throw new ValidationError(`${where}: keyRings: "${r}" is not a key ring id`);
    }
    if (opts.importRsaBits !== undefined && opts.importRsaBits !== 3072 && opts.importRsaBits !== 4096)
      throw new ValidationError(`${where}: importRsaBits must be 3072 or 4096 (got ${opts.importRsaBits})`);
    const d = opts.destroyScheduledDays;
    if (d !== undefined && !(d >= DESTROY_DELAY.min && d <= DESTROY_DELAY.max))
      throw new ValidationError(`${where}: destroyScheduledDays must be 1-120 (got ${d})`);
    this.id = opts.id;
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.places = opts.projects.flatMap((project) =>
      opts.locations.map((location) => ({ project, location })),
    );
    this.client =
      opts.client ??
      new KeyManagementServiceClient({
        ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
        ...(opts.port ? { port: opts.port } : {}),
        ...(opts.insecure ? { sslCreds: grpc.credentials.createInsecure() } : {}),
      });
  }

  capabilities(): ProviderCapabilities {
    return {
      autoRotation: { ...AUTO_ROTATION },
      serverSideRewrap: false,
      choosePrimary: true,
      destroyDelayDays: { ...DESTROY_DELAY },
      lastUsed: false,
      import: { algorithms: [...IMPORT_ALGORITHMS] },
    };
  }

  /** An import-only key has no native rotation: its new versions come from imports only. */
  capabilitiesFor(key: ManagedKey): ProviderCapabilities {
    const { autoRotation: _native, ...rest } = this.capabilities();
    return (key as Partial<GcpManagedKey>).gcp?.importOnly ? rest : this.capabilities();
  }

  // ---- plumbing ----

  private callOptions(): { retry?: null; timeout?: number; autoPaginate: false } {
    return {
      autoPaginate: false,
      ...(this.opts.libraryRetries === false ? { retry: null } : {}),
      ...(this.opts.timeoutMs ? { timeout: this.opts.timeoutMs } : {}),
    };
  }

  /** Runs one client call, translating its failure. */
  private async call<T>(what: string, run: (o: ReturnType<GcpKmsProvider['callOptions']>) => Promise<T>) {
    try {
      return await run(this.callOptions());
    } catch (e) {
      throw toRekeyError(this.id, e, what);
    }
  }

  private gcpRef(ref: KeyRef): GcpKmsRef {
    if (ref.type !== 'gcp-kms')
      throw new ValidationError(`provider ${this.id} (gcp-kms) cannot handle ${ref.type} key ref ${ref.uri}`);
    return ref;
  }

  private versionId(keyName: string, versionName: string | null | undefined): string {
    const prefix = `${keyName}/cryptoKeyVersions/`;
    if (!versionName?.startsWith(prefix) || !/^\d+$/.test(versionName.slice(prefix.length))) {
      throw new ProviderError(
        this.id,
        'MalformedResponse',
        `expected a version of ${keyName}, got "${versionName ?? ''}"`,
      );
    }
    return versionName.slice(prefix.length);
  }

  // ---- inventory ----

  async listKeys(scope: ListScope, cursor: string | null): Promise<Page<GcpManagedKey>> {
    let at: ListCursor | null = cursor === null ? { p: 0, ri: 0 } : this.decodeCursor(cursor);
    const pageSize = Math.min(Math.max(scope.pageSize ?? 100, 1), 1000);
    while (at) {
      const { keys, next } = await this.listStep(at, pageSize);
      const items = keys.filter((k) => !scope.namePrefix || k.name.startsWith(scope.namePrefix));
      at = next;
      if (items.length > 0 || !at) return { items, cursor: at ? encodeCursor(at) : null };
    }
    return { items: [], cursor: null };
  }

  /** One ListCryptoKeys page of the ring the cursor points at, and where to go next. */
  private async listStep(
    at: ListCursor,
    pageSize: number,
  ): Promise<{ keys: GcpManagedKey[]; next: ListCursor | null }> {
    const place = this.places[at.p];
    if (!place) return { keys: [], next: null };
    const parent = `projects/${place.project}/locations/${place.location}`;
    let rings: string[];
    let ringsNext: string | undefined;
    if (this.opts.keyRings) rings = this.opts.keyRings.map((r) => `${parent}/keyRings/${r}`);
    else {
      const [page, , raw] = await this.call(`ListKeyRings ${parent}`, (o) =>
        this.client.listKeyRings({ parent, pageSize: 100, ...(at.rt ? { pageToken: at.rt } : {}) }, o),
      );
      rings = page.map((r) => r.name ?? '').filter(Boolean);
      ringsNext = raw?.nextPageToken || undefined;
    }
    const ring = rings[at.ri];
    if (!ring) {
      if (ringsNext) return { keys: [], next: { p: at.p, rt: ringsNext, ri: 0 } };
      return { keys: [], next: at.p + 1 < this.places.length ? { p: at.p + 1, ri: 0 } : null };
    }
    const afterRing: ListCursor = { p: at.p, ...(at.rt ? { rt: at.rt } : {}), ri: at.ri + 1 };
    let page: ICryptoKey[];
    let keysNext: string | undefined;
    try {
      const [items, , raw] = await this.call(`ListCryptoKeys ${ring}`, (o) =>
        this.client.listCryptoKeys({ parent: ring, pageSize, ...(at.kt ? { pageToken: at.kt } : {}) }, o),
      );
      page = items;
      keysNext = raw?.nextPageToken || undefined;
    } catch (e) {
      if (!(e instanceof NotFoundError) || !this.opts.keyRings) throw e;
      // A configured ring absent from one of the configured places has nothing to list there,
      // but a place that does not exist is a configuration error: listing its rings says which.
      await this.call(`ListKeyRings ${parent}`, (o) => this.client.listKeyRings({ parent, pageSize: 1 }, o));
      return { keys: [], next: afterRing };
    }
    const built = await mapLimited(page, this.opts.listConcurrency ?? 8, async (ck) => {
      if (ck.purpose !== 'ENCRYPT_DECRYPT') return null;
      try {
        const key = await this.build(ck);
        // Only keys with a usable primary can be managed; getKey() still reports the others.
        const primary = key.versions.find((v) => v.id === key.primaryVersion);
        return primary?.state === 'enabled' ? key : null;
      } catch (e) {
        if (e instanceof NotFoundError) return null;
        throw e;
      }
    });
    const keys = built.filter((k): k is GcpManagedKey => k !== null);
    const next = keysNext ? { ...at, kt: keysNext } : afterRing;
    return { keys, next };
  }

  private decodeCursor(cursor: string): ListCursor {
    try {
      const c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as ListCursor;
      if (
        Number.isInteger(c.p) &&
        c.p >= 0 &&
        c.p < this.places.length &&
        Number.isInteger(c.ri) &&
        c.ri >= 0 &&
        (c.rt === undefined || typeof c.rt === 'string') &&
        (c.kt === undefined || typeof c.kt === 'string')
      ) {
        return c;
      }
    } catch {
      // fall through
    }
    throw new ValidationError(`provider ${this.id}: invalid listKeys cursor`);
  }

  async getKey(ref: KeyRef): Promise<GcpManagedKey> {
    const r = this.gcpRef(ref);
    const [ck] = await this.call(`GetCryptoKey ${r.name}`, (o) =>
      this.client.getCryptoKey({ name: r.name }, o),
    );
    if (ck.purpose !== 'ENCRYPT_DECRYPT') {
      throw new ProviderError(
        this.id,
        'UnsupportedPurpose',
        `key ${r.name} has purpose ${ck.purpose}; rekey manages ENCRYPT_DECRYPT keys only`,
      );
    }
    return this.build(ck);
  }

  /**
   * A key lives in its key ring's location. Multi-regional and dual-regional locations (`global`,
   * `us`, `europe`, `asia`, `nam4`, `eur4`...) are served from several regions; a regional one is
   * not copied anywhere else, and Cloud KMS offers no key export or backup.
   */
  async recovery(ref: KeyRef): Promise<RecoveryInfo> {
    const r = this.gcpRef(ref);
    const [ck] = await this.call(`GetCryptoKey ${r.name}`, (o) =>
      this.client.getCryptoKey({ name: r.name }, o),
    );
    const multi = /^(global|us|europe|asia|eu|nam\d+|eur\d+|asia\d+)$/.test(r.location);
    const days = Number(ck.destroyScheduledDuration?.seconds ?? 30 * DAY_S) / DAY_S;
    const level = String(ck.versionTemplate?.protectionLevel ?? ck.primary?.protectionLevel ?? 'SOFTWARE');
    const notes =
      level === 'EXTERNAL' || level === 'EXTERNAL_VPC'
        ? ['external key manager: recovery depends on the external manager, not on Cloud KMS']
        : [];
    return {
      locations: [r.location],
      copies: multi
        ? [
            {
              kind: 'multi-region-location',
              location: r.location,
              detail: `Cloud KMS location ${r.location} spans several regions`,
            },
          ]
        : [],
      deletionProtection: `versions stay DESTROY_SCHEDULED for ${days} day(s) and can be restored until then`,
      notes,
    };
  }

  /** Builds the neutral key model from a CryptoKey and every one of its versions. */
  private async build(ck: ICryptoKey): Promise<GcpManagedKey> {
    const name = ck.name ?? '';
    const ref = parseKeyRef(`gcp-kms://${name}`) as GcpKmsRef;
    const raw: ICryptoKeyVersion[] = [];
    let pageToken: string | undefined;
    do {
      const [items, , res] = await this.call(`ListCryptoKeyVersions ${name}`, (o) =>
        this.client.listCryptoKeyVersions(
          { parent: name, pageSize: 1000, ...(pageToken ? { pageToken } : {}) },
          o,
        ),
      );
      raw.push(...items);
      pageToken = res?.nextPageToken || undefined;
    } while (pageToken);
    const versions: KeyVersion[] = [];
    for (const v of raw) {
      const state = STATES[String(v.state)];
      if (!state) continue; // pending generation/import, failed imports: not versions rekey can act on
      const destroyAt = v.state === 'DESTROY_SCHEDULED' ? isoOf(v.destroyTime) : undefined;
      versions.push({
        id: this.versionId(name, v.name),
        state,
        createdAt: isoOf(v.createTime) ?? new Date(0).toISOString(),
        ...(destroyAt ? { destroyAt } : {}),
      });
    }
    versions.sort((a, b) => Number(a.id) - Number(b.id));
    const primaryVersion = ck.primary?.name ? this.versionId(name, ck.primary.name) : '';
    if (primaryVersion) this.primaries.set(name, primaryVersion);
    const tpl = ck.versionTemplate ?? {};
    const protectionLevel = String(tpl.protectionLevel ?? 'SOFTWARE');
    const gcpAlgorithm = String(tpl.algorithm ?? 'GOOGLE_SYMMETRIC_ENCRYPTION');
    const protection = PROTECTION[protectionLevel] ?? 'software';
    const algorithm = ALGORITHM[gcpAlgorithm] ?? 'AES_256';
    const billable = raw.filter((v) => !UNBILLED.has(String(v.state))).length;
    const periodS = ck.rotationPeriod ? Number(ck.rotationPeriod.seconds ?? 0) : undefined;
    const nextRotationTime = isoOf(ck.nextRotationTime);
    const key: GcpManagedKey = {
      ref: ref.uri,
      providerType: 'gcp-kms',
      providerId: this.id,
      name: ref.cryptoKey,
      tags: { ...(ck.labels ?? {}) },
      protection,
      algorithm,
      // GCP has no key-level state: a key is usable when its primary is.
      enabled: versions.some((v) => v.id === primaryVersion && v.state === 'enabled'),
      primaryVersion,
      versions,
      createdAt: isoOf(ck.createTime) ?? new Date(0).toISOString(),
      ...(ck.importOnly ? { imported: true } : {}),
      gcp: {
        name,
        project: ref.project,
        location: ref.location,
        keyRing: ref.keyRing,
        purpose: String(ck.purpose),
        protectionLevel,
        algorithm: gcpAlgorithm,
        destroyScheduledDays: Number(ck.destroyScheduledDuration?.seconds ?? 30 * DAY_S) / DAY_S,
        importOnly: ck.importOnly === true,
        ...(periodS ? { rotationPeriodSeconds: periodS } : {}),
        ...(nextRotationTime ? { nextRotationTime } : {}),
        billableVersions: billable,
        monthlyListCostUsd: gcpMonthlyVersionCost(protection, algorithm, billable),
      },
    };
    if (periodS) {
      key.autoRotation = {
        periodDays: periodS / DAY_S,
        ...(nextRotationTime ? { nextRotationAt: nextRotationTime } : {}),
      };
    }
    return key;
  }

  // ---- rotation ----

  /**
   * CreateCryptoKeyVersion, then UpdateCryptoKeyPrimaryVersion. If the second step keeps
   * failing, the new version exists but is not primary: the error is not retryable, so a
   * blind retry does not add another billed version; it names the version to promote.
   */
  async rotate(ref: KeyRef): Promise<KeyVersion> {
    const r = this.gcpRef(ref);
    const [v] = await this.call(`CreateCryptoKeyVersion ${r.name}`, (o) =>
      this.client.createCryptoKeyVersion({ parent: r.name, cryptoKeyVersion: {} }, o),
    );
    const id = this.versionId(r.name, v.name);
    await this.promote(
      r,
      id,
      'RotationIncomplete',
      `key ${r.name}: created version ${id} but could not make it primary; promote it (UpdateCryptoKeyPrimaryVersion) rather than rotating again`,
    );
    return { id, state: 'enabled', createdAt: isoOf(v.createTime) ?? this.clock.now().toISOString() };
  }

  /**
   * UpdateCryptoKeyPrimaryVersion, retried on transient failures. If it keeps failing the
   * error is not retryable, so a caller does not add (and pay for) another version.
   */
  private async promote(r: GcpKmsRef, id: string, code: string, message: string): Promise<void> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.call(`UpdateCryptoKeyPrimaryVersion ${r.name}`, (o) =>
          this.client.updateCryptoKeyPrimaryVersion({ name: r.name, cryptoKeyVersionId: id }, o),
        );
        this.primaries.set(r.name, id);
        return;
      } catch (e) {
        last = e;
        if (!(e instanceof ProviderError) || !e.retryable) break;
        await new Promise((res) => setTimeout(res, 100 * 2 ** attempt));
      }
    }
    throw new ProviderError(this.id, code, message, { retryable: false, cause: last });
  }

  async setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void> {
    const r = this.gcpRef(ref);
    let cryptoKey: ICryptoKey = { name: r.name };
    if (periodDays !== null) {
      if (
        !Number.isFinite(periodDays) ||
        periodDays < AUTO_ROTATION.minDays ||
        periodDays > AUTO_ROTATION.maxDays
      ) {
        throw new ValidationError(
          `key ${r.uri}: Cloud KMS rotation periods are ${AUTO_ROTATION.minDays}-${AUTO_ROTATION.maxDays} days (24 h-876,000 h; got ${periodDays})`,
        );
      }
      const seconds = Math.round(periodDays * DAY_S);
      const next = Math.floor(this.clock.now().getTime() / 1000) + seconds;
      cryptoKey = { name: r.name, rotationPeriod: { seconds }, nextRotationTime: { seconds: next } };
    }
    await this.call(`UpdateCryptoKey ${r.name}`, (o) =>
      this.client.updateCryptoKey(
        { cryptoKey, updateMask: { paths: ['rotation_period', 'next_rotation_time'] } },
        o,
      ),
    );
  }

  // ---- version state ----

  async setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void> {
    const key = await this.getKey(ref);
    const v = this.requireVersion(key, version);
    if (v.state === state) return;
    if (state === 'disabled' && version === key.primaryVersion) {
      throw new InvariantViolation(
        `key ${key.ref}: version ${version} is the primary and cannot be disabled`,
      );
    }
    const name = `${key.gcp.name}/cryptoKeyVersions/${version}`;
    await this.call(`UpdateCryptoKeyVersion ${name}`, (o) =>
      this.client.updateCryptoKeyVersion(
        {
          cryptoKeyVersion: { name, state: state === 'enabled' ? 'ENABLED' : 'DISABLED' },
          updateMask: { paths: ['state'] },
        },
        o,
      ),
    );
  }

  /**
   * DestroyCryptoKeyVersion. Cloud KMS fixes the delay per key when the key is created
   * (destroy_scheduled_duration), so `days` must equal it: any other value is refused rather
   * than silently replaced by the key's own delay.
   */
  async scheduleDestroy(ref: KeyRef, version: string, days: number): Promise<{ destroyAt: string }> {
    if (!Number.isFinite(days) || days < DESTROY_DELAY.min || days > DESTROY_DELAY.max) {
      throw new ValidationError(
        `key ${ref.uri}: Cloud KMS destroy delays are ${DESTROY_DELAY.min}-${DESTROY_DELAY.max} days (got ${days})`,
      );
    }
    const key = await this.getKey(ref);
    const v = this.requireVersion(key, version);
    if (version === key.primaryVersion) {
      throw new InvariantViolation(
        `key ${key.ref}: version ${version} is the primary and cannot be destroyed`,
      );
    }
    const fixed = key.gcp.destroyScheduledDays;
    if (Math.abs(fixed - days) > 1e-9) {
      throw new ProviderError(
        this.id,
        'FixedDestroyDelay',
        `key ${key.ref}: Cloud KMS fixes the destroy delay of a key when it is created; this key's is ${fixed} days (destroy_scheduled_duration), so a delay of ${days} days cannot be honoured`,
        { retryable: false },
      );
    }
    if (v.state === 'destroy_scheduled' && v.destroyAt) return { destroyAt: v.destroyAt };
    const name = `${key.gcp.name}/cryptoKeyVersions/${version}`;
    const [out] = await this.call(`DestroyCryptoKeyVersion ${name}`, (o) =>
      this.client.destroyCryptoKeyVersion({ name }, o),
    );
    const destroyAt = isoOf(out.destroyTime);
    if (!destroyAt)
      throw new ProviderError(
        this.id,
        'MalformedResponse',
        `DestroyCryptoKeyVersion ${name}: no destroy_time`,
      );
    return { destroyAt };
  }

  /** RestoreCryptoKeyVersion: cancels a scheduled destruction; the version comes back DISABLED. */
  async restoreVersion(ref: KeyRef, version: string): Promise<void> {
    const r = this.gcpRef(ref);
    const name = `${r.name}/cryptoKeyVersions/${version}`;
    await this.call(`RestoreCryptoKeyVersion ${name}`, (o) =>
      this.client.restoreCryptoKeyVersion({ name }, o),
    );
  }

  private requireVersion(key: ManagedKey, version: string): KeyVersion {
    const v = key.versions.find((x) => x.id === version);
    if (!v) throw new NotFoundError(`${this.id}: key ${key.ref} has no version ${version}`);
    return v;
  }

  // ---- cryptography ----

  /** Encrypt under the primary, with CRC32C on the request and checks of every integrity field in the response. */
  async wrap(ref: KeyRef, plaintext: Uint8Array, ctx: WrapContext): Promise<Wrapped> {
    const r = this.gcpRef(ref);
    if (plaintext.length < 1 || plaintext.length > MAX_PLAINTEXT) {
      throw new ValidationError(
        `key ${r.uri}: Cloud KMS Encrypt takes 1-${MAX_PLAINTEXT} bytes (got ${plaintext.length})`,
      );
    }
    const aad = aadOf(ctx);
    const [out] = await this.call(`Encrypt with ${r.name}`, (o) =>
      this.client.encrypt(
        {
          name: r.name,
          plaintext: asBuffer(plaintext),
          plaintextCrc32c: { value: crc32c(plaintext) },
          ...(aad.length > 0
            ? { additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: { value: crc32c(aad) } }
            : {}),
        },
        o,
      ),
    );
    if (!out.verifiedPlaintextCrc32c)
      throw integrityFailure(this.id, `Encrypt with ${r.name}: the service did not verify plaintext_crc32c`);
    if (aad.length > 0 && !out.verifiedAdditionalAuthenticatedDataCrc32c) {
      throw integrityFailure(
        this.id,
        `Encrypt with ${r.name}: the service did not verify additional_authenticated_data_crc32c`,
      );
    }
    const ciphertext = out.ciphertext ? Uint8Array.from(out.ciphertext as Uint8Array) : new Uint8Array(0);
    if (ciphertext.length === 0)
      throw new ProviderError(this.id, 'MalformedResponse', `Encrypt with ${r.name}: no ciphertext`);
    if (int64Value(out.ciphertextCrc32c) !== crc32c(ciphertext))
      throw integrityFailure(
        this.id,
        `Encrypt with ${r.name}: ciphertext_crc32c does not match the ciphertext`,
      );
    const version = this.versionId(r.name, out.name);
    this.primaries.set(r.name, version);
    return { version, ciphertext };
  }

  /**
   * Decrypt naming the key: GCP picks the version from the ciphertext. The response does not
   * name that version, only whether it was the primary (used_primary); that flag is checked
   * against wrapped.version and the key's primary.
   */
  async unwrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Promise<Uint8Array> {
    const r = this.gcpRef(ref);
    const aad = aadOf(ctx);
    const [out] = await this.call(`Decrypt with ${r.name}`, (o) =>
      this.client.decrypt(
        {
          name: r.name,
          ciphertext: asBuffer(wrapped.ciphertext),
          ciphertextCrc32c: { value: crc32c(wrapped.ciphertext) },
          ...(aad.length > 0
            ? { additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: { value: crc32c(aad) } }
            : {}),
        },
        o,
      ),
    );
    const pt = out.plaintext ? (out.plaintext as Uint8Array) : new Uint8Array(0);
    const copy = Uint8Array.from(pt);
    pt.fill(0);
    const fail = (e: Error): never => {
      copy.fill(0);
      throw e;
    };
    if (int64Value(out.plaintextCrc32c) !== crc32c(copy))
      fail(
        integrityFailure(this.id, `Decrypt with ${r.name}: plaintext_crc32c does not match the plaintext`),
      );
    const usedPrimary = out.usedPrimary === true;
    let primary = this.primaries.get(r.name);
    if (primary === undefined || usedPrimary !== (wrapped.version === primary)) {
      // Unknown or stale: the primary may have moved since it was last seen.
      try {
        primary = await this.currentPrimary(r.name);
      } catch (e) {
        fail(e as Error);
      }
    }
    if (usedPrimary !== (wrapped.version === primary)) {
      fail(
        new IntegrityError(
          `key ${r.uri}: ciphertext recorded as version ${wrapped.version} was decrypted by ${usedPrimary ? 'the primary' : 'a non-primary'} version (primary is ${primary})`,
        ),
      );
    }
    return copy;
  }

  /** The key's primary version id now (one GetCryptoKey), remembered for later unwraps. */
  private async currentPrimary(name: string): Promise<string> {
    const [ck] = await this.call(`GetCryptoKey ${name}`, (o) => this.client.getCryptoKey({ name }, o));
    const id = ck.primary?.name ? this.versionId(name, ck.primary.name) : '';
    if (id) this.primaries.set(name, id);
    return id;
  }

  // ---- import (BYOK) ----

  /**
   * An ACTIVE import job for `ref`'s key ring, method RSA_OAEP_<bits>_SHA1_AES_256 and the
   * key's protection level: one that stays usable for at least another hour is reused,
   * otherwise a new one is created and awaited (PENDING_GENERATION -> ACTIVE). A key that does
   * not exist yet is created import-only and without versions, at the configured protection,
   * so its first import becomes version 1. The job name is the import token.
   */
  async prepareImport(ref: KeyRef, algorithm: ImportWrapAlgorithm): Promise<ImportParameters> {
    const r = this.gcpRef(ref);
    this.checkImportAlgorithm(r, algorithm);
    const ck = await this.importTarget(r);
    const protection = String(ck.versionTemplate?.protectionLevel ?? 'SOFTWARE') as 'SOFTWARE' | 'HSM';
    if (protection !== 'SOFTWARE' && protection !== 'HSM') {
      throw new ValidationError(
        `key ${r.uri}: Cloud KMS imports into SOFTWARE or HSM keys; this key's protection level is ${protection}`,
      );
    }
    const bits = this.opts.importRsaBits ?? 3072;
    const method = importMethodFor(bits);
    const ring = r.name.slice(0, r.name.indexOf('/cryptoKeys/'));
    let job = await this.findImportJob(ring, method, protection);
    if (!job) {
      const id = newImportJobId(method, protection, this.clock.now());
      [job] = await this.call(`CreateImportJob ${ring}/importJobs/${id}`, (o) =>
        this.client.createImportJob(
          { parent: ring, importJobId: id, importJob: { importMethod: method, protectionLevel: protection } },
          o,
        ),
      );
      const name = job.name ?? '';
      const waited = await pollUntil(
        async () =>
          (await this.call(`GetImportJob ${name}`, (o) => this.client.getImportJob({ name }, o)))[0],
        (j) => String(j.state) !== 'PENDING_GENERATION',
        this.opts.importWaitMs ?? 120_000,
      );
      job = waited.value;
      if (String(job.state) !== 'ACTIVE') {
        throw new ProviderError(
          this.id,
          waited.done ? 'ImportJobNotActive' : 'ImportJobPending',
          `import job ${name} for ${r.uri} is ${String(job.state)}${waited.done ? '' : ' after waiting for its wrapping key'}; prepare the import again`,
          { retryable: !waited.done },
        );
      }
    }
    const expire = timestampMs(job.expireTime);
    return {
      importToken: job.name ?? '',
      wrappingPublicKey: wrappingKeyDer(this.id, job, bits),
      algorithm,
      expiresAt: expire === null ? null : new Date(expire).toISOString(),
    };
  }

  /**
   * ImportCryptoKeyVersion of 32 bytes of AES material (GOOGLE_SYMMETRIC_ENCRYPTION) wrapped
   * for `params`' import job; waits until the version leaves PENDING_IMPORT, then makes it the
   * primary. An import the service cannot unwrap ends IMPORT_FAILED: that version holds no
   * material and does not bill, the primary is unchanged, and the error gives the reason.
   * Cloud KMS has no expiry for imported material, so `opts.expiresAt` is refused.
   *
   * `opts.reimport`: the material is one a version held before. It goes back into the newest
   * imported version that is DESTROYED (else IMPORT_FAILED), which Cloud KMS accepts only with
   * the very material that version held; the primary does not move.
   */
  async importMaterial(
    ref: KeyRef,
    params: ImportParameters,
    wrappedMaterial: Uint8Array,
    opts: { expiresAt?: string; reimport?: boolean },
  ): Promise<KeyVersion> {
    const r = this.gcpRef(ref);
    this.checkImportAlgorithm(r, params.algorithm);
    if (opts.expiresAt !== undefined) {
      throw new ValidationError(
        `key ${r.uri}: Cloud KMS cannot expire imported material (expiresAt ${opts.expiresAt}); destroy the version when it is due instead`,
      );
    }
    const job = parseImportJobName(params.importToken);
    if (!job) {
      throw new ValidationError(
        `key ${r.uri}: import token "${params.importToken.slice(0, 200)}" is not an import job name (projects/*/locations/*/keyRings/*/importJobs/*)`,
      );
    }
    if (job.project !== r.project || job.location !== r.location) {
      throw new ValidationError(
        `key ${r.uri}: import job ${params.importToken} is in ${job.project}/${job.location}, not in the key's project and location`,
      );
    }
    if (params.expiresAt !== null && Date.parse(params.expiresAt) <= this.clock.now().getTime()) {
      throw new ValidationError(
        `key ${r.uri}: import job ${params.importToken} expired at ${params.expiresAt}; prepare the import again and re-wrap the material`,
      );
    }
    if (wrappedMaterial.length === 0)
      throw new ValidationError(`key ${r.uri}: the wrapped material is empty`);
    const into = opts.reimport ? await this.reimportTarget(r) : undefined;
    const [created] = await this.call(`ImportCryptoKeyVersion into ${r.name}`, (o) =>
      this.client.importCryptoKeyVersion(
        {
          parent: r.name,
          importJob: params.importToken,
          algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
          wrappedKey: asBuffer(wrappedMaterial),
          ...(into ? { cryptoKeyVersion: into } : {}),
        },
        o,
      ),
    );
    const id = this.versionId(r.name, created.name);
    const name = `${r.name}/cryptoKeyVersions/${id}`;
    const settled = await pollUntil(
      async () =>
        (
          await this.call(`GetCryptoKeyVersion ${name}`, (o) => this.client.getCryptoKeyVersion({ name }, o))
        )[0],
      (v) => String(v.state) !== 'PENDING_IMPORT',
      this.opts.importWaitMs ?? 120_000,
    );
    const state = String(settled.value.state);
    if (state === 'IMPORT_FAILED') {
      throw new ProviderError(
        this.id,
        'IMPORT_FAILED',
        `key ${r.uri}: Cloud KMS could not import the material into version ${id}: ${settled.value.importFailureReason || 'no reason given'} The version holds no material and is not billed; the primary is unchanged.`,
        { retryable: false },
      );
    }
    if (state !== 'ENABLED') {
      throw new ProviderError(
        this.id,
        settled.done ? 'UnexpectedState' : 'ImportPending',
        `key ${r.uri}: imported version ${id} is ${state}${settled.done ? '' : ' after waiting'}; it was not made primary`,
        { retryable: false },
      );
    }
    if (into) {
      // A restored version: the key's primary stays where it is.
      return {
        id,
        state: 'enabled',
        createdAt: isoOf(settled.value.createTime) ?? this.clock.now().toISOString(),
      };
    }
    await this.promote(
      r,
      id,
      'ImportIncomplete',
      `key ${r.name}: imported version ${id} but could not make it primary; promote it (UpdateCryptoKeyPrimaryVersion) rather than importing again`,
    );
    return {
      id,
      state: 'enabled',
      createdAt: isoOf(settled.value.createTime) ?? this.clock.now().toISOString(),
    };
  }

  /** The version a re-import goes into: the newest imported one DESTROYED, else IMPORT_FAILED. */
  private async reimportTarget(r: GcpKmsRef): Promise<string> {
    const all: ICryptoKeyVersion[] = [];
    let pageToken: string | undefined;
    do {
      const [items, , raw] = await this.call(`ListCryptoKeyVersions ${r.name}`, (o) =>
        this.client.listCryptoKeyVersions(
          { parent: r.name, pageSize: 1000, ...(pageToken ? { pageToken } : {}) },
          o,
        ),
      );
      all.push(...items);
      pageToken = raw?.nextPageToken || undefined;
    } while (pageToken);
    const newest = (state: string) =>
      all
        .filter((v) => v.reimportEligible === true && String(v.state) === state)
        .sort((a, b) => Number(this.versionId(r.name, b.name)) - Number(this.versionId(r.name, a.name)))[0];
    const v = newest('DESTROYED') ?? newest('IMPORT_FAILED');
    if (!v?.name) {
      throw new ValidationError(
        `key ${r.uri}: no imported version is DESTROYED or IMPORT_FAILED, so there is nothing to re-import into (a version scheduled for destruction is restored, not re-imported); import without reimport to add a version`,
      );
    }
    return v.name;
  }

  private checkImportAlgorithm(r: GcpKmsRef, algorithm: ImportWrapAlgorithm): void {
    if (!IMPORT_ALGORITHMS.includes(algorithm)) {
      throw new ValidationError(
        `key ${r.uri}: Cloud KMS takes symmetric material wrapped with ${IMPORT_ALGORITHMS.join(', ')} (RSA_OAEP_*_SHA1_AES_256), not ${String(algorithm)}`,
      );
    }
  }

  /** The key to import into; created import-only, without versions, when it does not exist. */
  private async importTarget(r: GcpKmsRef): Promise<ICryptoKey> {
    let ck: ICryptoKey;
    try {
      [ck] = await this.call(`GetCryptoKey ${r.name}`, (o) => this.client.getCryptoKey({ name: r.name }, o));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      ck = await this.createImportOnlyKey(r);
    }
    if (ck.purpose !== 'ENCRYPT_DECRYPT') {
      throw new ValidationError(
        `key ${r.uri}: rekey imports into ENCRYPT_DECRYPT keys, not ${String(ck.purpose)}`,
      );
    }
    const algorithm = String(ck.versionTemplate?.algorithm ?? 'GOOGLE_SYMMETRIC_ENCRYPTION');
    if (algorithm !== 'GOOGLE_SYMMETRIC_ENCRYPTION') {
      throw new ValidationError(
        `key ${r.uri}: rekey imports AES-256 material; this key's algorithm is ${algorithm}`,
      );
    }
    return ck;
  }

  private async createImportOnlyKey(r: GcpKmsRef): Promise<ICryptoKey> {
    const ring = r.name.slice(0, r.name.indexOf('/cryptoKeys/'));
    const parent = ring.slice(0, ring.indexOf('/keyRings/'));
    try {
      await this.call(`CreateKeyRing ${ring}`, (o) =>
        this.client.createKeyRing({ parent, keyRingId: r.keyRing, keyRing: {} }, o),
      );
    } catch (e) {
      if (!(e instanceof ProviderError && e.providerCode === 'ALREADY_EXISTS')) throw e;
    }
    try {
      const [ck] = await this.call(`CreateCryptoKey ${r.name}`, (o) =>
        this.client.createCryptoKey(
          {
            parent: ring,
            cryptoKeyId: r.cryptoKey,
            skipInitialVersionCreation: true,
            cryptoKey: {
              purpose: 'ENCRYPT_DECRYPT',
              importOnly: true,
              versionTemplate: {
                algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
                protectionLevel: this.opts.createProtection === 'hsm' ? 'HSM' : 'SOFTWARE',
              },
              destroyScheduledDuration: {
                seconds: Math.round((this.opts.destroyScheduledDays ?? 30) * DAY_S),
              },
            },
          },
          o,
        ),
      );
      return ck;
    } catch (e) {
      // Created concurrently: use the one that won.
      if (!(e instanceof ProviderError && e.providerCode === 'ALREADY_EXISTS')) throw e;
      const [ck] = await this.call(`GetCryptoKey ${r.name}`, (o) =>
        this.client.getCryptoKey({ name: r.name }, o),
      );
      return ck;
    }
  }

  /** An ACTIVE job of the ring that fits and stays usable long enough, if any. */
  private async findImportJob(ring: string, method: string, protection: string): Promise<IImportJob | null> {
    let pageToken: string | undefined;
    const now = this.clock.now().getTime();
    do {
      const [jobs, , raw] = await this.call(`ListImportJobs ${ring}`, (o) =>
        this.client.listImportJobs(
          { parent: ring, filter: 'state = ACTIVE', pageSize: 100, ...(pageToken ? { pageToken } : {}) },
          o,
        ),
      );
      const fit = jobs.filter((j) => reusable(j, method, protection, now));
      // The one that lives longest gives the material the most time to arrive.
      fit.sort((a, b) => (timestampMs(b.expireTime) ?? 0) - (timestampMs(a.expireTime) ?? 0));
      if (fit[0]) return fit[0];
      pageToken = raw?.nextPageToken || undefined;
    } while (pageToken);
    return null;
  }

  // ---- creation ----

  /**
   * Creates a symmetric ENCRYPT_DECRYPT key named `spec.name` in the first project, location and
   * key ring (creating the ring if needed). `createdAt` cannot be backdated in Cloud KMS.
   */
  async createKey(spec: {
    name: string;
    tags?: Record<string, string>;
    algorithm?: ManagedKey['algorithm'];
    createdAt?: string;
  }): Promise<GcpManagedKey> {
    if (!KEY_ID.test(spec.name))
      throw new ValidationError(
        `key name "${spec.name}": Cloud KMS key ids are 1-63 of a-z, A-Z, 0-9, '_', '-'`,
      );
    if (spec.algorithm && spec.algorithm !== 'AES_256')
      throw new ValidationError(
        `key ${spec.name}: rekey creates symmetric (AES_256) Cloud KMS keys only, not ${spec.algorithm}`,
      );
    const project = this.opts.projects[0]!;
    const location = this.opts.locations[0]!;
    const ringId = this.opts.keyRings?.[0] ?? 'rekey';
    const parent = `projects/${project}/locations/${location}`;
    const ring = `${parent}/keyRings/${ringId}`;
    try {
      await this.call(`CreateKeyRing ${ring}`, (o) =>
        this.client.createKeyRing({ parent, keyRingId: ringId, keyRing: {} }, o),
      );
    } catch (e) {
      if (!(e instanceof ProviderError && e.providerCode === 'ALREADY_EXISTS')) throw e;
    }
    const days = this.opts.destroyScheduledDays ?? 30;
    let ck: ICryptoKey;
    try {
      [ck] = await this.call(`CreateCryptoKey ${ring}/cryptoKeys/${spec.name}`, (o) =>
        this.client.createCryptoKey(
          {
            parent: ring,
            cryptoKeyId: spec.name,
            cryptoKey: {
              purpose: 'ENCRYPT_DECRYPT',
              versionTemplate: {
                algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
                protectionLevel: this.opts.createProtection === 'hsm' ? 'HSM' : 'SOFTWARE',
              },
              labels: { ...(spec.tags ?? {}) },
              destroyScheduledDuration: { seconds: Math.round(days * DAY_S) },
            },
          },
          o,
        ),
      );
    } catch (e) {
      if (e instanceof ProviderError && e.providerCode === 'ALREADY_EXISTS') {
        throw new ConflictError(`${this.id}: a key named ${spec.name} already exists in ${ring}`, {
          cause: e,
        });
      }
      throw e;
    }
    return this.build(ck);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/**
 * Client options for a `host:port` endpoint from the config file. A loopback host (an
 * emulator) gets plain-text gRPC without credentials; any other host keeps TLS and the
 * default credentials.
 */
export function gcpEndpointOptions(endpoint: string): {
  apiEndpoint: string;
  port: number;
  insecure: boolean;
} {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint.trim());
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port < 1 || port > 65535) {
    throw new ValidationError(`gcp-kms endpoint "${endpoint}" must be host:port, e.g. 127.0.0.1:8085`);
  }
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  return { apiEndpoint: host, port, insecure: loopback };
}

/** AAD bound to a wrapped DEK: canonical JSON of the context; none for an empty context. */
export function aadOf(ctx: WrapContext): Buffer {
  return Object.keys(ctx).length === 0 ? Buffer.alloc(0) : Buffer.from(canonicalJson(ctx), 'utf8');
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function isoOf(t: { seconds?: unknown; nanos?: number | null } | null | undefined): string | undefined {
  if (!t || t.seconds === undefined || t.seconds === null) return undefined;
  const s = int64Value(t.seconds);
  if (s === undefined || Number.isNaN(s)) return undefined;
  return new Date(s * 1000 + Math.floor((t.nanos ?? 0) / 1_000_000)).toISOString();
}

function encodeCursor(c: ListCursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(Math.max(limit, 1), items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(workers);
  return out;
}
