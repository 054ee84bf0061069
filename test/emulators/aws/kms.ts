import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  generateKeyPair,
  type KeyObject,
  privateDecrypt,
  randomBytes,
  randomUUID,
} from 'node:crypto';
import { promisify } from 'node:util';
import type { SimClock } from './clock.js';
import {
  AwsError,
  epoch,
  optBlob,
  optBool,
  optEnum,
  optInt,
  optString,
  optStringMap,
  paginate,
  reqString,
  validationError,
} from './protocol.js';

/**
 * AWS KMS, as the API Reference describes it, for the operations rekey uses. Real AES-256-GCM
 * under per-rotation key material; state per Region (the Region comes from the request's SigV4
 * credential scope), one account.
 */

export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';
export type KeySpec =
  | 'SYMMETRIC_DEFAULT'
  | 'RSA_2048'
  | 'RSA_3072'
  | 'RSA_4096'
  | 'ECC_NIST_P256'
  | 'ECC_NIST_P384'
  | 'ECC_NIST_P521'
  | 'ECC_SECG_P256K1'
  | 'HMAC_224'
  | 'HMAC_256'
  | 'HMAC_384'
  | 'HMAC_512';
const KEY_SPECS: readonly KeySpec[] = [
  'SYMMETRIC_DEFAULT',
  'RSA_2048',
  'RSA_3072',
  'RSA_4096',
  'ECC_NIST_P256',
  'ECC_NIST_P384',
  'ECC_NIST_P521',
  'ECC_SECG_P256K1',
  'HMAC_224',
  'HMAC_256',
  'HMAC_384',
  'HMAC_512',
];
type KeyUsage = 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY' | 'GENERATE_VERIFY_MAC' | 'KEY_AGREEMENT';
const KEY_USAGES: readonly KeyUsage[] = [
  'ENCRYPT_DECRYPT',
  'SIGN_VERIFY',
  'GENERATE_VERIFY_MAC',
  'KEY_AGREEMENT',
];
type Origin = 'AWS_KMS' | 'EXTERNAL' | 'AWS_CLOUDHSM' | 'EXTERNAL_KEY_STORE';
const ORIGINS: readonly Origin[] = ['AWS_KMS', 'EXTERNAL', 'AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE'];

/** Key usages each spec allows, per the CreateKey reference. */
const USAGES_BY_SPEC = (spec: KeySpec): KeyUsage[] => {
  if (spec === 'SYMMETRIC_DEFAULT') return ['ENCRYPT_DECRYPT'];
  if (spec.startsWith('RSA_')) return ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'];
  if (spec.startsWith('HMAC_')) return ['GENERATE_VERIFY_MAC'];
  if (spec === 'ECC_SECG_P256K1') return ['SIGN_VERIFY'];
  return ['SIGN_VERIFY', 'KEY_AGREEMENT'];
};

export const MAX_ON_DEMAND_ROTATIONS = 25;
export const ROTATION_PERIOD_DAYS = { min: 90, max: 2560, default: 365 };
export const DELETION_WINDOW_DAYS = { min: 7, max: 30, default: 30 };
const DAY_MS = 86_400_000;

interface Material {
  id: string;
  key: Buffer;
  createdAt: number;
  /** Absent for the first material. */
  rotationType?: 'AUTOMATIC' | 'ON_DEMAND';
  /** Imported material (EXTERNAL keys) only. */
  imported?: ImportedState;
}

type ExpirationModel = 'KEY_MATERIAL_EXPIRES' | 'KEY_MATERIAL_DOES_NOT_EXPIRE';
interface ImportedState {
  /** False once deleted or expired: the id stays, the bytes are zeroed, a re-import restores them. */
  present: boolean;
  expirationModel: ExpirationModel;
  validTo?: number;
  description?: string;
}

/** One GetParametersForImport answer: a fresh RSA pair, usable with its token for 24 hours. */
interface ImportParameters {
  keyId: string;
  region: string;
  algorithm: WrappingAlgorithm;
  privateKey: KeyObject;
  validTo: number;
}

const WRAPPING_ALGORITHMS = [
  'RSAES_PKCS1_V1_5',
  'RSAES_OAEP_SHA_1',
  'RSAES_OAEP_SHA_256',
  'RSA_AES_KEY_WRAP_SHA_1',
  'RSA_AES_KEY_WRAP_SHA_256',
  'SM2PKE',
] as const;
type WrappingAlgorithm = (typeof WRAPPING_ALGORITHMS)[number];
const WRAPPING_KEY_SPECS = ['RSA_2048', 'RSA_3072', 'RSA_4096', 'SM2'] as const;
export const IMPORT_TOKEN_VALID_MS = 24 * 3_600_000;
/** ImportKeyMaterial's ValidTo may be at most this far from the request. */
const MAX_VALID_TO_MS = 365 * 86_400_000;
const generateRsa = promisify(generateKeyPair);

export interface EmulatedKey {
  id: string;
  arn: string;
  region: string;
  createdAt: number;
  description: string;
  spec: KeySpec;
  usage: KeyUsage;
  origin: Origin;
  manager: 'CUSTOMER' | 'AWS';
  multiRegion: boolean;
  state: KeyState;
  deletionDate?: number;
  pendingWindowDays?: number;
  tags: Map<string, string>;
  /** Oldest first; the last one is current. Empty for keys without symmetric material. */
  materials: Material[];
  /** Imported material waiting for RotateKeyOnDemand (KeyMaterialState PENDING_ROTATION). */
  pendingMaterial?: Material;
  rotation?: { periodDays: number; next: number };
  onDemandCount: number;
  onDemandStartedAt?: number;
  lastUsage?: { operation: string; at: number; requestId: string };
  /** The key policy document (JSON text), as CreateKey set it or the default one. */
  policy: string;
  /**
   * Multi-Region keys: the ARNs of every related key, the primary first. Shared by the primary
   * and its replicas (the same array), like their key material, which rotates for all of them.
   */
  related?: string[];
}

interface Alias {
  name: string;
  target: string;
  createdAt: number;
  updatedAt: number;
}

class RegionState {
  readonly keys = new Map<string, EmulatedKey>();
  readonly aliases = new Map<string, Alias>();
}

export interface KmsOptions {
  account: string;
  clock: SimClock;
  /** Simulated time an on-demand rotation takes; 0 completes it within the request. */
  onDemandRotationMs?: number;
  /** When GetKeyLastUsage tracking began (TrackingStartDate is the later of this and key creation). */
  trackingStart?: Date;
}

const CIPHERTEXT_MAGIC = Buffer.from('RKE1');
const SYMMETRIC_ALGOS = ['SYMMETRIC_DEFAULT'];

export class KmsService {
  private readonly regions = new Map<string, RegionState>();
  /** Import tokens (base64) handed out by GetParametersForImport. */
  private readonly importTokens = new Map<string, ImportParameters>();
  readonly account: string;
  private readonly clock: SimClock;
  onDemandRotationMs: number;
  private readonly trackingStart: number;

  constructor(opts: KmsOptions) {
    this.account = opts.account;
    this.clock = opts.clock;
    this.onDemandRotationMs = opts.onDemandRotationMs ?? 0;
    this.trackingStart = (opts.trackingStart ?? new Date('2025-01-01T00:00:00Z')).getTime();
  }

  reset(): void {
    for (const r of this.regions.values()) for (const k of r.keys.values()) wipe(k);
    this.regions.clear();
    this.importTokens.clear();
  }

  private region(name: string): RegionState {
    let r = this.regions.get(name);
    if (!r) {
      r = new RegionState();
      this.regions.set(name, r);
    }
    return r;
  }

  /** Runs whatever fell due on the simulated clock: rotations and deletions. */
  tick(): void {
    const now = this.clock.nowMs();
    for (const r of this.regions.values()) {
      for (const k of [...r.keys.values()]) {
        if (k.state === 'PendingDeletion' && k.deletionDate !== undefined && k.deletionDate <= now) {
          r.keys.delete(k.id);
          for (const [name, a] of r.aliases) if (a.target === k.id) r.aliases.delete(name);
          wipe(k);
          continue;
        }
        if (k.onDemandStartedAt !== undefined && k.onDemandStartedAt + this.onDemandRotationMs <= now) {
          completeRotation(k, k.onDemandStartedAt + this.onDemandRotationMs);
          k.onDemandStartedAt = undefined;
        }
        // Imported material is deleted when its ValidTo passes; the key waits for a re-import.
        for (const m of k.materials) {
          const imp = m.imported;
          if (imp?.present && imp.validTo !== undefined && imp.validTo <= now) {
            imp.present = false;
            m.key.fill(0);
            if (k.state !== 'PendingDeletion') k.state = 'PendingImport';
          }
        }
        // KMS does not rotate disabled or pending-deletion keys; it catches up once re-enabled.
        while (k.rotation && k.state === 'Enabled' && k.rotation.next <= now) {
          addMaterial(k, k.rotation.next, 'AUTOMATIC');
          k.rotation.next += k.rotation.periodDays * DAY_MS;
        }
      }
    }
  }

  // ---- in-process control helpers (tests) ----

  /** Keys of a Region, for inspection. */
  keys(region: string): EmulatedKey[] {
    return [...this.region(region).keys.values()];
  }

  /** Adds an AWS managed key (as AWS services create them) with its `alias/aws/<service>` alias. */
  createAwsManagedKey(region: string, service: string): EmulatedKey {
    const k = this.newKey(region, {
      spec: 'SYMMETRIC_DEFAULT',
      usage: 'ENCRYPT_DECRYPT',
      origin: 'AWS_KMS',
      multiRegion: false,
      description: `Default key that protects my ${service} data when no other key is defined`,
      manager: 'AWS',
    });
    const now = this.clock.nowMs();
    this.region(region).aliases.set(`alias/aws/${service}`, {
      name: `alias/aws/${service}`,
      target: k.id,
      createdAt: now,
      updatedAt: now,
    });
    // AWS managed keys rotate every year, always.
    k.rotation = { periodDays: 365, next: now + 365 * DAY_MS };
    return k;
  }

  // ---- dispatch ----

  /** Answers one request; GetParametersForImport answers asynchronously (it makes an RSA pair). */
  handle(op: string, region: string, body: Record<string, unknown>, requestId: string): unknown {
    this.tick();
    const r = this.region(region);
    const ctx: Ctx = { r, region, requestId, now: this.clock.nowMs() };
    switch (op) {
      case 'CreateKey':
        return this.createKey(ctx, body);
      case 'DescribeKey':
        return { KeyMetadata: this.metadata(this.resolve(ctx, reqString(body, 'KeyId'), true)) };
      case 'ListKeys':
        return this.listKeys(ctx, body);
      case 'CreateAlias':
        return this.createAlias(ctx, body);
      case 'UpdateAlias':
        return this.updateAlias(ctx, body);
      case 'DeleteAlias':
        return this.deleteAlias(ctx, body);
      case 'ListAliases':
        return this.listAliases(ctx, body);
      case 'TagResource':
        return this.tagResource(ctx, body);
      case 'UntagResource':
        return this.untagResource(ctx, body);
      case 'ListResourceTags':
        return this.listResourceTags(ctx, body);
      case 'UpdateKeyDescription': {
        const k = this.customerKey(ctx, body);
        this.notPendingDeletion(k);
        k.description = optString(body, 'Description', 0, 8192) ?? '';
        return {};
      }
      case 'EnableKey':
      case 'DisableKey':
        return this.setEnabled(ctx, body, op === 'EnableKey');
      case 'ScheduleKeyDeletion':
        return this.scheduleDeletion(ctx, body);
      case 'CancelKeyDeletion':
        return this.cancelDeletion(ctx, body);
      case 'EnableKeyRotation':
        return this.enableRotation(ctx, body);
      case 'DisableKeyRotation':
        return this.disableRotation(ctx, body);
      case 'GetKeyRotationStatus':
        return this.rotationStatus(ctx, body);
      case 'RotateKeyOnDemand':
        return this.rotateOnDemand(ctx, body);
      case 'ListKeyRotations':
        return this.listRotations(ctx, body);
      case 'Encrypt':
        return this.encrypt(ctx, body);
      case 'Decrypt':
        return this.decrypt(ctx, body);
      case 'ReEncrypt':
        return this.reEncrypt(ctx, body);
      case 'GenerateDataKey':
        return this.generateDataKey(ctx, body, true);
      case 'GenerateDataKeyWithoutPlaintext':
        return this.generateDataKey(ctx, body, false);
      case 'GetKeyLastUsage':
        return this.keyLastUsage(ctx, body);
      case 'GetKeyPolicy':
        return this.keyPolicy(ctx, body);
      case 'GetParametersForImport':
        return this.parametersForImport(ctx, body);
      case 'ImportKeyMaterial':
        return this.importKeyMaterial(ctx, body);
      case 'DeleteImportedKeyMaterial':
        return this.deleteImportedMaterial(ctx, body);
      case 'ReplicateKey':
        return this.replicateKey(ctx, body);
      default:
        throw new AwsError('UnknownOperationException', `The emulator does not implement TrentService.${op}`);
    }
  }

  // ---- key resolution ----

  /**
   * Finds a key from a key id, key ARN, alias name or alias ARN. Aliases only where the
   * operation accepts them (`allowAlias`).
   */
  private resolve(ctx: Ctx, keyId: string, allowAlias: boolean): EmulatedKey {
    let ref = keyId;
    if (ref.startsWith('arn:')) {
      const m = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):((?:key|alias)\/.+)$/.exec(ref);
      if (!m) throw new AwsError('InvalidArnException', `Invalid arn ${keyId}`);
      if (m[2] !== ctx.region || m[3] !== this.account) {
        throw new AwsError('NotFoundException', `Key '${keyId}' does not exist`);
      }
      ref = m[4]!;
      if (ref.startsWith('key/')) ref = ref.slice(4);
    }
    if (ref.startsWith('alias/')) {
      if (!allowAlias)
        throw new AwsError('NotFoundException', `Alias is not supported for this operation: ${keyId}`);
      const a = ctx.r.aliases.get(ref);
      if (!a)
        throw new AwsError('NotFoundException', `Alias ${this.aliasArn(ctx.region, ref)} is not found.`);
      ref = a.target;
    }
    const k = ctx.r.keys.get(ref);
    if (!k) {
      if (!/^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/.test(ref)) {
        throw new AwsError('NotFoundException', `Invalid keyId ${keyId}`);
      }
      throw new AwsError('NotFoundException', `Key '${this.keyArn(ctx.region, ref)}' does not exist`);
    }
    return k;
  }

  /** Resolves `KeyId` for operations on customer managed keys (no aliases, no AWS managed keys). */
  private customerKey(ctx: Ctx, body: Record<string, unknown>, name = 'KeyId'): EmulatedKey {
    const k = this.resolve(ctx, reqString(body, name), false);
    if (k.manager === 'AWS') {
      throw new AwsError(
        'AccessDeniedException',
        `You cannot modify AWS managed key ${k.arn}: AWS managed keys are managed by the AWS service that created them`,
      );
    }
    return k;
  }

  private keyArn(region: string, id: string): string {
    return `arn:aws:kms:${region}:${this.account}:key/${id}`;
  }

  private aliasArn(region: string, name: string): string {
    return `arn:aws:kms:${region}:${this.account}:${name}`;
  }

  private notPendingDeletion(k: EmulatedKey): void {
    if (k.state === 'PendingDeletion') {
      throw new AwsError('KMSInvalidStateException', `${k.arn} is pending deletion.`);
    }
  }

  /** Cryptographic operations need an Enabled key. */
  private usable(k: EmulatedKey): void {
    if (k.state === 'Disabled') throw new AwsError('DisabledException', `${k.arn} is disabled.`);
    if (k.state !== 'Enabled')
      throw new AwsError('KMSInvalidStateException', `${k.arn} is ${stateWord(k.state)}.`);
  }

  private symmetricEncryption(k: EmulatedKey, op: string): void {
    if (k.usage !== 'ENCRYPT_DECRYPT') {
      throw new AwsError(
        'InvalidKeyUsageException',
        `You cannot use ${k.arn} for ${op}: its KeyUsage is ${k.usage}, not ENCRYPT_DECRYPT.`,
      );
    }
    if (k.spec !== 'SYMMETRIC_DEFAULT') {
      throw new AwsError(
        'UnsupportedOperationException',
        `${op} with ${k.spec} keys is not implemented by this emulator (symmetric keys only).`,
      );
    }
  }

  private newKey(
    region: string,
    p: {
      spec: KeySpec;
      usage: KeyUsage;
      origin: Origin;
      multiRegion: boolean;
      description: string;
      manager: 'CUSTOMER' | 'AWS';
      policy?: string;
    },
  ): EmulatedKey {
    const id = p.multiRegion ? `mrk-${randomBytes(16).toString('hex')}` : randomUUID();
    const now = this.clock.nowMs();
    const k: EmulatedKey = {
      id,
      arn: this.keyArn(region, id),
      region,
      createdAt: now,
      description: p.description,
      spec: p.spec,
      usage: p.usage,
      origin: p.origin,
      manager: p.manager,
      multiRegion: p.multiRegion,
      state: p.origin === 'EXTERNAL' ? 'PendingImport' : 'Enabled',
      tags: new Map(),
      materials: [],
      onDemandCount: 0,
      policy: p.policy ?? defaultPolicy(this.account),
    };
    // Only symmetric encryption keys get emulated material; EXTERNAL keys wait for an import.
    if (p.spec === 'SYMMETRIC_DEFAULT' && p.origin !== 'EXTERNAL') addMaterial(k, now);
    this.region(region).keys.set(id, k);
    return k;
  }

  // ---- operations ----

  private createKey(ctx: Ctx, body: Record<string, unknown>) {
    if (body.CustomerMasterKeySpec !== undefined && body.KeySpec !== undefined) {
      throw validationError('You cannot specify both CustomerMasterKeySpec and KeySpec; use KeySpec.');
    }
    const spec =
      optEnum(body, 'KeySpec', KEY_SPECS) ??
      optEnum(body, 'CustomerMasterKeySpec', KEY_SPECS) ??
      'SYMMETRIC_DEFAULT';
    const usage = optEnum(body, 'KeyUsage', KEY_USAGES) ?? 'ENCRYPT_DECRYPT';
    if (!USAGES_BY_SPEC(spec).includes(usage)) {
      throw validationError(`KeyUsage ${usage} is not compatible with KeySpec ${spec}.`);
    }
    const origin = optEnum(body, 'Origin', ORIGINS) ?? 'AWS_KMS';
    if (origin === 'AWS_CLOUDHSM' || origin === 'EXTERNAL_KEY_STORE' || body.CustomKeyStoreId !== undefined) {
      throw new AwsError(
        'CustomKeyStoreNotFoundException',
        'Custom key stores are not available in this emulator.',
      );
    }
    const description = optString(body, 'Description', 0, 8192) ?? '';
    const policy = optString(body, 'Policy', 1, 32768);
    if (policy !== undefined) checkPolicyDocument(policy);
    const multiRegion = optBool(body, 'MultiRegion') ?? false;
    const tags = readTags(body.Tags);
    const k = this.newKey(ctx.region, {
      spec,
      usage,
      origin,
      multiRegion,
      description,
      manager: 'CUSTOMER',
      ...(policy !== undefined ? { policy } : {}),
    });
    for (const [key, value] of tags) k.tags.set(key, value);
    return { KeyMetadata: this.metadata(k) };
  }

  metadata(k: EmulatedKey) {
    const md: Record<string, unknown> = {
      AWSAccountId: this.account,
      KeyId: k.id,
      Arn: k.arn,
      CreationDate: epoch(k.createdAt),
      Enabled: k.state === 'Enabled',
      Description: k.description,
      KeyUsage: k.usage,
      KeyState: k.state,
      Origin: k.origin,
      KeyManager: k.manager,
      CustomerMasterKeySpec: k.spec,
      KeySpec: k.spec,
      MultiRegion: k.multiRegion,
    };
    if (k.usage === 'ENCRYPT_DECRYPT') {
      md.EncryptionAlgorithms =
        k.spec === 'SYMMETRIC_DEFAULT' ? SYMMETRIC_ALGOS : ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'];
    }
    if (k.usage === 'SIGN_VERIFY') {
      md.SigningAlgorithms = k.spec.startsWith('RSA_')
        ? ['RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512', 'RSASSA_PKCS1_V1_5_SHA_256']
        : ['ECDSA_SHA_256'];
    }
    if (k.usage === 'GENERATE_VERIFY_MAC') md.MacAlgorithms = [`HMAC_SHA_${k.spec.slice(5)}`];
    if (k.usage === 'KEY_AGREEMENT') md.KeyAgreementAlgorithms = ['ECDH'];
    const imported = k.materials[k.materials.length - 1]?.imported;
    if (imported) {
      md.ExpirationModel = imported.expirationModel;
      if (imported.validTo !== undefined) md.ValidTo = epoch(imported.validTo);
    }
    if (k.multiRegion) {
      const related = k.related ?? [k.arn];
      const regionOf = (arn: string) => arn.split(':')[3]!;
      md.MultiRegionConfiguration = {
        MultiRegionKeyType: related[0] === k.arn ? 'PRIMARY' : 'REPLICA',
        PrimaryKey: { Arn: related[0], Region: regionOf(related[0]!) },
        ReplicaKeys: related.slice(1).map((arn) => ({ Arn: arn, Region: regionOf(arn) })),
      };
    }
    if (k.state === 'PendingDeletion') {
      md.DeletionDate = epoch(k.deletionDate!);
      md.PendingDeletionWindowInDays = k.pendingWindowDays;
    }
    const current = k.materials[k.materials.length - 1];
    if (current) md.CurrentKeyMaterialId = current.id;
    return md;
  }

  /**
   * ReplicateKey: a replica of a multi-Region primary key in another Region of the same
   * partition, with the same key id and the same (shared) key material.
   */
  private replicateKey(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    const replicaRegion = reqString(body, 'ReplicaRegion');
    if (!/^[a-z]{2}(-gov)?-[a-z]+-\d$/.test(replicaRegion)) {
      throw validationError(`ReplicaRegion ${replicaRegion} is not a valid AWS Region.`);
    }
    if (!k.multiRegion) {
      throw new AwsError('UnsupportedOperationException', `${k.arn} is not a multi-Region key.`);
    }
    if (!k.related) k.related = [k.arn];
    const related = k.related;
    if (related[0] !== k.arn) {
      throw new AwsError('UnsupportedOperationException', `${k.arn} is not a multi-Region primary key.`);
    }
    if (k.state !== 'Enabled' && k.state !== 'Disabled') {
      throw new AwsError('KMSInvalidStateException', `${k.arn} is ${k.state}.`);
    }
    if (replicaRegion === ctx.region || related.some((arn) => arn.split(':')[3] === replicaRegion)) {
      throw new AwsError(
        'AlreadyExistsException',
        `A key with id ${k.id} already exists in ${replicaRegion}.`,
      );
    }
    const description = optString(body, 'Description', 0, 8192) ?? k.description;
    const policy = optString(body, 'Policy', 1, 32768);
    if (policy !== undefined) checkPolicyDocument(policy);
    const tags = readTags(body.Tags);
    const now = this.clock.nowMs();
    const replica: EmulatedKey = {
      ...k,
      arn: this.keyArn(replicaRegion, k.id),
      region: replicaRegion,
      createdAt: now,
      description,
      tags: new Map(tags),
      policy: policy ?? k.policy,
      onDemandCount: 0,
      related,
    };
    delete replica.lastUsage;
    delete replica.rotation;
    delete replica.deletionDate;
    delete replica.pendingWindowDays;
    related.push(replica.arn);
    this.region(replicaRegion).keys.set(k.id, replica);
    return {
      ReplicaKeyMetadata: this.metadata(replica),
      ReplicaPolicy: replica.policy,
      ReplicaTags: [...replica.tags].map(([TagKey, TagValue]) => ({ TagKey, TagValue })),
    };
  }

  private listKeys(ctx: Ctx, body: Record<string, unknown>) {
    const limit = optInt(body, 'Limit', 1, 1000) ?? 100;
    const marker = optString(body, 'Marker', 1, 1024);
    const all = [...ctx.r.keys.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const { page, truncated, next } = paginate(all, (k) => k.id, limit, marker);
    return {
      Keys: page.map((k) => ({ KeyId: k.id, KeyArn: k.arn })),
      Truncated: truncated,
      ...(next ? { NextMarker: next } : {}),
    };
  }

  private checkAliasName(name: string): void {
    if (!name.startsWith('alias/') || !/^alias\/[a-zA-Z0-9/_-]+$/.test(name) || name.length > 256) {
      throw new AwsError(
        'InvalidAliasNameException',
        `Alias name ${name} must begin with 'alias/' followed by 1-250 of a-z, A-Z, 0-9, '/', '_' or '-'.`,
      );
    }
    if (name.startsWith('alias/aws/')) {
      throw new AwsError('InvalidAliasNameException', 'Alias names that begin with alias/aws/ are reserved.');
    }
  }

  private aliasTarget(ctx: Ctx, body: Record<string, unknown>): EmulatedKey {
    const targetId = reqString(body, 'TargetKeyId', 1, 2048);
    if (targetId.startsWith('alias/') || /:alias\//.test(targetId)) {
      throw validationError('TargetKeyId must be a key ID or key ARN, not an alias.');
    }
    const k = this.customerKey(ctx, body, 'TargetKeyId');
    this.notPendingDeletion(k);
    return k;
  }

  private createAlias(ctx: Ctx, body: Record<string, unknown>) {
    const name = reqString(body, 'AliasName', 1, 256);
    this.checkAliasName(name);
    const k = this.aliasTarget(ctx, body);
    if (ctx.r.aliases.has(name)) {
      throw new AwsError(
        'AlreadyExistsException',
        `An alias with the name ${this.aliasArn(ctx.region, name)} already exists`,
      );
    }
    ctx.r.aliases.set(name, { name, target: k.id, createdAt: ctx.now, updatedAt: ctx.now });
    return {};
  }

  private updateAlias(ctx: Ctx, body: Record<string, unknown>) {
    const name = reqString(body, 'AliasName', 1, 256);
    this.checkAliasName(name);
    const a = ctx.r.aliases.get(name);
    if (!a) throw new AwsError('NotFoundException', `Alias ${this.aliasArn(ctx.region, name)} is not found.`);
    const k = this.aliasTarget(ctx, body);
    const old = ctx.r.keys.get(a.target);
    // Same type (symmetric, asymmetric or HMAC) and same usage; the spec itself may differ.
    if (old && (keyType(old.spec) !== keyType(k.spec) || old.usage !== k.usage)) {
      throw validationError(
        `${k.arn} cannot replace ${old.arn} under ${name}: the new key must be the same type (${keyType(old.spec)}) with the same key usage (${old.usage}).`,
      );
    }
    a.target = k.id;
    a.updatedAt = ctx.now;
    return {};
  }

  private deleteAlias(ctx: Ctx, body: Record<string, unknown>) {
    const name = reqString(body, 'AliasName', 1, 256);
    this.checkAliasName(name);
    if (!ctx.r.aliases.delete(name)) {
      throw new AwsError('NotFoundException', `Alias ${this.aliasArn(ctx.region, name)} is not found.`);
    }
    return {};
  }

  private listAliases(ctx: Ctx, body: Record<string, unknown>) {
    const limit = optInt(body, 'Limit', 1, 100) ?? 50;
    const marker = optString(body, 'Marker', 1, 1024);
    const keyId = optString(body, 'KeyId', 1, 2048);
    const only = keyId === undefined ? undefined : this.resolve(ctx, keyId, false).id;
    const all = [...ctx.r.aliases.values()]
      .filter((a) => only === undefined || a.target === only)
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    const { page, truncated, next } = paginate(all, (a) => a.name, limit, marker);
    return {
      Aliases: page.map((a) => ({
        AliasName: a.name,
        AliasArn: this.aliasArn(ctx.region, a.name),
        TargetKeyId: a.target,
        CreationDate: epoch(a.createdAt),
        LastUpdatedDate: epoch(a.updatedAt),
      })),
      Truncated: truncated,
      ...(next ? { NextMarker: next } : {}),
    };
  }

  private tagResource(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    this.notPendingDeletion(k);
    const tags = readTags(body.Tags, true);
    const merged = new Map(k.tags);
    for (const [key, value] of tags) merged.set(key, value);
    if (merged.size > 50)
      throw new AwsError('TagException', `${k.arn} would have ${merged.size} tags; the limit is 50.`);
    k.tags = merged;
    return {};
  }

  private untagResource(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    this.notPendingDeletion(k);
    const keys = body.TagKeys;
    if (!Array.isArray(keys) || keys.length === 0 || keys.some((t) => typeof t !== 'string')) {
      throw validationError(
        "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must not be null",
      );
    }
    for (const t of keys as string[]) k.tags.delete(t);
    return {};
  }

  private listResourceTags(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.resolve(ctx, reqString(body, 'KeyId'), false);
    const limit = optInt(body, 'Limit', 1, 50) ?? 50;
    const marker = optString(body, 'Marker', 1, 1024);
    const all = [...k.tags.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const { page, truncated, next } = paginate(all, (t) => t[0], limit, marker);
    return {
      Tags: page.map(([TagKey, TagValue]) => ({ TagKey, TagValue })),
      Truncated: truncated,
      ...(next ? { NextMarker: next } : {}),
    };
  }

  private setEnabled(ctx: Ctx, body: Record<string, unknown>, enable: boolean) {
    const k = this.customerKey(ctx, body);
    if (k.state === 'PendingDeletion' || k.state === 'PendingImport') {
      throw new AwsError('KMSInvalidStateException', `${k.arn} is ${stateWord(k.state)}.`);
    }
    k.state = enable ? 'Enabled' : 'Disabled';
    return {};
  }

  private scheduleDeletion(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    const days = optInt(body, 'PendingWindowInDays', DELETION_WINDOW_DAYS.min, DELETION_WINDOW_DAYS.max);
    this.notPendingDeletion(k);
    const window = days ?? DELETION_WINDOW_DAYS.default;
    k.state = 'PendingDeletion';
    k.pendingWindowDays = window;
    k.deletionDate = ctx.now + window * DAY_MS;
    k.onDemandStartedAt = undefined;
    return {
      KeyId: k.arn,
      DeletionDate: epoch(k.deletionDate),
      KeyState: k.state,
      PendingWindowInDays: window,
    };
  }

  private cancelDeletion(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    if (k.state !== 'PendingDeletion') {
      throw new AwsError('KMSInvalidStateException', `${k.arn} is not pending deletion.`);
    }
    k.state = 'Disabled';
    k.deletionDate = undefined;
    k.pendingWindowDays = undefined;
    return { KeyId: k.arn };
  }

  /**
   * Rotation is for symmetric encryption keys: automatic rotation for KMS-generated material
   * only, on-demand rotation (and its status and listing) also for imported material.
   */
  private rotatable(k: EmulatedKey, op: string, imported = false): void {
    if (k.spec !== 'SYMMETRIC_DEFAULT') {
      throw new AwsError(
        'UnsupportedOperationException',
        `${k.arn} key spec ${k.spec} does not support ${op}.`,
      );
    }
    if (k.origin !== 'AWS_KMS' && !(imported && k.origin === 'EXTERNAL')) {
      throw new AwsError(
        'UnsupportedOperationException',
        `${k.arn} has origin ${k.origin}; ${op} is not supported.`,
      );
    }
  }

  private enableRotation(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    const period = optInt(body, 'RotationPeriodInDays', ROTATION_PERIOD_DAYS.min, ROTATION_PERIOD_DAYS.max);
    this.usable(k);
    this.rotatable(k, 'automatic key rotation');
    const days = period ?? ROTATION_PERIOD_DAYS.default;
    // A new period counts from the last rotation (or from now when rotation was off).
    const lastAuto = k.rotation ? k.rotation.next - k.rotation.periodDays * DAY_MS : ctx.now;
    k.rotation = { periodDays: days, next: Math.max(lastAuto + days * DAY_MS, ctx.now) };
    return {};
  }

  private disableRotation(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    this.usable(k);
    this.rotatable(k, 'automatic key rotation');
    k.rotation = undefined;
    return {};
  }

  private rotationStatus(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.resolve(ctx, reqString(body, 'KeyId'), false);
    this.rotatable(k, 'key rotation', true);
    const out: Record<string, unknown> = { KeyId: k.arn, KeyRotationEnabled: k.rotation !== undefined };
    if (k.rotation) {
      out.RotationPeriodInDays = k.rotation.periodDays;
      out.NextRotationDate = epoch(k.rotation.next);
    }
    if (k.onDemandStartedAt !== undefined) out.OnDemandRotationStartDate = epoch(k.onDemandStartedAt);
    return out;
  }

  private rotateOnDemand(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    this.usable(k);
    this.rotatable(k, 'on-demand key rotation', true);
    if (k.onDemandStartedAt !== undefined) {
      throw new AwsError('ConflictException', `An on-demand rotation of ${k.arn} is already in progress.`);
    }
    if (k.origin === 'EXTERNAL' && !k.pendingMaterial) {
      throw new AwsError(
        'KMSInvalidStateException',
        `${k.arn} has imported key material: import new key material (ImportType NEW_KEY_MATERIAL) before rotating.`,
      );
    }
    if (k.onDemandCount >= MAX_ON_DEMAND_ROTATIONS) {
      throw new AwsError(
        'LimitExceededException',
        `${k.arn} has reached the maximum of ${MAX_ON_DEMAND_ROTATIONS} on-demand rotations.`,
      );
    }
    k.onDemandCount++;
    if (this.onDemandRotationMs > 0) k.onDemandStartedAt = ctx.now;
    else completeRotation(k, ctx.now);
    return { KeyId: k.arn };
  }

  private listRotations(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.resolve(ctx, reqString(body, 'KeyId'), false);
    const include = optEnum(body, 'IncludeKeyMaterial', ['ALL_KEY_MATERIAL', 'ROTATIONS_ONLY'] as const);
    const limit = optInt(body, 'Limit', 1, 1000) ?? 100;
    const marker = optString(body, 'Marker', 1, 1024);
    this.rotatable(k, 'ListKeyRotations', true);
    const materials = k.pendingMaterial ? [...k.materials, k.pendingMaterial] : k.materials;
    const indexed = materials.map((m, i) => ({ m, i, pos: String(i).padStart(6, '0') }));
    // Material waiting for its rotation is listed with every kind of listing (it is not a rotation yet).
    const all =
      include === 'ALL_KEY_MATERIAL'
        ? indexed
        : indexed.filter((x) => x.m.rotationType !== undefined || x.m === k.pendingMaterial);
    const { page, truncated, next } = paginate(all, (x) => x.pos, limit, marker);
    const last = k.materials.length - 1;
    return {
      Rotations: page.map(({ m, i }) => ({
        KeyId: k.id,
        KeyMaterialId: m.id,
        KeyMaterialState:
          m === k.pendingMaterial ? 'PENDING_ROTATION' : i === last ? 'CURRENT' : 'NON_CURRENT',
        ...(m.rotationType && m !== k.pendingMaterial
          ? { RotationDate: epoch(m.createdAt), RotationType: m.rotationType }
          : {}),
        ...(m.imported
          ? {
              ImportState: m.imported.present ? 'IMPORTED' : 'PENDING_IMPORT',
              ExpirationModel: m.imported.expirationModel,
              ...(m.imported.validTo !== undefined ? { ValidTo: epoch(m.imported.validTo) } : {}),
              ...(m.imported.description !== undefined
                ? { KeyMaterialDescription: m.imported.description }
                : {}),
            }
          : {}),
      })),
      Truncated: truncated,
      ...(next ? { NextMarker: next } : {}),
    };
  }

  private readContext(body: Record<string, unknown>, name: string): Record<string, string> {
    return optStringMap(body, name) ?? {};
  }

  private checkAlgorithm(body: Record<string, unknown>, name: string): void {
    const algo = optEnum(body, name, [
      'SYMMETRIC_DEFAULT',
      'RSAES_OAEP_SHA_1',
      'RSAES_OAEP_SHA_256',
      'SM2PKE',
    ] as const);
    if (algo !== undefined && algo !== 'SYMMETRIC_DEFAULT') {
      throw new AwsError('InvalidKeyUsageException', `${algo} is not valid for symmetric encryption keys.`);
    }
  }

  private seal(k: EmulatedKey, plaintext: Buffer, context: Record<string, string>): Buffer {
    const m = k.materials[k.materials.length - 1]!;
    const header = blobHeader(k.id, m.id);
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', m.key, iv);
    c.setAAD(Buffer.concat([header, canonicalContext(context)]));
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    return Buffer.concat([header, iv, c.getAuthTag(), body]);
  }

  /** Opens a ciphertext blob: finds its key and material, checks the context. */
  private open(
    ctx: Ctx,
    blob: Buffer,
    context: Record<string, string>,
    keyId: string | undefined,
  ): { key: EmulatedKey; material: Material; plaintext: Buffer } {
    const parsed = parseBlob(blob);
    if (!parsed)
      throw new AwsError('InvalidCiphertextException', 'The ciphertext is not valid for this KMS.');
    const k = ctx.r.keys.get(parsed.keyId);
    if (keyId !== undefined) {
      const want = this.resolve(ctx, keyId, true);
      if (!k || want.id !== k.id) {
        throw new AwsError(
          'IncorrectKeyException',
          'The key ID in the request does not identify a KMS key that can perform this operation.',
        );
      }
    }
    if (!k)
      throw new AwsError(
        'NotFoundException',
        `Key '${this.keyArn(ctx.region, parsed.keyId)}' does not exist`,
      );
    this.usable(k);
    this.symmetricEncryption(k, 'Decrypt');
    const material = k.materials.find((m) => m.id === parsed.materialId);
    if (!material)
      throw new AwsError(
        'InvalidCiphertextException',
        'The ciphertext refers to key material this key does not have.',
      );
    try {
      const d = createDecipheriv('aes-256-gcm', material.key, parsed.iv);
      d.setAAD(Buffer.concat([parsed.header, canonicalContext(context)]));
      d.setAuthTag(parsed.tag);
      const plaintext = Buffer.concat([d.update(parsed.body), d.final()]);
      return { key: k, material, plaintext };
    } catch {
      // Wrong encryption context or tampered blob: KMS does not say which.
      throw new AwsError('InvalidCiphertextException', '');
    }
  }

  private encryptTarget(ctx: Ctx, keyId: string, op: string): EmulatedKey {
    const k = this.resolve(ctx, keyId, true);
    this.usable(k);
    this.symmetricEncryption(k, op);
    return k;
  }

  private used(ctx: Ctx, k: EmulatedKey, operation: string): void {
    k.lastUsage = { operation, at: ctx.now, requestId: ctx.requestId };
  }

  private encrypt(ctx: Ctx, body: Record<string, unknown>) {
    const keyId = reqString(body, 'KeyId');
    const plaintext = optBlob(body, 'Plaintext', 1, 4096);
    if (plaintext === undefined) reqString(body, 'Plaintext');
    const context = this.readContext(body, 'EncryptionContext');
    this.checkAlgorithm(body, 'EncryptionAlgorithm');
    const k = this.encryptTarget(ctx, keyId, 'Encrypt');
    const blob = this.seal(k, plaintext!, context);
    plaintext!.fill(0);
    this.used(ctx, k, 'Encrypt');
    return {
      CiphertextBlob: blob.toString('base64'),
      KeyId: k.arn,
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  }

  private decrypt(ctx: Ctx, body: Record<string, unknown>) {
    const blob = optBlob(body, 'CiphertextBlob', 1, 6144);
    if (blob === undefined) reqString(body, 'CiphertextBlob');
    const context = this.readContext(body, 'EncryptionContext');
    this.checkAlgorithm(body, 'EncryptionAlgorithm');
    const { key, material, plaintext } = this.open(ctx, blob!, context, optString(body, 'KeyId'));
    this.used(ctx, key, 'Decrypt');
    const out = {
      KeyId: key.arn,
      Plaintext: plaintext.toString('base64'),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      KeyMaterialId: material.id,
    };
    plaintext.fill(0);
    return out;
  }

  private reEncrypt(ctx: Ctx, body: Record<string, unknown>) {
    const blob = optBlob(body, 'CiphertextBlob', 1, 6144);
    if (blob === undefined) reqString(body, 'CiphertextBlob');
    const destId = reqString(body, 'DestinationKeyId');
    const srcCtx = this.readContext(body, 'SourceEncryptionContext');
    const dstCtx = this.readContext(body, 'DestinationEncryptionContext');
    this.checkAlgorithm(body, 'SourceEncryptionAlgorithm');
    this.checkAlgorithm(body, 'DestinationEncryptionAlgorithm');
    const src = this.open(ctx, blob!, srcCtx, optString(body, 'SourceKeyId'));
    try {
      const dest = this.encryptTarget(ctx, destId, 'ReEncrypt');
      const out = this.seal(dest, src.plaintext, dstCtx);
      this.used(ctx, src.key, 'ReEncrypt');
      this.used(ctx, dest, 'ReEncrypt');
      return {
        CiphertextBlob: out.toString('base64'),
        SourceKeyId: src.key.arn,
        KeyId: dest.arn,
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        SourceKeyMaterialId: src.material.id,
        DestinationKeyMaterialId: dest.materials[dest.materials.length - 1]!.id,
      };
    } finally {
      src.plaintext.fill(0);
    }
  }

  private generateDataKey(ctx: Ctx, body: Record<string, unknown>, withPlaintext: boolean) {
    const keyId = reqString(body, 'KeyId');
    const context = this.readContext(body, 'EncryptionContext');
    const n = optInt(body, 'NumberOfBytes', 1, 1024);
    const spec = optEnum(body, 'KeySpec', ['AES_256', 'AES_128'] as const);
    if ((n === undefined) === (spec === undefined)) {
      throw validationError('Please specify either number of bytes or key spec.');
    }
    const op = withPlaintext ? 'GenerateDataKey' : 'GenerateDataKeyWithoutPlaintext';
    const k = this.encryptTarget(ctx, keyId, op);
    const dek = randomBytes(n ?? (spec === 'AES_128' ? 16 : 32));
    const blob = this.seal(k, dek, context);
    this.used(ctx, k, op);
    const out: Record<string, unknown> = {
      CiphertextBlob: blob.toString('base64'),
      KeyId: k.arn,
      KeyMaterialId: k.materials[k.materials.length - 1]!.id,
    };
    if (withPlaintext) out.Plaintext = dek.toString('base64');
    dek.fill(0);
    return out;
  }

  // ---- importing key material (BYOK) ----

  /** Keys with imported material: only EXTERNAL origin, and (here) only symmetric ones. */
  private externalKey(k: EmulatedKey, op: string): void {
    if (k.origin !== 'EXTERNAL') {
      throw new AwsError(
        'UnsupportedOperationException',
        `${op}: ${k.arn} has origin ${k.origin}; only keys with EXTERNAL origin take imported key material.`,
      );
    }
    if (k.spec !== 'SYMMETRIC_DEFAULT') {
      throw new AwsError(
        'UnsupportedOperationException',
        `${op}: the emulator imports symmetric key material only (${k.arn} is ${k.spec}).`,
      );
    }
  }

  /**
   * A fresh RSA key pair per call (made off the event loop); the token is a random handle for
   * it, bound to the key and the wrapping algorithm, valid for 24 hours on the emulator clock.
   */
  private async parametersForImport(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    const algorithm = optEnum(body, 'WrappingAlgorithm', WRAPPING_ALGORITHMS);
    const spec = optEnum(body, 'WrappingKeySpec', WRAPPING_KEY_SPECS);
    if (algorithm === undefined) reqString(body, 'WrappingAlgorithm');
    if (spec === undefined) reqString(body, 'WrappingKeySpec');
    this.externalKey(k, 'GetParametersForImport');
    this.notPendingDeletion(k);
    if (algorithm === 'RSAES_PKCS1_V1_5') {
      throw new AwsError(
        'UnsupportedOperationException',
        'RSAES_PKCS1_V1_5 is no longer supported for import.',
      );
    }
    if (algorithm === 'SM2PKE' || spec === 'SM2') {
      throw new AwsError('UnsupportedOperationException', 'SM2 wrapping is only available in China Regions.');
    }
    const bits = Number(spec!.slice(4));
    const { publicKey, privateKey } = await generateRsa('rsa', {
      modulusLength: bits,
      publicExponent: 0x10001,
    });
    const token = randomBytes(64).toString('base64');
    const validTo = this.clock.nowMs() + IMPORT_TOKEN_VALID_MS;
    this.importTokens.set(token, {
      keyId: k.id,
      region: ctx.region,
      algorithm: algorithm!,
      privateKey,
      validTo,
    });
    return {
      KeyId: k.arn,
      ImportToken: token,
      PublicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
      ParametersValidTo: epoch(validTo),
    };
  }

  private importKeyMaterial(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    const token = optBlob(body, 'ImportToken', 1, 6144);
    if (token === undefined) reqString(body, 'ImportToken');
    const wrapped = optBlob(body, 'EncryptedKeyMaterial', 1, 6144);
    if (wrapped === undefined) reqString(body, 'EncryptedKeyMaterial');
    const model =
      optEnum(body, 'ExpirationModel', ['KEY_MATERIAL_EXPIRES', 'KEY_MATERIAL_DOES_NOT_EXPIRE'] as const) ??
      'KEY_MATERIAL_EXPIRES';
    const validTo = optTimestamp(body, 'ValidTo');
    const importType = optEnum(body, 'ImportType', ['EXISTING_KEY_MATERIAL', 'NEW_KEY_MATERIAL'] as const);
    const description = optString(body, 'KeyMaterialDescription', 0, 256);
    const materialId = optString(body, 'KeyMaterialId', 64, 64);
    this.externalKey(k, 'ImportKeyMaterial');
    if (k.state !== 'PendingImport' && k.state !== 'Enabled') {
      throw new AwsError('KMSInvalidStateException', `${k.arn} is ${stateWord(k.state)}.`);
    }
    if (model === 'KEY_MATERIAL_EXPIRES' && validTo === undefined) {
      throw validationError('ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.');
    }
    if (model === 'KEY_MATERIAL_DOES_NOT_EXPIRE' && validTo !== undefined) {
      throw validationError('ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.');
    }
    if (validTo !== undefined && (validTo <= ctx.now || validTo > ctx.now + MAX_VALID_TO_MS)) {
      throw validationError('ValidTo must be in the future and at most 365 days from now.');
    }
    if (description !== undefined && !/^[a-zA-Z0-9:/_\s.-]*$/.test(description)) {
      throw validationError('KeyMaterialDescription may hold letters, digits, spaces and : / _ . - only.');
    }
    const first = k.materials.length === 0;
    const type = importType ?? (first ? 'NEW_KEY_MATERIAL' : 'EXISTING_KEY_MATERIAL');
    if (type === 'NEW_KEY_MATERIAL' && materialId !== undefined) {
      throw validationError('KeyMaterialId cannot be given with ImportType NEW_KEY_MATERIAL.');
    }
    if (type === 'EXISTING_KEY_MATERIAL' && first) {
      throw validationError('ImportType EXISTING_KEY_MATERIAL: this key has no key material yet.');
    }
    if (type === 'NEW_KEY_MATERIAL' && !first) {
      if (k.pendingMaterial) {
        throw new AwsError(
          'KMSInvalidStateException',
          `${k.arn} already has key material ${k.pendingMaterial.id} pending rotation; rotate or delete it first.`,
        );
      }
      if (k.state !== 'Enabled') {
        throw new AwsError(
          'KMSInvalidStateException',
          `${k.arn} is pending import: re-import its existing key material before adding new material.`,
        );
      }
    }
    const params = this.importTokens.get(token!.toString('base64'));
    if (!params || params.keyId !== k.id || params.region !== ctx.region) {
      throw new AwsError(
        'InvalidImportTokenException',
        'The import token is not valid for this KMS key; use the token from the same GetParametersForImport response.',
      );
    }
    if (params.validTo <= ctx.now) {
      throw new AwsError(
        'ExpiredImportTokenException',
        'The import token has expired; call GetParametersForImport again for a new public key and token.',
      );
    }
    const material = unwrapMaterial(params, wrapped!);
    try {
      if (material.length !== 32) {
        throw new AwsError(
          'IncorrectKeyMaterialException',
          `Symmetric key material must be 256 bits (got ${material.length * 8}).`,
        );
      }
      const id = materialIdOf(k.id, material);
      const imported: ImportedState = {
        present: true,
        expirationModel: model,
        ...(validTo !== undefined ? { validTo } : {}),
      };
      if (type === 'EXISTING_KEY_MATERIAL') {
        const m = k.materials.find((x) => x.id === id);
        if (!m || (materialId !== undefined && materialId !== id)) {
          throw new AwsError(
            'IncorrectKeyMaterialException',
            'The key material is not the same key material that was previously imported into this KMS key.',
          );
        }
        m.key.fill(0);
        m.key = Buffer.from(material);
        m.imported = {
          ...imported,
          ...((description ?? m.imported?.description) !== undefined
            ? { description: description ?? m.imported?.description }
            : {}),
        };
      } else {
        if (k.materials.some((x) => x.id === id)) {
          throw new AwsError(
            'IncorrectKeyMaterialException',
            'This key material is already associated with the KMS key; import it with ImportType EXISTING_KEY_MATERIAL.',
          );
        }
        const m: Material = {
          id,
          key: Buffer.from(material),
          createdAt: ctx.now,
          imported: { ...imported, ...(description !== undefined ? { description } : {}) },
        };
        if (first) k.materials.push(m);
        else k.pendingMaterial = m;
      }
      // Usable once every material is present again.
      if (k.state === 'PendingImport' && k.materials.every((x) => x.imported?.present !== false)) {
        k.state = 'Enabled';
      }
      return { KeyId: k.arn, KeyMaterialId: id };
    } finally {
      material.fill(0);
    }
  }

  private deleteImportedMaterial(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.customerKey(ctx, body);
    const materialId = optString(body, 'KeyMaterialId', 64, 64);
    this.externalKey(k, 'DeleteImportedKeyMaterial');
    if (k.pendingMaterial && materialId === k.pendingMaterial.id) {
      // Pending material is not bound to the key yet: it simply goes.
      k.pendingMaterial.key.fill(0);
      const id = k.pendingMaterial.id;
      k.pendingMaterial = undefined;
      return { KeyId: k.arn, KeyMaterialId: id };
    }
    const m =
      materialId === undefined
        ? k.materials[k.materials.length - 1]
        : k.materials.find((x) => x.id === materialId);
    if (!m) {
      throw new AwsError(
        'NotFoundException',
        materialId === undefined
          ? `${k.arn} has no key material.`
          : `Key material ${materialId} is not associated with ${k.arn}.`,
      );
    }
    if (m.imported) m.imported.present = false;
    m.key.fill(0);
    if (k.state !== 'PendingDeletion') k.state = 'PendingImport';
    return { KeyId: k.arn, KeyMaterialId: m.id };
  }

  private keyPolicy(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.resolve(ctx, reqString(body, 'KeyId'), false);
    const name = optString(body, 'PolicyName', 1, 128) ?? 'default';
    if (name !== 'default')
      throw new AwsError('NotFoundException', `Policy ${name} does not exist on ${k.arn}`);
    return { Policy: k.policy, PolicyName: 'default' };
  }

  private keyLastUsage(ctx: Ctx, body: Record<string, unknown>) {
    const k = this.resolve(ctx, reqString(body, 'KeyId'), false);
    const u = k.lastUsage;
    return {
      KeyId: k.id,
      KeyLastUsage: u
        ? {
            Operation: u.operation,
            Timestamp: epoch(u.at),
            KmsRequestId: u.requestId,
            CloudTrailEventId: u.requestId,
          }
        : {},
      TrackingStartDate: epoch(Math.max(this.trackingStart, k.createdAt)),
      KeyCreationDate: epoch(k.createdAt),
    };
  }
}

interface Ctx {
  r: RegionState;
  region: string;
  requestId: string;
  now: number;
}

function addMaterial(k: EmulatedKey, at: number, rotationType?: 'AUTOMATIC' | 'ON_DEMAND'): void {
  k.materials.push({
    id: randomBytes(32).toString('hex'),
    key: randomBytes(32),
    createdAt: at,
    rotationType,
  });
}

/** symmetric, asymmetric or HMAC: what UpdateAlias compares. */
function keyType(spec: KeySpec): 'symmetric' | 'asymmetric' | 'hmac' {
  if (spec === 'SYMMETRIC_DEFAULT') return 'symmetric';
  return spec.startsWith('HMAC_') ? 'hmac' : 'asymmetric';
}

/** The key policy KMS gives a key created without one: the account root may do everything. */
function defaultPolicy(account: string): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Id: 'key-default-1',
    Statement: [
      {
        Sid: 'Enable IAM User Permissions',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${account}:root` },
        Action: 'kms:*',
        Resource: '*',
      },
    ],
  });
}

/** Policies are stored, not evaluated; they must at least be JSON objects with statements. */
function checkPolicyDocument(text: string): void {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new AwsError('MalformedPolicyDocumentException', 'The key policy is not valid JSON.');
  }
  const st = (doc as { Statement?: unknown } | null)?.Statement;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || st === undefined) {
    throw new AwsError(
      'MalformedPolicyDocumentException',
      'The key policy must be an object with a Statement.',
    );
  }
}

/** An on-demand rotation lands: imported keys promote their pending material, others get new material. */
function completeRotation(k: EmulatedKey, at: number): void {
  if (k.origin === 'EXTERNAL' && k.pendingMaterial) {
    k.materials.push({ ...k.pendingMaterial, createdAt: at, rotationType: 'ON_DEMAND' });
    k.pendingMaterial = undefined;
    return;
  }
  addMaterial(k, at, 'ON_DEMAND');
}

/** KMS derives a material's id from the key and the material: the same material, the same id. */
function materialIdOf(keyId: string, material: Buffer): string {
  return createHmac('sha256', keyId).update(material).digest('hex');
}

const KWP_IV = Buffer.from('A65959A6', 'hex');

/**
 * Decrypts wrapped key material with the token's private key: RSA-OAEP directly, or RSA-OAEP
 * of an AES-256 key followed by the material under AES key wrap with padding (RFC 5649).
 */
function unwrapMaterial(params: ImportParameters, wrapped: Buffer): Buffer {
  const hash = params.algorithm.endsWith('SHA_256') ? 'sha256' : 'sha1';
  const rsaLen = (params.privateKey.asymmetricKeyDetails?.modulusLength ?? 2048) / 8;
  const fail = () =>
    new AwsError(
      'InvalidCiphertextException',
      'KMS could not decrypt the encrypted key material with the wrapping key and algorithm of this import token.',
    );
  const oaep = (data: Buffer): Buffer => {
    try {
      return privateDecrypt(
        { key: params.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
        data,
      );
    } catch {
      throw fail();
    }
  };
  if (params.algorithm.startsWith('RSAES_OAEP')) return oaep(wrapped);
  if (wrapped.length <= rsaLen) throw fail();
  const aesKey = oaep(wrapped.subarray(0, rsaLen));
  try {
    if (aesKey.length !== 32) throw fail();
    const d = createDecipheriv('id-aes256-wrap-pad', aesKey, KWP_IV);
    return Buffer.concat([d.update(wrapped.subarray(rsaLen)), d.final()]);
  } catch (e) {
    if (e instanceof AwsError) throw e;
    throw fail();
  } finally {
    aesKey.fill(0);
  }
}

function optTimestamp(body: Record<string, unknown>, name: string): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new AwsError('SerializationException', `${name} must be a timestamp (epoch seconds)`);
  }
  return Math.round(v * 1000);
}

function wipe(k: EmulatedKey): void {
  for (const m of k.materials) m.key.fill(0);
  k.pendingMaterial?.key.fill(0);
}

function stateWord(s: KeyState): string {
  return {
    Enabled: 'enabled',
    Disabled: 'disabled',
    PendingDeletion: 'pending deletion',
    PendingImport: 'pending import',
  }[s];
}

function readTags(raw: unknown, required = false): Array<[string, string]> {
  if (raw === undefined || raw === null) {
    if (required)
      throw validationError(
        "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null",
      );
    return [];
  }
  if (!Array.isArray(raw)) throw new AwsError('SerializationException', 'Tags must be a list');
  const out: Array<[string, string]> = [];
  for (const t of raw) {
    const tag = t as { TagKey?: unknown; TagValue?: unknown };
    if (typeof tag?.TagKey !== 'string' || typeof tag.TagValue !== 'string') {
      throw validationError('Each tag needs a TagKey and a TagValue string.');
    }
    if (tag.TagKey.length < 1 || tag.TagKey.length > 128 || tag.TagValue.length > 256) {
      throw new AwsError(
        'TagException',
        `Tag ${tag.TagKey.slice(0, 128)}: keys are 1-128 characters, values 0-256.`,
      );
    }
    if (tag.TagKey.startsWith('aws:')) {
      throw new AwsError('TagException', `Tag keys beginning with aws: are reserved (${tag.TagKey}).`);
    }
    out.push([tag.TagKey, tag.TagValue]);
  }
  if (out.length > 50) throw new AwsError('TagException', 'A key can have at most 50 tags.');
  return out;
}

/** Encryption context as AAD: sorted pairs, so map order in the request does not matter. */
function canonicalContext(context: Record<string, string>): Buffer {
  const pairs = Object.entries(context).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return Buffer.from(JSON.stringify(pairs), 'utf8');
}

/** Blob: magic(4) | idLen(1) | keyId | materialId(32) | iv(12) | tag(16) | ciphertext. */
function blobHeader(keyId: string, materialId: string): Buffer {
  const id = Buffer.from(keyId, 'ascii');
  return Buffer.concat([CIPHERTEXT_MAGIC, Buffer.from([id.length]), id, Buffer.from(materialId, 'hex')]);
}

function parseBlob(blob: Buffer) {
  if (blob.length < 5 || !blob.subarray(0, 4).equals(CIPHERTEXT_MAGIC)) return null;
  const idLen = blob[4]!;
  const headerLen = 5 + idLen + 32;
  if (blob.length < headerLen + 28) return null;
  const keyId = blob.subarray(5, 5 + idLen).toString('ascii');
  const materialId = blob.subarray(5 + idLen, headerLen).toString('hex');
  return {
    header: blob.subarray(0, headerLen),
    keyId,
    materialId,
    iv: blob.subarray(headerLen, headerLen + 12),
    tag: blob.subarray(headerLen + 12, headerLen + 28),
    body: blob.subarray(headerLen + 28),
  };
}
