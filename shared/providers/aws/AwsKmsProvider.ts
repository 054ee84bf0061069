import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GetKeyLastUsageCommand,
  GetKeyPolicyCommand,
  GetKeyRotationStatusCommand,
  type GetKeyRotationStatusResponse,
  type KeyMetadata,
  KMSClient,
  type KMSClientConfig,
  ListAliasesCommand,
  ListKeyRotationsCommand,
  ListKeysCommand,
  ListResourceTagsCommand,
  ReEncryptCommand,
  RotateKeyOnDemandCommand,
  type RotationsListEntry,
  ScheduleKeyDeletionCommand,
  TagResourceCommand,
  UpdateAliasCommand,
} from '@aws-sdk/client-kms';
import type { Algorithm, KeyVersion, ManagedKey, Protection } from '../../core/domain/key.js';
import { type AwsKmsRef, type KeyRef, parseKeyRef } from '../../core/domain/keyRef.js';
import {
  ConflictError,
  IntegrityError,
  InvariantViolation,
  NotFoundError,
  ProviderError,
  ValidationError,
} from '../../core/errors.js';
import { globMatcher } from '../../core/policy/glob.js';
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
import {
  isAliasManaged,
  type KmsAccess,
  parseKeyArn,
  TAG_PREVIOUS,
  TAG_SUPERSEDED,
  userTags,
  versionOfLink,
  walkChain,
} from './aliasChain.js';
import { toRekeyError, unsupported } from './errors.js';
import type { WrappingKeySpec } from './importMaterial.js';

export interface AwsKmsProviderOptions {
  /** Configured provider id, e.g. `aws-prod`. */
  id: string;
  /** Regions to inventory, in order. The first is where createKey() creates keys. */
  regions: string[];
  /** Custom endpoint (an emulator, a VPC endpoint); the same for every Region. */
  endpoint?: string;
  credentials?: KMSClientConfig['credentials'];
  /** Shared-config profile for the default credential chain. */
  profile?: string;
  /** SDK attempts per call (the SDK retries throttling and 5xx with backoff). Default 3. */
  maxAttempts?: number;
  /** Builds the client of a Region; overrides endpoint/credentials/maxAttempts (tests, custom agents). */
  clientFactory?: (region: string) => KMSClient;
  /** How often rotate() re-reads the key while AWS completes an on-demand rotation. Default 1000 ms. */
  rotationPollMs?: number;
  /** How long rotate() waits for the new key material before giving up. Default 300,000 ms. */
  rotationTimeoutMs?: number;
  /** Keys described in parallel while listing. Default 8. */
  listConcurrency?: number;
  /**
   * Alias name globs (without `alias/`) whose symmetric keys rekey rotates by a new key and an
   * alias swap instead of new key material, e.g. when 25 on-demand rotations are not enough or
   * a crypto-period rule asks for a new key. Asymmetric and HMAC keys behind an alias always
   * rotate that way; see docs/aws.md.
   */
  rotateByNewKey?: string[];
  /**
   * RSA wrapping key GetParametersForImport asks for (BYOK). Default RSA_4096, the longest,
   * which AWS recommends; smaller ones make faster test runs.
   */
  importWrappingKeySpec?: WrappingKeySpec;
}

/** AWS-specific facts kept beside the neutral key model. */
export interface AwsKeyDetails {
  keyId: string;
  arn: string;
  region: string;
  aliases: string[];
  description: string;
  keySpec: string;
  keyUsage: string;
  origin: string;
  multiRegion: boolean;
  keyState: string;
  /** When a key in PendingDeletion will be deleted. */
  deletionDate?: string;
  rotationEnabled: boolean;
  onDemandRotationStartedAt?: string;
  /** On-demand rotations used so far (AWS allows MAX_ON_DEMAND_ROTATIONS per key). */
  onDemandRotations: number;
  /**
   * Set when the key is an alias chain: rotation creates a new key and moves the alias, and
   * every version is a key ARN. `keyId`, `arn` and the other fields describe the current key.
   */
  aliasManaged?: { alias: string };
}

export interface AwsManagedKey extends ManagedKey {
  aws: AwsKeyDetails;
}

/** AWS KMS allows this many RotateKeyOnDemand calls per key over its lifetime. */
export const MAX_ON_DEMAND_ROTATIONS = 25;
const AUTO_ROTATION = { minDays: 90, maxDays: 2560 };
const DELETION_WINDOW = { min: 7, max: 30 };
/** Version id of keys whose material AWS does not identify (asymmetric and HMAC keys have one, fixed). */
const ORIGINAL_VERSION = 'original';
const MAX_PLAINTEXT = 4096;
/** Tags per key AWS allows. */
const MAX_TAGS = 50;

const CAPABILITIES: ProviderCapabilities = {
  autoRotation: AUTO_ROTATION,
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: DELETION_WINDOW,
  lastUsed: true,
  maxOnDemandRotations: MAX_ON_DEMAND_ROTATIONS,
  // Key material cannot be disabled or deleted on its own: AWS acts on whole keys.
  versionControl: { disable: false, destroy: false },
  import: { algorithms: ['rsa-aes-kwp-sha1', 'rsa-oaep-sha1'] },
};

/**
 * An alias chain: each version is a whole key, so versions can be disabled and deleted one by
 * one, there is no native schedule and no on-demand rotation limit.
 */
const ALIAS_CHAIN_CAPABILITIES: ProviderCapabilities = {
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: DELETION_WINDOW,
  lastUsed: true,
  versionControl: { disable: true, destroy: true },
};

const ALGORITHMS: Record<string, Algorithm> = {
  SYMMETRIC_DEFAULT: 'AES_256',
  RSA_2048: 'RSA_2048',
  RSA_3072: 'RSA_3072',
  RSA_4096: 'RSA_4096',
  ECC_NIST_P256: 'EC_P256',
  ECC_NIST_P384: 'EC_P384',
  HMAC_256: 'HMAC_256',
};
const SPEC_FOR: Partial<Record<Algorithm, { KeySpec: string; KeyUsage: string }>> = {
  AES_256: { KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' },
  RSA_2048: { KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' },
  RSA_3072: { KeySpec: 'RSA_3072', KeyUsage: 'ENCRYPT_DECRYPT' },
  RSA_4096: { KeySpec: 'RSA_4096', KeyUsage: 'ENCRYPT_DECRYPT' },
  EC_P256: { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' },
  EC_P384: { KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' },
  HMAC_256: { KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' },
};
const PROTECTION: Record<string, Protection> = {
  AWS_KMS: 'hsm',
  EXTERNAL: 'hsm',
  AWS_CLOUDHSM: 'hsm',
  EXTERNAL_KEY_STORE: 'external',
};
const ALIAS_NAME = /^[a-zA-Z0-9/_-]{1,250}$/;

interface ListCursor {
  r: number;
  m?: string;
}

/**
 * AWS KMS behind the KeyProvider port.
 *
 * Versions are key materials: the id of a version is its KeyMaterialId (from ListKeyRotations
 * with IncludeKeyMaterial=ALL_KEY_MATERIAL and DescribeKey's CurrentKeyMaterialId); the
 * current material is the primary. AWS keeps every material of a key usable as long as the key
 * is, so state and deletion exist per key only; see docs/aws.md for how the port maps onto that.
 */
export class AwsKmsProvider implements KeyProvider, KeyCreator {
  readonly id: string;
  readonly type = 'aws-kms' as const;
  private readonly opts: AwsKmsProviderOptions;
  private readonly clients = new Map<string, KMSClient>();
  /** Last known current material per key ARN: lets wrap() learn its version with one DescribeKey. */
  private readonly currentMaterial = new Map<string, string>();
  /** Alias ARN -> whether it is an alias chain (stable: chains never turn back into plain keys). */
  private readonly chainAliases = new Map<string, boolean>();
  private readonly newKeyAliases: string[];
  /** The narrow view of this provider the alias-chain and import code works through. */
  private readonly access: KmsAccess;

  constructor(opts: AwsKmsProviderOptions) {
    if (!opts.id) throw new ValidationError('aws-kms provider: id is required');
    if (!Array.isArray(opts.regions) || opts.regions.length === 0) {
      throw new ValidationError(`aws-kms provider ${opts.id}: regions must list at least one Region`);
    }
    for (const r of opts.regions) {
      if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(r))
        throw new ValidationError(`aws-kms provider ${opts.id}: "${r}" is not a Region`);
    }
    for (const g of opts.rotateByNewKey ?? []) globMatcher(g);
    this.id = opts.id;
    this.opts = opts;
    this.newKeyAliases = [...(opts.rotateByNewKey ?? [])];
    this.access = {
      providerId: opts.id,
      client: (region) => this.client(region),
      call: (what, run) => this.call(what, run),
      describe: (region, keyId) => this.describe(region, keyId),
      tags: (region, arn) => this.tagsOf(region, arn),
      aliases: (region, keyId) => this.aliasesOf(region, keyId),
    };
  }

  capabilities(): ProviderCapabilities {
    return {
      ...CAPABILITIES,
      autoRotation: { ...AUTO_ROTATION },
      destroyDelayDays: { ...DELETION_WINDOW },
      import: { algorithms: [...CAPABILITIES.import!.algorithms] },
    };
  }

  /**
   * What rekey can do differs per AWS key: an alias chain controls versions one by one (they are
   * keys) and has no native schedule; imported material has no automatic rotation (a new version
   * is an import, from the policy's BYOK source); asymmetric and HMAC keys without an alias
   * cannot rotate at all. Keys not built by this provider get the provider's capabilities.
   */
  capabilitiesFor(key: ManagedKey): ProviderCapabilities {
    const aws = (key as Partial<AwsManagedKey>).aws;
    if (!aws) return this.capabilities();
    if (aws.aliasManaged) {
      return { ...ALIAS_CHAIN_CAPABILITIES, destroyDelayDays: { ...DELETION_WINDOW } };
    }
    const { autoRotation: _native, ...rest } = this.capabilities();
    if (aws.origin === 'EXTERNAL' || aws.keySpec !== 'SYMMETRIC_DEFAULT') return rest;
    return this.capabilities();
  }

  private client(region: string): KMSClient {
    let c = this.clients.get(region);
    if (!c) {
      c =
        this.opts.clientFactory?.(region) ??
        new KMSClient({
          region,
          ...(this.opts.endpoint ? { endpoint: this.opts.endpoint } : {}),
          ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
          ...(this.opts.profile ? { profile: this.opts.profile } : {}),
          maxAttempts: this.opts.maxAttempts ?? 3,
        });
      this.clients.set(region, c);
    }
    return c;
  }

  private awsRef(ref: KeyRef): AwsKmsRef {
    if (ref.type !== 'aws-kms') {
      throw new ValidationError(`provider ${this.id} (aws-kms) cannot handle ${ref.type} key ref ${ref.uri}`);
    }
    if (!this.opts.regions.includes(ref.region)) {
      throw new ValidationError(
        `key ref ${ref.uri} is in ${ref.region}, which provider ${this.id} does not serve (regions: ${this.opts.regions.join(', ')})`,
      );
    }
    return ref;
  }

  private async tagsOf(region: string, arn: string): Promise<Record<string, string>> {
    const c = this.client(region);
    const tags = await this.paged(`ListResourceTags ${arn}`, async (Marker) => {
      const o = await c.send(new ListResourceTagsCommand({ KeyId: arn, Limit: 50, Marker }));
      return { items: o.Tags ?? [], next: o.Truncated ? o.NextMarker : undefined };
    });
    const out: Record<string, string> = {};
    for (const t of tags) if (t.TagKey) out[t.TagKey] = t.TagValue ?? '';
    return out;
  }

  /** Alias names (`alias/...`) pointing at a key, sorted. */
  private async aliasesOf(region: string, keyId: string): Promise<string[]> {
    const c = this.client(region);
    const names = await this.paged(`ListAliases ${keyId}`, async (Marker) => {
      const o = await c.send(new ListAliasesCommand({ KeyId: keyId, Limit: 100, Marker }));
      return {
        items: (o.Aliases ?? []).map((a) => a.AliasName ?? '').filter(Boolean),
        next: o.Truncated ? o.NextMarker : undefined,
      };
    });
    return names.sort();
  }

  /** Runs one SDK call, translating its failure. */
  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      throw toRekeyError(this.id, e, what);
    }
  }

  private keyArn(ref: AwsKmsRef): string {
    return ref.uri.slice('aws-kms://'.length);
  }

  private async describe(region: string, keyId: string): Promise<KeyMetadata> {
    const out = await this.call(`DescribeKey ${keyId}`, () =>
      this.client(region).send(new DescribeKeyCommand({ KeyId: keyId })),
    );
    const md = out.KeyMetadata;
    if (!md?.Arn || !md.KeyId) {
      throw new ProviderError(
        this.id,
        'MalformedResponse',
        `DescribeKey ${keyId}: no KeyMetadata in the response`,
      );
    }
    if (md.CurrentKeyMaterialId) this.currentMaterial.set(md.Arn, md.CurrentKeyMaterialId);
    return md;
  }

  // ---- inventory ----

  async listKeys(scope: ListScope, cursor: string | null): Promise<Page<ManagedKey>> {
    const at = cursor === null ? { r: 0 } : this.decodeCursor(cursor);
    const region = this.opts.regions[at.r]!;
    const limit = Math.min(Math.max(scope.pageSize ?? 100, 1), 1000);
    const out = await this.call(`ListKeys in ${region}`, () =>
      this.client(region).send(new ListKeysCommand({ Limit: limit, ...(at.m ? { Marker: at.m } : {}) })),
    );
    const entries = out.Keys ?? [];
    const keys = await mapLimited(entries, this.opts.listConcurrency ?? 8, async (e) => {
      try {
        const md = await this.describe(region, e.KeyArn ?? e.KeyId!);
        // AWS managed keys (alias/aws/*) rotate yearly on AWS's terms and cannot be managed.
        if (md.KeyManager !== 'CUSTOMER') return null;
        // Keys on their way out, or that never had material, have nothing rekey can act on.
        // Imported material that expired or was deleted leaves the key PendingImport: it is
        // listed (disabled), so plans report it.
        if (md.KeyState === 'PendingDeletion' || md.KeyState === 'PendingReplicaDeletion') return null;
        if (md.KeyState === 'PendingImport' && !md.CurrentKeyMaterialId) return null;
        if (!ALGORITHMS[md.KeySpec ?? '']) return null;
        const [aliases, tags] = await Promise.all([
          this.aliasesOf(region, md.KeyId!),
          this.tagsOf(region, md.Arn!),
        ]);
        if (await this.isChainMember(region, md, aliases, tags)) return null;
        if (isAliasManaged(md, aliases, tags, this.newKeyAliases)) {
          return await this.buildChain(region, md, aliases, tags, this.aliasArn(md.Arn!, aliases[0]!));
        }
        return await this.build(region, md, aliases, tags);
      } catch (err) {
        if (err instanceof NotFoundError) return null; // deleted between ListKeys and DescribeKey
        throw err;
      }
    });
    const items = keys.filter(
      (k): k is AwsManagedKey => k !== null && (!scope.namePrefix || k.name.startsWith(scope.namePrefix)),
    );
    let next: ListCursor | null = null;
    if (out.Truncated && out.NextMarker) next = { r: at.r, m: out.NextMarker };
    else if (at.r + 1 < this.opts.regions.length) next = { r: at.r + 1 };
    return { items, cursor: next ? Buffer.from(JSON.stringify(next)).toString('base64url') : null };
  }

  /**
   * A key that is a version of an alias chain, not a key of its own: one the alias moved away
   * from, or the new key of a swap that stopped before moving the alias (the next rotation of
   * that alias finishes it).
   */
  private async isChainMember(
    region: string,
    md: KeyMetadata,
    aliases: string[],
    tags: Record<string, string>,
  ): Promise<boolean> {
    if (aliases.length > 0) return false;
    if (tags[TAG_SUPERSEDED]) return true;
    const prev = tags[TAG_PREVIOUS];
    if (!prev || !parseKeyArn(prev)) return false;
    try {
      const [prevTags, prevAliases] = await Promise.all([
        this.tagsOf(region, prev),
        this.aliasesOf(region, prev),
      ]);
      return prevTags[TAG_SUPERSEDED] === md.Arn && prevAliases.length > 0;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  private decodeCursor(cursor: string): ListCursor {
    try {
      const c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as ListCursor;
      if (
        Number.isInteger(c.r) &&
        c.r >= 0 &&
        c.r < this.opts.regions.length &&
        (c.m === undefined || typeof c.m === 'string')
      ) {
        return c;
      }
    } catch {
      // fall through
    }
    throw new ValidationError(`provider ${this.id}: invalid listKeys cursor`);
  }

  /**
   * A key ref names either one AWS key (key ARN, or an alias of a key AWS rotates itself) or,
   * for an alias chain, the alias with every key it has pointed to as versions.
   */
  async getKey(ref: KeyRef): Promise<AwsManagedKey> {
    const r = this.awsRef(ref);
    const md = await this.describeRef(r);
    if (!ALGORITHMS[md.KeySpec ?? '']) {
      throw new ProviderError(
        this.id,
        'UnsupportedKeySpec',
        `key ${md.Arn} has key spec ${md.KeySpec}, which rekey does not model`,
      );
    }
    const [aliases, tags] = await Promise.all([
      this.aliasesOf(r.region, md.KeyId!),
      this.tagsOf(r.region, md.Arn!),
    ]);
    if (isAlias(r)) {
      const chain = isAliasManaged(md, aliases, tags, this.newKeyAliases);
      this.chainAliases.set(this.keyArn(r), chain);
      if (chain) return this.buildChain(r.region, md, aliases, tags, this.keyArn(r));
    }
    return this.build(r.region, md, aliases, tags);
  }

  /**
   * DescribeKey for a ref, with clear errors for a missing alias and for a ref whose key is not
   * where the ref says (another account or Region).
   */
  private async describeRef(r: AwsKmsRef): Promise<KeyMetadata> {
    let md: KeyMetadata;
    try {
      md = await this.describe(r.region, this.keyArn(r));
    } catch (e) {
      if (e instanceof NotFoundError && isAlias(r)) {
        throw new NotFoundError(
          `${this.id}: ${r.resource} does not exist in ${r.region} of account ${r.account}`,
          { cause: e },
        );
      }
      throw e;
    }
    const where = parseKeyArn(md.Arn!);
    if (!where || where.region !== r.region || where.account !== r.account) {
      throw new ValidationError(
        `${this.id}: ${r.uri} resolves to ${md.Arn}, outside ${r.region} of account ${r.account}`,
      );
    }
    return md;
  }

  /** `arn:...:alias/<name>` in the account and Region of a key ARN. */
  private aliasArn(keyArn: string, alias: string): string {
    return keyArn.replace(/:key\/.*$/, `:${alias}`);
  }

  /** Builds the neutral key model from DescribeKey plus aliases, tags, rotation status and materials. */
  private async build(
    region: string,
    md: KeyMetadata,
    aliases: string[],
    tagMap: Record<string, string>,
  ): Promise<AwsManagedKey> {
    const c = this.client(region);
    const arn = md.Arn!;
    const symmetric = md.KeySpec === 'SYMMETRIC_DEFAULT';
    const rotatable = symmetric && md.Origin === 'AWS_KMS';
    // Imported symmetric material rotates on demand too (a new import, then RotateKeyOnDemand).
    const hasMaterials = symmetric && (md.Origin === 'AWS_KMS' || md.Origin === 'EXTERNAL');
    const [status, rotations] = await Promise.all([
      rotatable
        ? this.call(`GetKeyRotationStatus ${arn}`, () =>
            c.send(new GetKeyRotationStatusCommand({ KeyId: arn })),
          )
        : Promise.resolve<GetKeyRotationStatusResponse>({ KeyRotationEnabled: false }),
      hasMaterials ? this.materials(region, arn) : Promise.resolve<RotationsListEntry[]>([]),
    ]);
    const created = (md.CreationDate ?? new Date(0)).toISOString();
    let versions: KeyVersion[];
    let primary: string;
    if (rotations.length > 0) {
      versions = rotations.map((m) => ({
        id: m.KeyMaterialId!,
        state: 'enabled',
        createdAt: m.RotationDate ? m.RotationDate.toISOString() : created,
        ...(m.ValidTo ? { expiresAt: m.ValidTo.toISOString() } : {}),
      }));
      primary =
        rotations.find((m) => m.KeyMaterialState === 'CURRENT')?.KeyMaterialId ??
        md.CurrentKeyMaterialId ??
        versions[versions.length - 1]!.id;
    } else {
      primary = md.CurrentKeyMaterialId ?? ORIGINAL_VERSION;
      versions = [
        {
          id: primary,
          state: 'enabled',
          createdAt: created,
          ...(md.ValidTo ? { expiresAt: md.ValidTo.toISOString() } : {}),
        },
      ];
    }
    // Key state is per key in AWS. A disabled key reports enabled=false with its versions
    // unchanged, so the one-enabled-primary invariant holds; a key pending deletion shows
    // every version destroy_scheduled (listKeys leaves such keys out).
    if (md.KeyState === 'PendingDeletion' && md.DeletionDate) {
      const destroyAt = md.DeletionDate.toISOString();
      versions = versions.map((v) => ({ ...v, state: 'destroy_scheduled', destroyAt }));
    }
    const onDemand = rotations.filter((m) => m.RotationType === 'ON_DEMAND').length;
    const key: AwsManagedKey = {
      ref: `aws-kms://${arn}`,
      providerType: 'aws-kms',
      providerId: this.id,
      name: aliases[0]?.replace(/^alias\//, '') ?? md.KeyId!,
      tags: userTags(tagMap),
      protection: PROTECTION[md.Origin ?? 'AWS_KMS'] ?? 'hsm',
      algorithm: ALGORITHMS[md.KeySpec ?? 'SYMMETRIC_DEFAULT'] ?? 'AES_256',
      enabled: md.KeyState === 'Enabled',
      primaryVersion: primary,
      versions,
      createdAt: created,
      ...(md.Origin === 'EXTERNAL' ? { imported: true } : {}),
      aws: this.details(region, md, aliases, status, onDemand),
    };
    if (status.KeyRotationEnabled && status.RotationPeriodInDays) {
      key.autoRotation = {
        periodDays: status.RotationPeriodInDays,
        ...(status.NextRotationDate ? { nextRotationAt: status.NextRotationDate.toISOString() } : {}),
      };
    }
    return key;
  }

  private details(
    region: string,
    md: KeyMetadata,
    aliases: string[],
    status: GetKeyRotationStatusResponse,
    onDemand: number,
  ): AwsKeyDetails {
    return {
      keyId: md.KeyId!,
      arn: md.Arn!,
      region,
      aliases,
      description: md.Description ?? '',
      keySpec: md.KeySpec ?? 'SYMMETRIC_DEFAULT',
      keyUsage: md.KeyUsage ?? 'ENCRYPT_DECRYPT',
      origin: md.Origin ?? 'AWS_KMS',
      multiRegion: md.MultiRegion ?? false,
      keyState: md.KeyState ?? 'Enabled',
      ...(md.DeletionDate ? { deletionDate: md.DeletionDate.toISOString() } : {}),
      rotationEnabled: status.KeyRotationEnabled ?? false,
      ...(status.OnDemandRotationStartDate
        ? { onDemandRotationStartedAt: status.OnDemandRotationStartDate.toISOString() }
        : {}),
      onDemandRotations: onDemand,
    };
  }

  /**
   * The logical key of an alias chain: named by the alias, its versions the keys the alias has
   * pointed to (oldest first), its primary the current target. Tags, spec and state are the
   * current key's; a disabled current key makes the whole key `enabled: false`.
   */
  private async buildChain(
    region: string,
    md: KeyMetadata,
    aliases: string[],
    tags: Record<string, string>,
    aliasArn: string,
  ): Promise<AwsManagedKey> {
    const links = await walkChain(this.access, region, { arn: md.Arn!, md, tags });
    const versions = links.map((l, i) => versionOfLink(l, links[i + 1]));
    // The current key's own state shows as the key's `enabled`, never as its version's.
    versions[versions.length - 1] = { ...versions[versions.length - 1]!, state: 'enabled' };
    delete versions[versions.length - 1]!.destroyAt;
    const alias = aliasArn.slice(aliasArn.indexOf(':alias/') + 1);
    return {
      ref: `aws-kms://${aliasArn}`,
      providerType: 'aws-kms',
      providerId: this.id,
      name: alias.replace(/^alias\//, ''),
      tags: userTags(tags),
      protection: PROTECTION[md.Origin ?? 'AWS_KMS'] ?? 'hsm',
      algorithm: ALGORITHMS[md.KeySpec ?? 'SYMMETRIC_DEFAULT'] ?? 'AES_256',
      enabled: md.KeyState === 'Enabled',
      primaryVersion: md.Arn!,
      versions,
      createdAt: versions[0]!.createdAt,
      ...(md.Origin === 'EXTERNAL' ? { imported: true } : {}),
      aws: {
        ...this.details(region, md, aliases, { KeyRotationEnabled: false }, 0),
        aliasManaged: { alias },
      },
    };
  }

  /** Every key material of a key, oldest first (imported material waiting for its rotation left out). */
  private async materials(region: string, arn: string): Promise<RotationsListEntry[]> {
    const c = this.client(region);
    const all = await this.paged(`ListKeyRotations ${arn}`, async (Marker) => {
      const o = await c.send(
        new ListKeyRotationsCommand({
          KeyId: arn,
          IncludeKeyMaterial: 'ALL_KEY_MATERIAL',
          Limit: 1000,
          Marker,
        }),
      );
      return { items: o.Rotations ?? [], next: o.Truncated ? o.NextMarker : undefined };
    });
    // The first material has no RotationDate; the others sort by it.
    return all
      .filter(
        (m) => m.KeyMaterialId && (m.KeyMaterialState === 'CURRENT' || m.KeyMaterialState === 'NON_CURRENT'),
      )
      .sort(
        (a, b) =>
          (a.RotationDate?.getTime() ?? Number.NEGATIVE_INFINITY) -
          (b.RotationDate?.getTime() ?? Number.NEGATIVE_INFINITY),
      );
  }

  private async paged<T>(
    what: string,
    page: (marker: string | undefined) => Promise<{ items: T[]; next?: string }>,
  ): Promise<T[]> {
    const out: T[] = [];
    let marker: string | undefined;
    for (let i = 0; i < 10_000; i++) {
      const p = await this.call(what, () => page(marker));
      out.push(...p.items);
      if (!p.next) return out;
      marker = p.next;
    }
    throw new ProviderError(this.id, 'PaginationRunaway', `${what}: more than 10,000 pages`);
  }

  // ---- rotation ----

  /**
   * Alias chains rotate by a new key and an alias swap. Other keys rotate their material with
   * RotateKeyOnDemand; keys AWS cannot rotate that way are refused with the reason and the way
   * out (an alias, or an import of new material).
   */
  async rotate(ref: KeyRef): Promise<KeyVersion> {
    const r = this.awsRef(ref);
    if (await this.isChain(r)) return this.rotateByNewKey(r);
    const before = await this.describeRef(r);
    if (before.Origin === 'EXTERNAL') {
      throw unsupported(
        this.id,
        `key ${before.Arn} holds imported material, which AWS KMS cannot renew by itself: ` +
          'rotate it by importing new material (`rekey byok import`, or a policy with a byok source)',
      );
    }
    if (before.KeySpec !== 'SYMMETRIC_DEFAULT' || before.Origin !== 'AWS_KMS') {
      throw unsupported(
        this.id,
        `key ${before.Arn} (${before.KeySpec}, origin ${before.Origin}) cannot rotate in AWS KMS; give it an alias ` +
          'and address it as aws-kms://arn:...:alias/<name>: rekey then rotates it by a new key and an alias swap',
      );
    }
    return this.rotateOnDemand(r.region, before);
  }

  /** RotateKeyOnDemand, then waits (AWS completes it asynchronously) for the new current material. */
  private async rotateOnDemand(region: string, before: KeyMetadata): Promise<KeyVersion> {
    const beforeId = before.CurrentKeyMaterialId;
    try {
      await this.client(region).send(new RotateKeyOnDemandCommand({ KeyId: before.Arn! }));
    } catch (e) {
      const err = toRekeyError(this.id, e, `RotateKeyOnDemand ${before.Arn}`);
      if (err instanceof ProviderError && err.providerCode === 'LimitExceededException') {
        throw new ProviderError(
          this.id,
          err.providerCode,
          `RotateKeyOnDemand ${before.Arn}: the key has used all ${MAX_ON_DEMAND_ROTATIONS} on-demand rotations AWS allows; ` +
            'create a new key, rely on automatic rotation, or list its alias under rotateByNewKey',
          { cause: e },
        );
      }
      throw err;
    }
    return this.waitForMaterial(region, before.Arn!, beforeId);
  }

  private async waitForMaterial(
    region: string,
    arn: string,
    beforeId: string | undefined,
  ): Promise<KeyVersion> {
    const pollMs = this.opts.rotationPollMs ?? 1000;
    const deadline = Date.now() + (this.opts.rotationTimeoutMs ?? 300_000);
    for (;;) {
      const md = await this.describe(region, arn);
      const now = md.CurrentKeyMaterialId;
      if (now && now !== beforeId) {
        const entry = (await this.materials(region, md.Arn!)).find((m) => m.KeyMaterialId === now);
        return {
          id: now,
          state: 'enabled',
          createdAt: (entry?.RotationDate ?? new Date()).toISOString(),
          ...(entry?.ValidTo ? { expiresAt: entry.ValidTo.toISOString() } : {}),
        };
      }
      if (Date.now() >= deadline) {
        throw new ProviderError(
          this.id,
          'RotationPending',
          `RotateKeyOnDemand ${md.Arn}: started, but the new key material was not current within the wait; ` +
            'read the key again later instead of rotating again',
          {
            // Calling rotate() again would start a second rotation once this one lands.
            retryable: false,
          },
        );
      }
      await new Promise((res) => setTimeout(res, pollMs));
    }
  }

  /** Whether an alias ref names an alias chain (asked once per alias, then remembered). */
  private async isChain(r: AwsKmsRef): Promise<boolean> {
    if (!isAlias(r)) return false;
    const aliasArn = this.keyArn(r);
    const known = this.chainAliases.get(aliasArn);
    if (known !== undefined) return known;
    const md = await this.describeRef(r);
    const [aliases, tags] = await Promise.all([
      this.aliasesOf(r.region, md.KeyId!),
      this.tagsOf(r.region, md.Arn!),
    ]);
    const chain = isAliasManaged(md, aliases, tags, this.newKeyAliases);
    this.chainAliases.set(aliasArn, chain);
    return chain;
  }

  /**
   * Rotation of an alias chain. In this order, so that an interruption at any point is either
   * harmless or finished by the next rotation:
   *  1. CreateKey: same spec, usage, description, key policy and tags, plus rekey:previous-key;
   *  2. TagResource on the current key: rekey:superseded-by = the new key;
   *  3. UpdateAlias for every alias of the current key, the ref's own alias last.
   * A current key already tagged superseded-by an enabled key that names it as previous is an
   * interrupted swap: that key is used instead of creating another.
   */
  private async rotateByNewKey(r: AwsKmsRef): Promise<KeyVersion> {
    const region = r.region;
    const head = await this.describeRef(r);
    const headArn = head.Arn!;
    const tags = await this.tagsOf(region, headArn);
    // Refuse a damaged history before creating anything.
    await walkChain(this.access, region, { arn: headArn, md: head, tags });
    if (head.KeyState !== 'Enabled') {
      throw new ProviderError(
        this.id,
        'KMSInvalidStateException',
        `${r.resource} points to ${headArn}, which is ${head.KeyState}; enable it before rotating`,
      );
    }
    if (head.Origin !== 'AWS_KMS') {
      throw unsupported(
        this.id,
        `${r.resource} points to ${headArn} with origin ${head.Origin}: a new key would need its material ` +
          `imported or created in a custom key store, which rotation by a new key does not do`,
      );
    }
    if (head.MultiRegion) {
      throw unsupported(
        this.id,
        `${r.resource} points to multi-Region key ${headArn}: a new key would not have its replicas; rotate it by hand`,
      );
    }
    const next =
      (await this.unfinishedSwap(region, headArn, tags)) ?? (await this.createSuccessor(region, head, tags));
    const aliases = (await this.aliasesOf(region, head.KeyId!)).sort(
      (a, b) => Number(a === r.resource) - Number(b === r.resource),
    );
    const c = this.client(region);
    for (const alias of aliases) {
      await this.call(`UpdateAlias ${alias}`, () =>
        c.send(new UpdateAliasCommand({ AliasName: alias, TargetKeyId: next.KeyId! })),
      );
    }
    this.chainAliases.set(this.keyArn(r), true);
    return { id: next.Arn!, state: 'enabled', createdAt: (next.CreationDate ?? new Date()).toISOString() };
  }

  /** The successor an interrupted swap already created, if any. */
  private async unfinishedSwap(
    region: string,
    headArn: string,
    tags: Record<string, string>,
  ): Promise<KeyMetadata | null> {
    const successor = tags[TAG_SUPERSEDED];
    if (!successor) return null;
    try {
      const md = await this.describe(region, successor);
      if (md.KeyState !== 'Enabled') return null;
      const t = await this.tagsOf(region, md.Arn!);
      return t[TAG_PREVIOUS] === headArn ? md : null;
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
  }

  private async createSuccessor(
    region: string,
    head: KeyMetadata,
    tags: Record<string, string>,
  ): Promise<KeyMetadata> {
    const headArn = head.Arn!;
    const inherited = { ...userTags(tags), [TAG_PREVIOUS]: headArn };
    if (Object.keys(inherited).length > MAX_TAGS) {
      throw new ValidationError(
        `${this.id}: ${headArn} has ${Object.keys(inherited).length - 1} tags; its successor needs one more ` +
          `(${TAG_PREVIOUS}) and AWS allows ${MAX_TAGS}: remove a tag first`,
      );
    }
    const c = this.client(region);
    const policy = await this.call(`GetKeyPolicy ${headArn}`, () =>
      c.send(new GetKeyPolicyCommand({ KeyId: headArn, PolicyName: 'default' })),
    );
    const created = await this.call(`CreateKey (successor of ${headArn})`, () =>
      c.send(
        new CreateKeyCommand({
          Description: head.Description ?? '',
          KeySpec: head.KeySpec,
          KeyUsage: head.KeyUsage,
          Origin: 'AWS_KMS',
          ...(policy.Policy ? { Policy: policy.Policy } : {}),
          Tags: Object.entries(inherited).map(([TagKey, TagValue]) => ({ TagKey, TagValue })),
        }),
      ),
    );
    const md = created.KeyMetadata;
    if (!md?.Arn || !md.KeyId) {
      throw new ProviderError(
        this.id,
        'MalformedResponse',
        `CreateKey (successor of ${headArn}): no KeyMetadata`,
      );
    }
    try {
      await c.send(
        new TagResourceCommand({ KeyId: headArn, Tags: [{ TagKey: TAG_SUPERSEDED, TagValue: md.Arn }] }),
      );
    } catch (e) {
      // Without the mark the new key could not be found again: do not leave it behind.
      await c
        .send(new ScheduleKeyDeletionCommand({ KeyId: md.KeyId, PendingWindowInDays: DELETION_WINDOW.min }))
        .catch(() => {});
      throw toRekeyError(this.id, e, `TagResource ${headArn}`);
    }
    return md;
  }

  async setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void> {
    const r = this.awsRef(ref);
    if (await this.isChain(r)) {
      if (periodDays === null) return;
      throw unsupported(
        this.id,
        `key ${ref.uri} rotates by a new key and an alias swap; AWS has no schedule for that (rekey rotates it on demand)`,
      );
    }
    const arn = this.keyArn(r);
    const c = this.client(r.region);
    if (periodDays === null) {
      await this.call(`DisableKeyRotation ${arn}`, () =>
        c.send(new DisableKeyRotationCommand({ KeyId: arn })),
      );
      return;
    }
    if (
      !Number.isInteger(periodDays) ||
      periodDays < AUTO_ROTATION.minDays ||
      periodDays > AUTO_ROTATION.maxDays
    ) {
      throw new ValidationError(
        `key ${ref.uri}: AWS KMS rotation periods are whole days from ${AUTO_ROTATION.minDays} to ${AUTO_ROTATION.maxDays} (got ${periodDays})`,
      );
    }
    await this.call(`EnableKeyRotation ${arn}`, () =>
      c.send(new EnableKeyRotationCommand({ KeyId: arn, RotationPeriodInDays: periodDays })),
    );
  }

  // ---- state: per key in AWS ----

  /**
   * AWS enables, disables and deletes whole keys, never one key material. A version change is
   * carried out only when it means exactly the same as the key-level change: the key has a
   * single material. Anything else is refused with 'UnsupportedOperation'. In an alias chain a
   * version is a whole key, so it is disabled and enabled (and its deletion cancelled) itself.
   */
  async setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void> {
    if (await this.isChain(this.awsRef(ref))) return this.setChainVersionState(ref, version, state);
    const key = await this.getKey(ref);
    this.requireVersion(key, version);
    const wantEnabled = state === 'enabled';
    if (key.enabled === wantEnabled) return;
    if (key.versions.length > 1) {
      throw unsupported(
        this.id,
        `key ${key.ref}: AWS KMS cannot ${state === 'enabled' ? 'enable' : 'disable'} key material ${version} alone; ` +
          `it has ${key.versions.length} materials and state applies to the whole key (use ${wantEnabled ? 'enableKey' : 'disableKey'}() for that)`,
      );
    }
    await (wantEnabled ? this.enableKey(ref) : this.disableKey(ref));
  }

  async scheduleDestroy(ref: KeyRef, version: string, days: number): Promise<{ destroyAt: string }> {
    this.checkWindow(ref, days);
    if (await this.isChain(this.awsRef(ref))) return this.destroyChainVersion(ref, version, days);
    const key = await this.getKey(ref);
    this.requireVersion(key, version);
    if (key.versions.length > 1) {
      throw unsupported(
        this.id,
        `key ${key.ref}: AWS KMS cannot delete key material ${version} alone (the key has ${key.versions.length} materials; ` +
          'deletion applies to the whole key: use scheduleKeyDeletion() once no DEK depends on any of them)',
      );
    }
    return this.scheduleKeyDeletion(ref, days);
  }

  /** A version of an alias chain other than the current key, described; refuses the current key. */
  private async chainVersion(key: AwsManagedKey, version: string, what: string): Promise<KeyMetadata> {
    const r = this.awsRef(parseKeyRef(key.ref));
    this.requireVersion(key, version);
    if (version === key.primaryVersion) {
      throw new InvariantViolation(
        `key ${key.ref}: version ${version} is the key ${r.resource} points to and cannot be ${what}; rotate first`,
      );
    }
    const v = key.versions.find((x) => x.id === version)!;
    if (v.state === 'destroyed')
      throw new NotFoundError(`${this.id}: key ${version} (a version of ${key.ref}) was deleted`);
    return this.describe(r.region, version);
  }

  private async setChainVersionState(
    ref: KeyRef,
    version: string,
    state: 'enabled' | 'disabled',
  ): Promise<void> {
    const r = this.awsRef(ref);
    const key = await this.getKey(ref);
    // Enabling the current key is a no-op; disabling it is refused below.
    if (version === key.primaryVersion && state === 'enabled') return;
    const md = await this.chainVersion(key, version, state);
    const c = this.client(r.region);
    const arn = md.Arn!;
    if (md.KeyState === 'PendingDeletion') {
      // Cancelling leaves the key Disabled, which is what `disabled` asks for.
      await this.call(`CancelKeyDeletion ${arn}`, () => c.send(new CancelKeyDeletionCommand({ KeyId: arn })));
      if (state === 'disabled') return;
      await this.call(`EnableKey ${arn}`, () => c.send(new EnableKeyCommand({ KeyId: arn })));
      return;
    }
    if (state === 'disabled' && md.KeyState === 'Enabled') {
      await this.call(`DisableKey ${arn}`, () => c.send(new DisableKeyCommand({ KeyId: arn })));
    } else if (state === 'enabled' && md.KeyState === 'Disabled') {
      await this.call(`EnableKey ${arn}`, () => c.send(new EnableKeyCommand({ KeyId: arn })));
    }
  }

  private async destroyChainVersion(
    ref: KeyRef,
    version: string,
    days: number,
  ): Promise<{ destroyAt: string }> {
    const r = this.awsRef(ref);
    const md = await this.chainVersion(await this.getKey(ref), version, 'deleted');
    if (md.KeyState === 'PendingDeletion' && md.DeletionDate)
      return { destroyAt: md.DeletionDate.toISOString() };
    const out = await this.call(`ScheduleKeyDeletion ${md.Arn}`, () =>
      this.client(r.region).send(
        new ScheduleKeyDeletionCommand({ KeyId: md.Arn!, PendingWindowInDays: days }),
      ),
    );
    if (!out.DeletionDate)
      throw new ProviderError(this.id, 'MalformedResponse', `ScheduleKeyDeletion ${md.Arn}: no DeletionDate`);
    return { destroyAt: out.DeletionDate.toISOString() };
  }

  private requireVersion(key: ManagedKey, version: string): void {
    if (!key.versions.some((v) => v.id === version)) {
      throw new NotFoundError(`${this.id}: key ${key.ref} has no key material ${version}`);
    }
  }

  private checkWindow(ref: KeyRef, days: number): void {
    if (!Number.isInteger(days) || days < DELETION_WINDOW.min || days > DELETION_WINDOW.max) {
      throw new ValidationError(
        `key ${ref.uri}: AWS KMS deletion waiting periods are ${DELETION_WINDOW.min}-${DELETION_WINDOW.max} days (got ${days})`,
      );
    }
  }

  /** DisableKey: every material of the key stops working. */
  async disableKey(ref: KeyRef): Promise<void> {
    const r = this.awsRef(ref);
    const arn = this.keyArn(r);
    await this.call(`DisableKey ${arn}`, () =>
      this.client(r.region).send(new DisableKeyCommand({ KeyId: arn })),
    );
  }

  async enableKey(ref: KeyRef): Promise<void> {
    const r = this.awsRef(ref);
    const arn = this.keyArn(r);
    await this.call(`EnableKey ${arn}`, () =>
      this.client(r.region).send(new EnableKeyCommand({ KeyId: arn })),
    );
  }

  /** ScheduleKeyDeletion of the whole key, 7-30 days out. */
  async scheduleKeyDeletion(ref: KeyRef, days: number): Promise<{ destroyAt: string }> {
    this.checkWindow(ref, days);
    const r = this.awsRef(ref);
    const arn = this.keyArn(r);
    const out = await this.call(`ScheduleKeyDeletion ${arn}`, () =>
      this.client(r.region).send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: days })),
    );
    if (!out.DeletionDate)
      throw new ProviderError(this.id, 'MalformedResponse', `ScheduleKeyDeletion ${arn}: no DeletionDate`);
    return { destroyAt: out.DeletionDate.toISOString() };
  }

  /** CancelKeyDeletion: the key comes back Disabled, as AWS leaves it. */
  async cancelKeyDeletion(ref: KeyRef): Promise<void> {
    const r = this.awsRef(ref);
    const arn = this.keyArn(r);
    await this.call(`CancelKeyDeletion ${arn}`, () =>
      this.client(r.region).send(new CancelKeyDeletionCommand({ KeyId: arn })),
    );
  }

  // ---- cryptography ----

  async wrap(ref: KeyRef, plaintext: Uint8Array, ctx: WrapContext): Promise<Wrapped> {
    const r = this.awsRef(ref);
    const arn = this.keyArn(r);
    if (plaintext.length < 1 || plaintext.length > MAX_PLAINTEXT) {
      throw new ValidationError(
        `key ${ref.uri}: AWS KMS Encrypt takes 1-${MAX_PLAINTEXT} bytes (got ${plaintext.length})`,
      );
    }
    const c = this.client(r.region);
    if (await this.isChain(r)) {
      // Encrypt through the alias; the response names the key it used, which is the version.
      const out = await this.call(`Encrypt with ${arn}`, () =>
        c.send(new EncryptCommand({ KeyId: arn, Plaintext: plaintext, ...contextOf(ctx) })),
      );
      if (!out.CiphertextBlob || !out.KeyId)
        throw new ProviderError(this.id, 'MalformedResponse', `Encrypt with ${arn}: incomplete response`);
      return { version: out.KeyId, ciphertext: out.CiphertextBlob };
    }
    const before = this.currentMaterial.get(arn) ?? (await this.describe(r.region, arn)).CurrentKeyMaterialId;
    const out = await this.call(`Encrypt with ${arn}`, () =>
      c.send(new EncryptCommand({ KeyId: arn, Plaintext: plaintext, ...contextOf(ctx) })),
    );
    const blob = out.CiphertextBlob;
    if (!blob)
      throw new ProviderError(this.id, 'MalformedResponse', `Encrypt with ${arn}: no CiphertextBlob`);
    // Encrypt does not say which material it used. Materials only ever move forward, so if the
    // current material after the call is the one known before it, that is the one used.
    const after = (await this.describe(r.region, arn)).CurrentKeyMaterialId;
    if (before === after) return { version: after ?? ORIGINAL_VERSION, ciphertext: blob };
    // A rotation happened around the call: ReEncrypt names the material it encrypts under.
    const re = await this.call(`ReEncrypt with ${arn}`, () =>
      c.send(
        new ReEncryptCommand({
          CiphertextBlob: blob,
          SourceKeyId: arn,
          DestinationKeyId: arn,
          ...sourceDest(ctx),
        }),
      ),
    );
    if (!re.CiphertextBlob || !re.DestinationKeyMaterialId) {
      throw new ProviderError(this.id, 'MalformedResponse', `ReEncrypt with ${arn}: incomplete response`);
    }
    return { version: re.DestinationKeyMaterialId, ciphertext: re.CiphertextBlob };
  }

  async unwrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Promise<Uint8Array> {
    const r = this.awsRef(ref);
    const chain = await this.isChain(r);
    // In an alias chain the version is the key that encrypted: decrypt with exactly that key.
    const arn = chain ? this.versionKey(r, wrapped.version) : this.keyArn(r);
    const out = await this.call(`Decrypt with ${arn}`, () =>
      this.client(r.region).send(
        new DecryptCommand({ KeyId: arn, CiphertextBlob: wrapped.ciphertext, ...contextOf(ctx) }),
      ),
    );
    const pt = out.Plaintext;
    if (!pt) throw new ProviderError(this.id, 'MalformedResponse', `Decrypt with ${arn}: no Plaintext`);
    const copy = Uint8Array.from(pt);
    pt.fill(0);
    if (chain && out.KeyId !== arn) {
      copy.fill(0);
      throw new IntegrityError(
        `key ${ref.uri}: ciphertext recorded as version ${wrapped.version} decrypted under ${out.KeyId}`,
      );
    }
    if (
      !chain &&
      out.KeyMaterialId &&
      wrapped.version !== ORIGINAL_VERSION &&
      out.KeyMaterialId !== wrapped.version
    ) {
      copy.fill(0);
      throw new IntegrityError(
        `key ${ref.uri}: ciphertext recorded as version ${wrapped.version} decrypted under key material ${out.KeyMaterialId}`,
      );
    }
    return copy;
  }

  /** ReEncrypt inside KMS: the DEK never leaves it. Only the current material can be the target. */
  async rewrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext, toVersion?: string): Promise<Wrapped> {
    const r = this.awsRef(ref);
    if (await this.isChain(r)) return this.rewrapAcrossKeys(r, wrapped, ctx, toVersion);
    const arn = this.keyArn(r);
    // ReEncrypt always encrypts under the current material: no DescribeKey per call (it would
    // double the requests of a bulk re-wrap); the result is checked against toVersion instead.
    const out = await this.call(`ReEncrypt with ${arn}`, () =>
      this.client(r.region).send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped.ciphertext,
          SourceKeyId: arn,
          DestinationKeyId: arn,
          ...sourceDest(ctx),
        }),
      ),
    );
    if (!out.CiphertextBlob || !out.DestinationKeyMaterialId) {
      throw new ProviderError(this.id, 'MalformedResponse', `ReEncrypt with ${arn}: incomplete response`);
    }
    if (
      out.SourceKeyMaterialId &&
      wrapped.version !== ORIGINAL_VERSION &&
      out.SourceKeyMaterialId !== wrapped.version
    ) {
      throw new IntegrityError(
        `key ${ref.uri}: ciphertext recorded as version ${wrapped.version} was under key material ${out.SourceKeyMaterialId}`,
      );
    }
    this.currentMaterial.set(arn, out.DestinationKeyMaterialId);
    if (toVersion !== undefined && out.DestinationKeyMaterialId !== toVersion) {
      throw unsupported(
        this.id,
        `key ${ref.uri}: AWS KMS encrypts only under the current key material (${out.DestinationKeyMaterialId}), not ${toVersion}`,
      );
    }
    return { version: out.DestinationKeyMaterialId, ciphertext: out.CiphertextBlob };
  }

  /**
   * ReEncrypt from the key that encrypted (the version) to the target version's key, or to
   * whatever the alias points to now: the DEK stays inside KMS.
   */
  private async rewrapAcrossKeys(
    r: AwsKmsRef,
    wrapped: Wrapped,
    ctx: WrapContext,
    toVersion?: string,
  ): Promise<Wrapped> {
    const source = this.versionKey(r, wrapped.version);
    const dest = toVersion === undefined ? this.keyArn(r) : this.versionKey(r, toVersion);
    const out = await this.call(`ReEncrypt from ${source} to ${dest}`, () =>
      this.client(r.region).send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped.ciphertext,
          SourceKeyId: source,
          DestinationKeyId: dest,
          ...sourceDest(ctx),
        }),
      ),
    );
    if (!out.CiphertextBlob || !out.KeyId) {
      throw new ProviderError(this.id, 'MalformedResponse', `ReEncrypt from ${source}: incomplete response`);
    }
    if (out.SourceKeyId && out.SourceKeyId !== source) {
      throw new IntegrityError(
        `key ${r.uri}: ciphertext recorded as version ${wrapped.version} was under ${out.SourceKeyId}`,
      );
    }
    return { version: out.KeyId, ciphertext: out.CiphertextBlob };
  }

  /** A version of an alias chain is a key ARN in the alias's account and Region. */
  private versionKey(r: AwsKmsRef, version: string): string {
    const k = parseKeyArn(version);
    if (!k || k.region !== r.region || k.account !== r.account) {
      throw new ValidationError(
        `key ${r.uri}: version "${version}" is not a key ARN in ${r.region} of account ${r.account}, as versions of an alias chain are`,
      );
    }
    return version;
  }

  async lastUsed(ref: KeyRef): Promise<string | null> {
    const r = this.awsRef(ref);
    // GetKeyLastUsage takes a key id or key ARN, not an alias.
    const arn = r.resource.startsWith('alias/')
      ? (await this.describe(r.region, this.keyArn(r))).Arn!
      : this.keyArn(r);
    const out = await this.call(`GetKeyLastUsage ${arn}`, () =>
      this.client(r.region).send(new GetKeyLastUsageCommand({ KeyId: arn })),
    );
    return out.KeyLastUsage?.Timestamp ? out.KeyLastUsage.Timestamp.toISOString() : null;
  }

  // ---- disaster recovery ----

  /** Multi-Region replicas are the copies AWS keeps; a single-Region key has none. */
  async recovery(ref: KeyRef): Promise<RecoveryInfo> {
    const r = this.awsRef(ref);
    const md = await this.describeRef(r);
    const mr = md.MultiRegionConfiguration;
    const regionOf = (arn: string | undefined) => (arn ? arn.split(':')[3] : undefined);
    const others = new Set<string>();
    if (md.MultiRegion && mr) {
      for (const k of [mr.PrimaryKey, ...(mr.ReplicaKeys ?? [])]) {
        const region = k?.Region ?? regionOf(k?.Arn);
        if (region && region !== r.region) others.add(region);
      }
    }
    const notes: string[] = [];
    if (md.Origin === 'EXTERNAL') {
      notes.push(
        'imported key material: AWS cannot export it, keep the original in your HSM to re-import after loss',
      );
    }
    if (md.MultiRegion && others.size === 0) notes.push('multi-Region key without replicas yet');
    return {
      locations: [r.region],
      copies: [...others].sort().map((region) => ({
        kind: 'replica' as const,
        location: region,
        detail: `multi-Region ${region === regionOf(mr?.PrimaryKey?.Arn) ? 'primary' : 'replica'} key`,
      })),
      deletionProtection: 'ScheduleKeyDeletion waits 7-30 days before deleting',
      notes,
    };
  }

  // ---- BYOK: importing material (docs/byok.md) ----
  // importMaterial.ts is loaded by the first import: listing, rotating and re-wrapping, what the
  // Lambda functions do, never need it (they run no BYOK rotation, docs/serverless-aws.md).

  async prepareImport(ref: KeyRef, algorithm: ImportWrapAlgorithm): Promise<ImportParameters> {
    const r = this.awsRef(ref);
    if (await this.isChain(r)) {
      throw unsupported(
        this.id,
        `key ${ref.uri} is an alias chain; import into one key, addressed by its key ARN`,
      );
    }
    const md = await this.describeRef(r);
    const { prepareImport } = await import('./importMaterial.js');
    return prepareImport(this.access, r, md, algorithm, this.opts.importWrappingKeySpec ?? 'RSA_4096');
  }

  /**
   * Imports into a key with EXTERNAL origin: its first material, the material it had again
   * (when expiry or deletion left it PendingImport, or with `reimport` to change the expiry),
   * or new material that RotateKeyOnDemand makes the new primary version.
   */
  async importMaterial(
    ref: KeyRef,
    params: ImportParameters,
    wrappedMaterial: Uint8Array,
    opts: { expiresAt?: string; reimport?: boolean },
  ): Promise<KeyVersion> {
    const r = this.awsRef(ref);
    if (await this.isChain(r)) {
      throw unsupported(
        this.id,
        `key ${ref.uri} is an alias chain; import into one key, addressed by its key ARN`,
      );
    }
    const md = await this.describeRef(r);
    const { importMaterial, importedVersion } = await import('./importMaterial.js');
    const { materialId, plan, validTo } = await importMaterial(
      this.access,
      r,
      md,
      params,
      wrappedMaterial,
      opts,
    );
    if (plan.rotate) {
      const v = await this.rotateOnDemand(r.region, md);
      if (v.id !== materialId) {
        throw new IntegrityError(
          `key ${md.Arn}: imported material ${materialId}, but the rotation made ${v.id} current`,
        );
      }
      return v;
    }
    const entry = (await this.materials(r.region, md.Arn!)).find((m) => m.KeyMaterialId === materialId);
    const v = importedVersion(md, materialId, validTo);
    return entry?.RotationDate ? { ...v, createdAt: entry.RotationDate.toISOString() } : v;
  }

  // ---- creation ----

  /** CreateKey plus alias `alias/<name>` in the first configured Region. `createdAt` cannot be backdated in AWS. */
  async createKey(spec: {
    name: string;
    tags?: Record<string, string>;
    algorithm?: ManagedKey['algorithm'];
    createdAt?: string;
  }): Promise<AwsManagedKey> {
    if (!ALIAS_NAME.test(spec.name) || spec.name.startsWith('aws/')) {
      throw new ValidationError(
        `key name "${spec.name}": AWS alias names are 1-250 of a-z, A-Z, 0-9, '/', '_', '-' and not aws/...`,
      );
    }
    const algorithm = spec.algorithm ?? 'AES_256';
    const ks = SPEC_FOR[algorithm];
    if (!ks) throw new ValidationError(`key ${spec.name}: AWS KMS has no ${algorithm} keys`);
    const region = this.opts.regions[0]!;
    const c = this.client(region);
    const created = await this.call(`CreateKey ${spec.name}`, () =>
      c.send(
        new CreateKeyCommand({
          Description: spec.name,
          KeySpec: ks.KeySpec as never,
          KeyUsage: ks.KeyUsage as never,
          Tags: Object.entries(spec.tags ?? {}).map(([TagKey, TagValue]) => ({ TagKey, TagValue })),
        }),
      ),
    );
    const md = created.KeyMetadata!;
    try {
      await c.send(new CreateAliasCommand({ AliasName: `alias/${spec.name}`, TargetKeyId: md.KeyId! }));
    } catch (e) {
      // Do not leave an unnamed key behind; the shortest window AWS allows.
      await c
        .send(new ScheduleKeyDeletionCommand({ KeyId: md.KeyId!, PendingWindowInDays: DELETION_WINDOW.min }))
        .catch(() => {});
      const err = toRekeyError(this.id, e, `CreateAlias alias/${spec.name}`);
      if (err instanceof ProviderError && err.providerCode === 'AlreadyExistsException') {
        throw new ConflictError(
          `${this.id}: a key named ${spec.name} (alias/${spec.name}) already exists in ${region}`,
          { cause: err },
        );
      }
      throw err;
    }
    // Through the alias: keys AWS cannot rotate come back as the alias chain they start.
    return this.getKey(parseKeyRef(`aws-kms://${this.aliasArn(md.Arn!, `alias/${spec.name}`)}`));
  }

  async close(): Promise<void> {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }
}

function isAlias(r: AwsKmsRef): boolean {
  return r.resource.startsWith('alias/');
}

function contextOf(ctx: WrapContext): { EncryptionContext?: Record<string, string> } {
  return Object.keys(ctx).length > 0 ? { EncryptionContext: { ...ctx } } : {};
}

function sourceDest(ctx: WrapContext) {
  return Object.keys(ctx).length > 0
    ? { SourceEncryptionContext: { ...ctx }, DestinationEncryptionContext: { ...ctx } }
    : {};
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
