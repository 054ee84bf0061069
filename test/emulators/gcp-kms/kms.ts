import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { crc32c, int64Value } from '../../../shared/providers/gcp/crc32c.js';
import type { SimClock } from '../aws/clock.js';
import { GrpcError, invalid, notFound, precondition, unimplemented } from './errors.js';
import { ImportJobs, type Unwrapped } from './importJobs.js';
import {
  type CryptoKeyName,
  DEFAULT_LOCATIONS,
  type KeyRingName,
  type LocationName,
  parseCryptoKey,
  parseImportJob,
  parseKeyOrVersion,
  parseKeyRing,
  parseLocation,
  parseVersion,
  RESOURCE_ID,
  type VersionName,
} from './names.js';

/* Requests arrive as @grpc/proto-loader objects: camelCase fields, enums as names, 64-bit
   integers as strings, unset message fields as null. Responses are built the same way. */
// biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped
type Msg = Record<string, any>;
type Timestamp = { seconds: string; nanos: number };

export type VersionState =
  | 'ENABLED'
  | 'DISABLED'
  | 'DESTROY_SCHEDULED'
  | 'DESTROYED'
  | 'PENDING_IMPORT'
  | 'IMPORT_FAILED';
type Protection = 'SOFTWARE' | 'HSM';

interface VersionRec {
  id: number;
  state: VersionState;
  createMs: number;
  destroyMs?: number;
  destroyEventMs?: number;
  /** AES-256 key; erased (zeroed and dropped) once DESTROYED. */
  material?: Buffer;
  /** Created by ImportCryptoKeyVersion (only such versions can be re-imported). */
  imported?: boolean;
  importJob?: string;
  importMs?: number;
  importFailureReason?: string;
  /** Keyed digest of the material this version ever held: a re-import must bring the same. */
  materialTag?: Buffer;
  /** Outcome of an import still PENDING_IMPORT; applied before the next request is served. */
  pending?: Unwrapped;
}

interface KeyRec {
  name: string;
  /** Random tag bound into every ciphertext: a ciphertext from another key never decrypts. */
  tag: Buffer;
  createMs: number;
  protection: Protection;
  /** Versions come only from ImportCryptoKeyVersion. */
  importOnly: boolean;
  labels: Record<string, string>;
  rotationPeriodS?: number;
  nextRotationMs?: number;
  destroyScheduledS: number;
  primary?: number;
  versions: VersionRec[];
}

interface RingRec {
  name: string;
  createMs: number;
}

const DAY_S = 86_400;
const MIN_ROTATION_S = DAY_S;
const MAX_ROTATION_S = 876_000 * 3600;
const MIN_DESTROY_S = DAY_S;
const MAX_DESTROY_S = 120 * DAY_S;
const DEFAULT_DESTROY_S = 30 * DAY_S;
const MAX_SOFTWARE_BYTES = 64 * 1024;
const MAX_HSM_BYTES = 8 * 1024;
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
/** Ciphertext: magic, version (uint32 BE), key tag (8), IV (12), AES-GCM ciphertext, GCM tag (16). */
const MAGIC = 0x4b;
const HEADER = 1 + 4 + 8;
const IV = 12;
const GCM_TAG = 16;
/** A jump of the clock runs at most this many automatic rotations per key (a runaway guard). */
const MAX_CATCH_UP = 1000;
/** Bytes of key material GOOGLE_SYMMETRIC_ENCRYPTION takes. */
const SYMMETRIC_BYTES = 32;
const MISMATCH = 'The imported key material does not match the material this version held before.';

const LABEL_KEY = /^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$/u;
const LABEL_VALUE = /^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$/u;

export interface KmsStateOptions {
  clock: SimClock;
  /** Locations that exist; default: a representative set of real Cloud KMS locations. */
  locations?: string[];
  /** Projects the caller may use; others answer PERMISSION_DENIED. Default: any. */
  projects?: string[];
}

/**
 * The state and rules of Cloud KMS for symmetric ENCRYPT_DECRYPT keys. Each public method is
 * one RPC: it takes the request message and returns the response message, or throws GrpcError.
 */
export class KmsState {
  private readonly clock: SimClock;
  private readonly locations: Set<string>;
  private readonly projects: Set<string> | null;
  private rings = new Map<string, RingRec>();
  private keys = new Map<string, KeyRec>();
  private readonly importJobs: ImportJobs;
  /** Keys the digests of destroyed imported material; never leaves the emulator. */
  private readonly tagSecret = randomBytes(32);

  constructor(opts: KmsStateOptions) {
    this.clock = opts.clock;
    this.importJobs = new ImportJobs(opts.clock);
    this.locations = new Set(opts.locations ?? DEFAULT_LOCATIONS);
    this.projects = opts.projects ? new Set(opts.projects) : null;
  }

  reset(): void {
    for (const k of this.keys.values()) {
      for (const v of k.versions) {
        v.material?.fill(0);
        if (v.pending && 'material' in v.pending) v.pending.material.fill(0);
      }
    }
    this.rings.clear();
    this.keys.clear();
    this.importJobs.reset();
  }

  /**
   * Runs what fell due: imports still pending complete, expired import jobs lose their key,
   * then automatic rotations and scheduled destructions.
   */
  tick(): void {
    const now = this.clock.nowMs();
    this.importJobs.tick();
    for (const k of this.keys.values()) {
      for (const v of k.versions) if (v.pending) this.settleImport(v);
      let n = 0;
      while (k.nextRotationMs !== undefined && k.nextRotationMs <= now && n < MAX_CATCH_UP) {
        const v = this.addVersion(k, k.nextRotationMs);
        k.primary = v.id;
        k.nextRotationMs = k.rotationPeriodS ? k.nextRotationMs + k.rotationPeriodS * 1000 : undefined;
        n += 1;
      }
      for (const v of k.versions) {
        if (v.state === 'DESTROY_SCHEDULED' && v.destroyMs !== undefined && v.destroyMs <= now) {
          v.state = 'DESTROYED';
          v.destroyEventMs = v.destroyMs;
          v.material?.fill(0);
          v.material = undefined;
        }
      }
    }
  }

  /** `projects/p/locations/l` of the request's resource, for quotas; null if it has none. */
  static scopeOf(request: Msg): string | null {
    const n: unknown =
      request.name ?? request.parent ?? request.cryptoKey?.name ?? request.cryptoKeyVersion?.name;
    if (typeof n !== 'string') return null;
    const m = /^projects\/[^/]+\/locations\/[^/]+/.exec(n);
    return m ? m[0] : null;
  }

  // ---- key rings ----

  CreateKeyRing(req: Msg): Msg {
    const parent = this.location('parent', req.parent);
    const id = this.resourceId('key_ring_id', req.keyRingId);
    const name = `${parent.name}/keyRings/${id}`;
    if (this.rings.has(name)) throw new GrpcError(status.ALREADY_EXISTS, `KeyRing ${name} already exists.`);
    const ring = { name, createMs: this.clock.nowMs() };
    this.rings.set(name, ring);
    return ringMsg(ring);
  }

  GetKeyRing(req: Msg): Msg {
    return ringMsg(this.ring(parseKeyRing('name', req.name)));
  }

  ListKeyRings(req: Msg): Msg {
    const parent = this.location('parent', req.parent);
    const filter = parseFilter(req.filter, ['name']);
    const all = [...this.rings.values()]
      .filter((r) => r.name.startsWith(`${parent.name}/keyRings/`))
      .sort((a, b) => cmp(a.name, b.name))
      .map(ringMsg)
      .filter((m) => filter.matches(m));
    const page = paginate(all, req, `rings|${parent.name}|${req.filter ?? ''}`);
    return { keyRings: page.items, nextPageToken: page.next, totalSize: filter.empty ? all.length : 0 };
  }

  // ---- crypto keys ----

  CreateCryptoKey(req: Msg): Msg {
    const parent = parseKeyRing('parent', req.parent);
    this.ring(parent);
    const id = this.resourceId('crypto_key_id', req.cryptoKeyId);
    const name = `${parent.name}/cryptoKeys/${id}`;
    if (this.keys.has(name)) throw new GrpcError(status.ALREADY_EXISTS, `CryptoKey ${name} already exists.`);
    const ck: Msg = req.cryptoKey ?? {};
    if (!ck.purpose || ck.purpose === 'CRYPTO_KEY_PURPOSE_UNSPECIFIED')
      throw invalid('crypto_key.purpose is required');
    if (ck.purpose !== 'ENCRYPT_DECRYPT') throw unimplemented(`purpose ${ck.purpose}`);
    const importOnly = ck.importOnly === true;
    if (importOnly && !req.skipInitialVersionCreation)
      throw invalid('skip_initial_version_creation must be true for a key with import_only set');
    if (ck.cryptoKeyBackend) throw unimplemented('crypto_key_backend');
    const tpl: Msg = ck.versionTemplate ?? {};
    const algorithm = tpl.algorithm ?? 'CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED';
    if (ck.versionTemplate && algorithm === 'CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED')
      throw invalid('crypto_key.version_template.algorithm is required');
    if (ck.versionTemplate && algorithm !== 'GOOGLE_SYMMETRIC_ENCRYPTION') {
      throw invalid(
        `crypto_key.version_template.algorithm ${algorithm} is not compatible with purpose ENCRYPT_DECRYPT`,
      );
    }
    const pl = tpl.protectionLevel ?? 'PROTECTION_LEVEL_UNSPECIFIED';
    let protection: Protection;
    if (pl === 'PROTECTION_LEVEL_UNSPECIFIED' || pl === 'SOFTWARE') protection = 'SOFTWARE';
    else if (pl === 'HSM') protection = 'HSM';
    else throw unimplemented(`protection_level ${pl}`);
    const destroyScheduledS =
      ck.destroyScheduledDuration === null || ck.destroyScheduledDuration === undefined
        ? DEFAULT_DESTROY_S
        : durationS('crypto_key.destroy_scheduled_duration', ck.destroyScheduledDuration);
    if (destroyScheduledS < MIN_DESTROY_S || destroyScheduledS > MAX_DESTROY_S) {
      throw invalid(
        `crypto_key.destroy_scheduled_duration must be between 24 hours and 120 days (got ${destroyScheduledS}s)`,
      );
    }
    const now = this.clock.nowMs();
    const key: KeyRec = {
      name,
      tag: randomBytes(8),
      createMs: now,
      protection,
      importOnly,
      labels: checkLabels(ck.labels ?? {}),
      destroyScheduledS,
      versions: [],
    };
    this.applyRotation(key, ck, ck.rotationPeriod != null, ck.nextRotationTime != null, 'crypto_key');
    if (!req.skipInitialVersionCreation) key.primary = this.addVersion(key, now).id;
    this.keys.set(name, key);
    return this.keyMsg(key);
  }

  GetCryptoKey(req: Msg): Msg {
    return this.keyMsg(this.key(parseCryptoKey('name', req.name)));
  }

  ListCryptoKeys(req: Msg): Msg {
    const parent = parseKeyRing('parent', req.parent);
    this.ring(parent);
    const filter = parseFilter(req.filter, ['name', 'purpose', 'labels', 'primary.state']);
    const all = [...this.keys.values()]
      .filter((k) => k.name.startsWith(`${parent.name}/cryptoKeys/`))
      .sort((a, b) => cmp(a.name, b.name))
      .map((k) => this.keyMsg(k))
      .filter((m) => filter.matches(m));
    const page = paginate(all, req, `keys|${parent.name}|${req.filter ?? ''}`);
    return { cryptoKeys: page.items, nextPageToken: page.next, totalSize: filter.empty ? all.length : 0 };
  }

  UpdateCryptoKey(req: Msg): Msg {
    const ck: Msg | null = req.cryptoKey;
    if (!ck) throw invalid('crypto_key is required');
    const key = this.key(parseCryptoKey('crypto_key.name', ck.name));
    const paths = maskPaths(req.updateMask);
    const allowed = new Set(['rotation_period', 'next_rotation_time', 'labels']);
    for (const p of paths) {
      if (!allowed.has(p)) throw invalid(`update_mask path "${p}" cannot be updated`);
    }
    // Validate everything before changing anything.
    const labels = paths.includes('labels') ? checkLabels(ck.labels ?? {}) : key.labels;
    const next: KeyRec = { ...key };
    this.applyRotation(
      next,
      ck,
      paths.includes('rotation_period'),
      paths.includes('next_rotation_time'),
      'crypto_key',
    );
    key.labels = labels;
    key.rotationPeriodS = next.rotationPeriodS;
    key.nextRotationMs = next.nextRotationMs;
    return this.keyMsg(key);
  }

  UpdateCryptoKeyPrimaryVersion(req: Msg): Msg {
    const key = this.key(parseCryptoKey('name', req.name));
    const raw = req.cryptoKeyVersionId;
    if (typeof raw !== 'string' || raw.length === 0) throw invalid('crypto_key_version_id is required');
    if (!/^\d{1,10}$/.test(raw)) throw invalid(`crypto_key_version_id "${raw}" is not a version id`);
    const v = key.versions.find((x) => x.id === Number(raw));
    if (!v) throw notFound(`CryptoKeyVersion ${key.name}/cryptoKeyVersions/${raw} not found.`);
    if (v.state !== 'ENABLED') {
      throw precondition(`${key.name}/cryptoKeyVersions/${raw} is not enabled (state ${v.state}).`);
    }
    key.primary = v.id;
    return this.keyMsg(key);
  }

  // ---- versions ----

  CreateCryptoKeyVersion(req: Msg): Msg {
    const key = this.key(parseCryptoKey('parent', req.parent));
    if (key.importOnly) {
      throw precondition(
        `CryptoKey ${key.name} has import_only set: its versions can only be created with ImportCryptoKeyVersion.`,
      );
    }
    const cv: Msg = req.cryptoKeyVersion ?? {};
    if (cv.state && cv.state !== 'CRYPTO_KEY_VERSION_STATE_UNSPECIFIED' && cv.state !== 'ENABLED')
      throw invalid(`crypto_key_version.state ${cv.state} cannot be set on creation`);
    return this.versionMsg(key, this.addVersion(key, this.clock.nowMs()));
  }

  GetCryptoKeyVersion(req: Msg): Msg {
    const n = parseVersion('name', req.name);
    const key = this.key(n);
    return this.versionMsg(key, this.version(key, n));
  }

  ListCryptoKeyVersions(req: Msg): Msg {
    const key = this.key(parseCryptoKey('parent', req.parent));
    const filter = parseFilter(req.filter, ['name', 'state', 'protection_level', 'algorithm']);
    const all = key.versions.map((v) => this.versionMsg(key, v)).filter((m) => filter.matches(m));
    const page = paginate(all, req, `versions|${key.name}|${req.filter ?? ''}`);
    return {
      cryptoKeyVersions: page.items,
      nextPageToken: page.next,
      totalSize: filter.empty ? all.length : 0,
    };
  }

  UpdateCryptoKeyVersion(req: Msg): Msg {
    const cv: Msg | null = req.cryptoKeyVersion;
    if (!cv) throw invalid('crypto_key_version is required');
    const n = parseVersion('crypto_key_version.name', cv.name);
    const key = this.key(n);
    const v = this.version(key, n);
    const paths = maskPaths(req.updateMask);
    for (const p of paths) if (p !== 'state') throw invalid(`update_mask path "${p}" cannot be updated`);
    const to = cv.state;
    if (to !== 'ENABLED' && to !== 'DISABLED')
      throw invalid(`crypto_key_version.state must be ENABLED or DISABLED (got ${to})`);
    if (v.state !== 'ENABLED' && v.state !== 'DISABLED') {
      throw precondition(`${n.name} is ${v.state}; only ENABLED and DISABLED versions can change state.`);
    }
    v.state = to;
    return this.versionMsg(key, v);
  }

  DestroyCryptoKeyVersion(req: Msg): Msg {
    const n = parseVersion('name', req.name);
    const key = this.key(n);
    const v = this.version(key, n);
    if (v.state !== 'ENABLED' && v.state !== 'DISABLED') {
      throw precondition(`${n.name} is ${v.state}; only ENABLED and DISABLED versions can be destroyed.`);
    }
    v.state = 'DESTROY_SCHEDULED';
    v.destroyMs = this.clock.nowMs() + key.destroyScheduledS * 1000;
    return this.versionMsg(key, v);
  }

  RestoreCryptoKeyVersion(req: Msg): Msg {
    const n = parseVersion('name', req.name);
    const key = this.key(n);
    const v = this.version(key, n);
    if (v.state !== 'DESTROY_SCHEDULED')
      throw precondition(`${n.name} is ${v.state}; only DESTROY_SCHEDULED versions can be restored.`);
    v.state = 'DISABLED';
    v.destroyMs = undefined;
    return this.versionMsg(key, v);
  }

  // ---- import ----

  /**
   * Tests: a copy of the material a version holds (null when it holds none), so a test can
   * prove an import brought exactly the bytes it wrapped. Not an RPC: Cloud KMS never reveals it.
   */
  materialOf(versionName: string): Buffer | null {
    const n = parseVersion('name', versionName);
    const v = this.keys.get(n.keyName)?.versions.find((x) => x.id === n.version);
    return v?.material ? Buffer.from(v.material) : null;
  }

  /** Tests: keep new import jobs PENDING_GENERATION (true) until released (false). */
  holdImportJobGeneration(on: boolean): void {
    this.importJobs.holdGeneration(on);
  }

  CreateImportJob(req: Msg): Msg {
    const parent = parseKeyRing('parent', req.parent);
    this.ring(parent);
    const id = this.resourceId('import_job_id', req.importJobId);
    return this.importJobs.message(this.importJobs.create(parent.name, id, req.importJob));
  }

  GetImportJob(req: Msg): Msg {
    const n = parseImportJob('name', req.name);
    this.ring(parseKeyRing('name', n.ringName));
    return this.importJobs.message(this.importJobs.get(n));
  }

  ListImportJobs(req: Msg): Msg {
    const parent = parseKeyRing('parent', req.parent);
    this.ring(parent);
    const filter = parseFilter(req.filter, ['name', 'state', 'import_method', 'protection_level']);
    const all = this.importJobs
      .inRing(parent.name)
      .sort((a, b) => cmp(a.name, b.name))
      .map((j) => this.importJobs.message(j))
      .filter((m) => filter.matches(m));
    const page = paginate(all, req, `importJobs|${parent.name}|${req.filter ?? ''}`);
    return { importJobs: page.items, nextPageToken: page.next, totalSize: filter.empty ? all.length : 0 };
  }

  /**
   * Validates the request and the wrapped key's length at once (INVALID_ARGUMENT, nothing
   * created); the unwrapping itself completes after the response, as in the service: the
   * version answers PENDING_IMPORT, then turns ENABLED or IMPORT_FAILED with a reason.
   */
  ImportCryptoKeyVersion(req: Msg): Msg {
    const keyName = parseCryptoKey('parent', req.parent);
    const key = this.key(keyName);
    const jobName = parseImportJob('import_job', req.importJob);
    this.ring(parseKeyRing('import_job', jobName.ringName));
    const job = this.importJobs.get(jobName);
    const algorithm = req.algorithm ?? 'CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED';
    if (algorithm === 'CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED') throw invalid('algorithm is required');
    if (algorithm !== 'GOOGLE_SYMMETRIC_ENCRYPTION')
      throw invalid(`algorithm ${algorithm} is not compatible with purpose ENCRYPT_DECRYPT`);
    const primary = bytes(req.wrappedKey);
    const legacy = bytes(req.rsaAesWrappedKey);
    if (primary.length > 0 && legacy.length > 0)
      throw invalid('only one of wrapped_key and rsa_aes_wrapped_key may be set');
    const wrapped = primary.length > 0 ? primary : legacy;
    if (wrapped.length === 0) throw invalid('wrapped_key is required');
    if (jobName.project !== keyName.project || jobName.location !== keyName.location)
      throw invalid(`import_job ${job.name} must be in the same project and location as ${key.name}`);
    let target: VersionRec | undefined;
    if (req.cryptoKeyVersion) {
      const vn = parseVersion('crypto_key_version', req.cryptoKeyVersion);
      if (vn.keyName !== key.name)
        throw invalid(`crypto_key_version ${vn.name} is not a version of ${key.name}`);
      target = this.version(key, vn);
      if (!target.imported) {
        throw precondition(
          `${vn.name} was not created by ImportCryptoKeyVersion; only imported versions can be re-imported.`,
        );
      }
      if (target.state !== 'DESTROYED' && target.state !== 'IMPORT_FAILED') {
        throw precondition(
          `${vn.name} is ${target.state}; only DESTROYED or IMPORT_FAILED versions can be re-imported.`,
        );
      }
    }
    const jobState = this.importJobs.state(job);
    if (jobState !== 'ACTIVE')
      throw precondition(`ImportJob ${job.name} cannot be used: its state is ${jobState}, not ACTIVE.`);
    if (job.protection !== key.protection) {
      throw precondition(
        `ImportJob ${job.name} has protection level ${job.protection}, but ${key.name} holds ${key.protection} versions.`,
      );
    }
    this.importJobs.checkLength(job, wrapped, SYMMETRIC_BYTES);
    const outcome = this.importJobs.unwrap(job, wrapped, SYMMETRIC_BYTES);
    const now = this.clock.nowMs();
    const v: VersionRec = target ?? {
      id: key.versions.length + 1,
      state: 'PENDING_IMPORT',
      createMs: now,
      imported: true,
    };
    v.state = 'PENDING_IMPORT';
    v.importJob = job.name;
    v.importMs = now;
    v.importFailureReason = undefined;
    v.destroyMs = undefined;
    v.destroyEventMs = undefined;
    v.pending = outcome;
    if (!target) key.versions.push(v);
    return this.versionMsg(key, v);
  }

  private settleImport(v: VersionRec): void {
    const outcome = v.pending!;
    v.pending = undefined;
    if ('failure' in outcome) {
      v.state = 'IMPORT_FAILED';
      v.importFailureReason = outcome.failure;
      return;
    }
    const tag = createHmac('sha256', this.tagSecret).update(outcome.material).digest();
    if (v.materialTag && !v.materialTag.equals(tag)) {
      outcome.material.fill(0);
      v.state = 'IMPORT_FAILED';
      v.importFailureReason = MISMATCH;
      return;
    }
    v.materialTag = tag;
    v.material = outcome.material;
    v.state = 'ENABLED';
  }

  // ---- cryptography ----

  Encrypt(req: Msg): Msg {
    const n = parseKeyOrVersion('name', req.name);
    const key = this.key(n);
    let v: VersionRec;
    if ('version' in n) v = this.version(key, n);
    else {
      if (key.primary === undefined) throw precondition(`${key.name} has no primary version.`);
      v = key.versions.find((x) => x.id === key.primary)!;
    }
    const vName = `${key.name}/cryptoKeyVersions/${v.id}`;
    if (v.state !== 'ENABLED' || !v.material)
      throw precondition(`${vName} is not enabled, current state is: ${v.state}.`);
    const plaintext = bytes(req.plaintext);
    const aad = bytes(req.additionalAuthenticatedData);
    if (plaintext.length === 0) throw invalid('plaintext is required');
    const limit = key.protection === 'HSM' ? MAX_HSM_BYTES : MAX_SOFTWARE_BYTES;
    if (key.protection === 'HSM' && plaintext.length + aad.length > limit)
      throw invalid(`plaintext and additional_authenticated_data together exceed ${limit} bytes`);
    if (plaintext.length > limit) throw invalid(`plaintext exceeds ${limit} bytes`);
    if (aad.length > limit) throw invalid(`additional_authenticated_data exceeds ${limit} bytes`);
    const ptOk = checkCrc('plaintext', plaintext, req.plaintextCrc32c);
    const aadOk = checkCrc('additional_authenticated_data', aad, req.additionalAuthenticatedDataCrc32c);

    const header = Buffer.alloc(HEADER);
    header[0] = MAGIC;
    header.writeUInt32BE(v.id, 1);
    key.tag.copy(header, 5);
    const iv = randomBytes(IV);
    const cipher = createCipheriv('aes-256-gcm', v.material, iv);
    cipher.setAAD(Buffer.concat([header, aad]));
    const ciphertext = Buffer.concat([
      header,
      iv,
      cipher.update(plaintext),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return {
      name: vName,
      ciphertext,
      ciphertextCrc32c: { value: String(crc32c(ciphertext)) },
      verifiedPlaintextCrc32c: ptOk,
      verifiedAdditionalAuthenticatedDataCrc32c: aadOk,
      protectionLevel: key.protection,
    };
  }

  Decrypt(req: Msg): Msg {
    const name: unknown = req.name;
    if (typeof name === 'string' && name.includes('/cryptoKeyVersions/'))
      throw invalid('name must be a CryptoKey, not a CryptoKeyVersion: the server chooses the version');
    const key = this.key(parseCryptoKey('name', name));
    const ciphertext = bytes(req.ciphertext);
    const aad = bytes(req.additionalAuthenticatedData);
    if (ciphertext.length === 0) throw invalid('ciphertext is required');
    checkCrc('ciphertext', ciphertext, req.ciphertextCrc32c);
    checkCrc('additional_authenticated_data', aad, req.additionalAuthenticatedDataCrc32c);
    const bad = () => invalid('Decryption failed: the ciphertext is invalid.');
    if (ciphertext.length < HEADER + IV + GCM_TAG || ciphertext[0] !== MAGIC) throw bad();
    const header = ciphertext.subarray(0, HEADER);
    if (!header.subarray(5, HEADER).equals(key.tag)) throw bad();
    const v = key.versions.find((x) => x.id === header.readUInt32BE(1));
    if (!v) throw bad();
    const vName = `${key.name}/cryptoKeyVersions/${v.id}`;
    if (v.state !== 'ENABLED' || !v.material)
      throw precondition(`${vName} is not enabled, current state is: ${v.state}.`);
    const iv = ciphertext.subarray(HEADER, HEADER + IV);
    const body = ciphertext.subarray(HEADER + IV, ciphertext.length - GCM_TAG);
    const decipher = createDecipheriv('aes-256-gcm', v.material, iv);
    decipher.setAAD(Buffer.concat([header, aad]));
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
    } catch {
      throw bad();
    }
    return {
      plaintext,
      plaintextCrc32c: { value: String(crc32c(plaintext)) },
      usedPrimary: key.primary === v.id,
      protectionLevel: key.protection,
    };
  }

  // ---- helpers ----

  private location(field: string, value: unknown): LocationName {
    const l = parseLocation(field, value);
    this.checkPlace(l);
    return l;
  }

  private checkPlace(n: LocationName): void {
    if (this.projects && !this.projects.has(n.project)) {
      throw new GrpcError(
        status.PERMISSION_DENIED,
        `Permission denied on resource project ${n.project} (or it may not exist).`,
      );
    }
    if (!this.locations.has(n.location)) {
      throw notFound(
        `KMS_RESOURCE_NOT_FOUND_IN_LOCATION: Cloud KMS is not available in location '${n.location}'.`,
      );
    }
  }

  private ring(n: KeyRingName): RingRec {
    this.checkPlace(n);
    const r = this.rings.get(n.name);
    if (!r) throw notFound(`KeyRing ${n.name} not found.`);
    return r;
  }

  private key(n: CryptoKeyName | VersionName): KeyRec {
    const keyName = 'keyName' in n ? n.keyName : n.name;
    this.ring(parseKeyRing('name', keyName.slice(0, keyName.indexOf('/cryptoKeys/'))));
    const k = this.keys.get(keyName);
    if (!k) throw notFound(`CryptoKey ${keyName} not found.`);
    return k;
  }

  private version(key: KeyRec, n: VersionName): VersionRec {
    const v = key.versions.find((x) => x.id === n.version);
    if (!v) throw notFound(`CryptoKeyVersion ${n.name} not found.`);
    return v;
  }

  private resourceId(field: string, value: unknown): string {
    if (typeof value !== 'string' || value.length === 0) throw invalid(`${field} is required`);
    if (!RESOURCE_ID.test(value)) throw invalid(`${field} "${value}" must match [a-zA-Z0-9_-]{1,63}`);
    return value;
  }

  private addVersion(key: KeyRec, atMs: number): VersionRec {
    const v: VersionRec = {
      id: key.versions.length + 1,
      state: 'ENABLED',
      createMs: atMs,
      material: randomBytes(32),
    };
    key.versions.push(v);
    return v;
  }

  /**
   * Sets rotation_period / next_rotation_time on `key` from message `ck`, validating as Cloud
   * KMS does: the period is 24 h-876,000 h, and a period needs a next rotation time.
   */
  private applyRotation(key: KeyRec, ck: Msg, periodGiven: boolean, nextGiven: boolean, field: string): void {
    if (periodGiven) {
      if (ck.rotationPeriod == null) key.rotationPeriodS = undefined;
      else {
        const s = durationS(`${field}.rotation_period`, ck.rotationPeriod);
        if (s < MIN_ROTATION_S || s > MAX_ROTATION_S)
          throw invalid(`${field}.rotation_period must be between 24 hours and 876,000 hours (got ${s}s)`);
        key.rotationPeriodS = s;
      }
    }
    if (nextGiven) {
      if (ck.nextRotationTime == null) key.nextRotationMs = undefined;
      else key.nextRotationMs = timestampMs(`${field}.next_rotation_time`, ck.nextRotationTime);
    }
    if (key.rotationPeriodS !== undefined && key.nextRotationMs === undefined)
      throw invalid(`${field}.next_rotation_time must be set when rotation_period is set`);
    // Automatic rotation generates versions, which an import-only key cannot hold.
    if (key.importOnly && (key.rotationPeriodS !== undefined || key.nextRotationMs !== undefined))
      throw invalid(`${field} has import_only set: it cannot have a rotation schedule`);
  }

  private keyMsg(k: KeyRec): Msg {
    const primary = k.primary === undefined ? null : k.versions.find((v) => v.id === k.primary)!;
    return {
      name: k.name,
      primary: primary ? this.versionMsg(k, primary) : null,
      purpose: 'ENCRYPT_DECRYPT',
      createTime: ts(k.createMs),
      nextRotationTime: k.nextRotationMs === undefined ? null : ts(k.nextRotationMs),
      ...(k.rotationPeriodS !== undefined
        ? { rotationPeriod: { seconds: String(k.rotationPeriodS), nanos: 0 } }
        : {}),
      versionTemplate: { protectionLevel: k.protection, algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION' },
      labels: { ...k.labels },
      importOnly: k.importOnly,
      destroyScheduledDuration: { seconds: String(k.destroyScheduledS), nanos: 0 },
    };
  }

  private versionMsg(k: KeyRec, v: VersionRec): Msg {
    return {
      name: `${k.name}/cryptoKeyVersions/${v.id}`,
      state: v.state,
      protectionLevel: k.protection,
      algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
      createTime: ts(v.createMs),
      // Imported material was generated elsewhere: the service leaves generate_time unset.
      generateTime: v.imported ? null : ts(v.createMs),
      destroyTime: v.destroyMs === undefined ? null : ts(v.destroyMs),
      destroyEventTime: v.destroyEventMs === undefined ? null : ts(v.destroyEventMs),
      importJob: v.importJob ?? '',
      importTime: v.importMs === undefined ? null : ts(v.importMs),
      importFailureReason: v.state === 'IMPORT_FAILED' ? (v.importFailureReason ?? '') : '',
      reimportEligible: v.imported === true,
    };
  }
}

function ringMsg(r: RingRec): Msg {
  return { name: r.name, createTime: ts(r.createMs) };
}

function ts(ms: number): Timestamp {
  const s = Math.floor(ms / 1000);
  return { seconds: String(s), nanos: (ms - s * 1000) * 1_000_000 };
}

function timestampMs(field: string, t: Msg): number {
  const s = Number(t.seconds ?? 0);
  const nanos = Number(t.nanos ?? 0);
  if (!Number.isFinite(s) || !Number.isFinite(nanos) || nanos < 0 || nanos > 999_999_999)
    throw invalid(`${field} is not a valid timestamp`);
  return s * 1000 + Math.floor(nanos / 1_000_000);
}

function durationS(field: string, d: Msg): number {
  const s = Number(d.seconds ?? 0);
  const nanos = Number(d.nanos ?? 0);
  if (!Number.isFinite(s) || !Number.isFinite(nanos)) throw invalid(`${field} is not a valid duration`);
  if (nanos !== 0) throw invalid(`${field} must be a whole number of seconds`);
  return s;
}

function bytes(b: unknown): Buffer {
  if (b === null || b === undefined) return Buffer.alloc(0);
  if (Buffer.isBuffer(b)) return b;
  if (b instanceof Uint8Array) return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (typeof b === 'string') return Buffer.from(b, 'base64');
  throw invalid('bytes field has an unexpected encoding');
}

/** Checks an optional CRC32C request field; returns whether it was given (and matched). */
function checkCrc(field: string, data: Buffer, crcField: unknown): boolean {
  const given = int64Value(crcField);
  if (given === undefined) return false;
  if (!Number.isInteger(given) || given < 0 || given > 0xffffffff)
    throw invalid(`${field}_crc32c must be between 0 and 2^32-1`);
  if (given !== crc32c(data)) {
    throw invalid(`The checksum in field ${field}_crc32c did not match the data in field ${field}.`);
  }
  return true;
}

function checkLabels(labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > 64) throw invalid(`a resource has at most 64 labels (got ${entries.length})`);
  for (const [k, v] of entries) {
    if (!LABEL_KEY.test(k))
      throw invalid(
        `label key "${k}" must start with a lowercase letter; 1-63 lowercase letters, digits, _ or -`,
      );
    if (!LABEL_VALUE.test(v))
      throw invalid(`label value "${v}" of "${k}": 0-63 lowercase letters, digits, _ or -`);
  }
  return { ...labels };
}

function maskPaths(mask: Msg | null | undefined): string[] {
  const paths: string[] = (mask?.paths ?? []).map((p: string) =>
    p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
  );
  if (paths.length === 0) throw invalid('update_mask is required and must name at least one field');
  return paths;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Filter {
  empty: boolean;
  matches(m: Msg): boolean;
}

/**
 * The subset of the list filter syntax (https://cloud.google.com/kms/docs/sorting-and-filtering)
 * the emulator understands: `field = value`, `field != value`, `field : value` terms on the
 * given fields (and `labels.<k>`), joined by AND or OR (AND binds tighter), optional quotes.
 */
export function parseFilter(text: unknown, fields: string[]): Filter {
  if (typeof text !== 'string' || text.trim() === '') return { empty: true, matches: () => true };
  const ors = text.split(/\s+OR\s+/).map((group) =>
    group.split(/\s+AND\s+/).map((term) => {
      const m = /^\s*([a-z_.A-Z0-9]+)\s*(!=|=|:)\s*"?([^"]*?)"?\s*$/.exec(term);
      if (!m) throw invalid(`filter term "${term.trim()}" is not understood`);
      const [, field, op, value] = m as unknown as [string, string, string, string];
      const base = field.startsWith('labels.') ? 'labels' : field;
      if (!fields.includes(base)) throw invalid(`filter field "${field}" is not supported here`);
      return { field, op, value };
    }),
  );
  const get = (msg: Msg, path: string): string | undefined => {
    let cur: unknown = msg;
    for (const part of path.split('.')) {
      const camel = part.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      cur = cur && typeof cur === 'object' ? (cur as Msg)[camel] : undefined;
    }
    return cur === undefined || cur === null ? undefined : String(cur);
  };
  return {
    empty: false,
    matches: (msg) =>
      ors.some((ands) =>
        ands.every(({ field, op, value }) => {
          const actual = get(msg, field);
          if (op === '=') return actual === value;
          if (op === '!=') return actual !== value;
          return actual !== undefined && (value === '*' || actual.includes(value));
        }),
      ),
  };
}

/** Offset-based page tokens bound to the query they came from, so reusing one elsewhere fails. */
function paginate<T>(all: T[], req: Msg, query: string): { items: T[]; next: string } {
  const size = Number(req.pageSize ?? 0);
  if (!Number.isInteger(size) || size < 0) throw invalid('page_size must not be negative');
  const limit = size === 0 ? DEFAULT_PAGE : Math.min(size, MAX_PAGE);
  let offset = 0;
  if (req.pageToken) {
    let parsed: { o?: unknown; q?: unknown } = {};
    try {
      parsed = JSON.parse(Buffer.from(String(req.pageToken), 'base64url').toString('utf8'));
    } catch {
      // fall through to the check below
    }
    if (typeof parsed.o !== 'number' || parsed.q !== query || parsed.o < 0)
      throw invalid('page_token is invalid or belongs to another request');
    offset = parsed.o;
  }
  const items = all.slice(offset, offset + limit);
  const next =
    offset + limit < all.length
      ? Buffer.from(JSON.stringify({ o: offset + limit, q: query })).toString('base64url')
      : '';
  return { items, next };
}
