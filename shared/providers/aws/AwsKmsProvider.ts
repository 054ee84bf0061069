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
} from '@aws-sdk/client-kms';
import type { Algorithm, KeyVersion, ManagedKey, Protection } from '../../core/domain/key.js';
import { type AwsKmsRef, type KeyRef, parseKeyRef } from '../../core/domain/keyRef.js';
import {
  ConflictError,
  IntegrityError,
  NotFoundError,
  ProviderError,
  ValidationError,
} from '../../core/errors.js';
import type {
  KeyCreator,
  KeyProvider,
  ListScope,
  Page,
  ProviderCapabilities,
  RecoveryInfo,
  WrapContext,
  Wrapped,
} from '../../core/ports/KeyProvider.js';
import { toRekeyError, unsupported } from './errors.js';

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

const CAPABILITIES: ProviderCapabilities = {
  autoRotation: AUTO_ROTATION,
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: DELETION_WINDOW,
  lastUsed: true,
  maxOnDemandRotations: MAX_ON_DEMAND_ROTATIONS,
  // Key material cannot be disabled or deleted on its own: AWS acts on whole keys.
  versionControl: { disable: false, destroy: false },
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

  constructor(opts: AwsKmsProviderOptions) {
    if (!opts.id) throw new ValidationError('aws-kms provider: id is required');
    if (!Array.isArray(opts.regions) || opts.regions.length === 0) {
      throw new ValidationError(`aws-kms provider ${opts.id}: regions must list at least one Region`);
    }
    for (const r of opts.regions) {
      if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(r))
        throw new ValidationError(`aws-kms provider ${opts.id}: "${r}" is not a Region`);
    }
    this.id = opts.id;
    this.opts = opts;
  }

  capabilities(): ProviderCapabilities {
    return { ...CAPABILITIES, autoRotation: { ...AUTO_ROTATION }, destroyDelayDays: { ...DELETION_WINDOW } };
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
    return ref;
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
        // Keys on their way out, or without usable material, have nothing rekey can act on.
        if (md.KeyState === 'PendingDeletion' || md.KeyState === 'PendingReplicaDeletion') return null;
        if (md.KeyState === 'PendingImport' || !ALGORITHMS[md.KeySpec ?? '']) return null;
        return await this.build(region, md);
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

  async getKey(ref: KeyRef): Promise<AwsManagedKey> {
    const r = this.awsRef(ref);
    const md = await this.describe(r.region, this.keyArn(r));
    if (!ALGORITHMS[md.KeySpec ?? '']) {
      throw new ProviderError(
        this.id,
        'UnsupportedKeySpec',
        `key ${md.Arn} has key spec ${md.KeySpec}, which rekey does not model`,
      );
    }
    return this.build(r.region, md);
  }

  /** Builds the neutral key model from DescribeKey plus aliases, tags, rotation status and materials. */
  private async build(region: string, md: KeyMetadata): Promise<AwsManagedKey> {
    const c = this.client(region);
    const arn = md.Arn!;
    const rotatable = md.KeySpec === 'SYMMETRIC_DEFAULT' && md.Origin === 'AWS_KMS';
    const [aliases, tags, status, rotations] = await Promise.all([
      this.paged(`ListAliases ${arn}`, async (Marker) => {
        const o = await c.send(new ListAliasesCommand({ KeyId: md.KeyId, Limit: 100, Marker }));
        return {
          items: (o.Aliases ?? []).map((a) => a.AliasName ?? '').filter(Boolean),
          next: o.Truncated ? o.NextMarker : undefined,
        };
      }),
      this.paged(`ListResourceTags ${arn}`, async (Marker) => {
        const o = await c.send(new ListResourceTagsCommand({ KeyId: arn, Limit: 50, Marker }));
        return { items: o.Tags ?? [], next: o.Truncated ? o.NextMarker : undefined };
      }),
      rotatable
        ? this.call(`GetKeyRotationStatus ${arn}`, () =>
            c.send(new GetKeyRotationStatusCommand({ KeyId: arn })),
          )
        : Promise.resolve<GetKeyRotationStatusResponse>({ KeyRotationEnabled: false }),
      rotatable ? this.materials(region, arn) : Promise.resolve<RotationsListEntry[]>([]),
    ]);
    const created = (md.CreationDate ?? new Date(0)).toISOString();
    let versions: KeyVersion[];
    let primary: string;
    if (rotations.length > 0) {
      versions = rotations.map((m) => ({
        id: m.KeyMaterialId!,
        state: 'enabled',
        createdAt: m.RotationDate ? m.RotationDate.toISOString() : created,
      }));
      primary =
        rotations.find((m) => m.KeyMaterialState === 'CURRENT')?.KeyMaterialId ??
        md.CurrentKeyMaterialId ??
        versions[versions.length - 1]!.id;
    } else {
      primary = md.CurrentKeyMaterialId ?? ORIGINAL_VERSION;
      versions = [{ id: primary, state: 'enabled', createdAt: created }];
    }
    // Key state is per key in AWS. A disabled key reports enabled=false with its versions
    // unchanged, so the one-enabled-primary invariant holds; a key pending deletion shows
    // every version destroy_scheduled (listKeys leaves such keys out).
    if (md.KeyState === 'PendingDeletion' && md.DeletionDate) {
      const destroyAt = md.DeletionDate.toISOString();
      versions = versions.map((v) => ({ ...v, state: 'destroy_scheduled', destroyAt }));
    }
    const tagMap: Record<string, string> = {};
    for (const t of tags) if (t.TagKey) tagMap[t.TagKey] = t.TagValue ?? '';
    const onDemand = rotations.filter((m) => m.RotationType === 'ON_DEMAND').length;
    const key: AwsManagedKey = {
      ref: `aws-kms://${arn}`,
      providerType: 'aws-kms',
      providerId: this.id,
      name: aliases[0]?.replace(/^alias\//, '') ?? md.KeyId!,
      tags: tagMap,
      protection: PROTECTION[md.Origin ?? 'AWS_KMS'] ?? 'hsm',
      algorithm: ALGORITHMS[md.KeySpec ?? 'SYMMETRIC_DEFAULT'] ?? 'AES_256',
      enabled: md.KeyState === 'Enabled',
      primaryVersion: primary,
      versions,
      createdAt: created,
      aws: {
        keyId: md.KeyId!,
        arn,
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
      },
    };
    if (status.KeyRotationEnabled && status.RotationPeriodInDays) {
      key.autoRotation = {
        periodDays: status.RotationPeriodInDays,
        ...(status.NextRotationDate ? { nextRotationAt: status.NextRotationDate.toISOString() } : {}),
      };
    }
    return key;
  }

  /** Every key material of a key, oldest first. */
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
      .filter((m) => m.KeyMaterialId)
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

  async rotate(ref: KeyRef): Promise<KeyVersion> {
    const r = this.awsRef(ref);
    const arn = this.keyArn(r);
    const before = await this.describe(r.region, arn);
    const beforeId = before.CurrentKeyMaterialId;
    try {
      await this.client(r.region).send(new RotateKeyOnDemandCommand({ KeyId: before.Arn! }));
    } catch (e) {
      const err = toRekeyError(this.id, e, `RotateKeyOnDemand ${before.Arn}`);
      if (err instanceof ProviderError && err.providerCode === 'LimitExceededException') {
        throw new ProviderError(
          this.id,
          err.providerCode,
          `RotateKeyOnDemand ${before.Arn}: the key has used all ${MAX_ON_DEMAND_ROTATIONS} on-demand rotations AWS allows; ` +
            'create a new key or rely on automatic rotation',
          { cause: e },
        );
      }
      throw err;
    }
    // On-demand rotation completes asynchronously in AWS: wait for the new current material.
    const pollMs = this.opts.rotationPollMs ?? 1000;
    const deadline = Date.now() + (this.opts.rotationTimeoutMs ?? 300_000);
    for (;;) {
      const md = await this.describe(r.region, before.Arn!);
      const now = md.CurrentKeyMaterialId;
      if (now && now !== beforeId) {
        const entry = (await this.materials(r.region, md.Arn!)).find((m) => m.KeyMaterialId === now);
        return {
          id: now,
          state: 'enabled',
          createdAt: (entry?.RotationDate ?? new Date()).toISOString(),
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

  async setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void> {
    const r = this.awsRef(ref);
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
   * single material. Anything else is refused with 'UnsupportedOperation'.
   */
  async setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void> {
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
    const arn = this.keyArn(r);
    const out = await this.call(`Decrypt with ${arn}`, () =>
      this.client(r.region).send(
        new DecryptCommand({ KeyId: arn, CiphertextBlob: wrapped.ciphertext, ...contextOf(ctx) }),
      ),
    );
    const pt = out.Plaintext;
    if (!pt) throw new ProviderError(this.id, 'MalformedResponse', `Decrypt with ${arn}: no Plaintext`);
    const copy = Uint8Array.from(pt);
    pt.fill(0);
    if (out.KeyMaterialId && wrapped.version !== ORIGINAL_VERSION && out.KeyMaterialId !== wrapped.version) {
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
    const md = await this.describe(r.region, this.keyArn(r));
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
    return this.getKey(parseKeyRef(`aws-kms://${md.Arn}`));
  }

  async close(): Promise<void> {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }
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
