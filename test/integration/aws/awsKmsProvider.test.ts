/**
 * AwsKmsProvider beyond the shared contract: the AWS-specific inventory, the version model,
 * the per-key state mapping and error translation, against the emulator.
 */
import { randomBytes } from 'node:crypto';
import { CreateAliasCommand, CreateKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { NotFoundError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { AwsKmsProvider, type AwsManagedKey } from '../../../shared/providers/aws/AwsKmsProvider.js';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { CREDENTIALS, emulator, kmsClient, REGION, rejectionOf } from './helpers.js';

let emu: AwsEmulator;
let provider: AwsKmsProvider;
let kms: KMSClient;

function newProvider(extra: Partial<ConstructorParameters<typeof AwsKmsProvider>[0]> = {}) {
  return new AwsKmsProvider({
    id: 'aws-test',
    regions: [REGION],
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    rotationPollMs: 5,
    ...extra,
  });
}

beforeAll(async () => {
  emu = await emulator();
  provider = newProvider();
  kms = kmsClient(emu);
});
afterAll(async () => {
  await provider.close();
  kms.destroy();
  await emu.close();
});
beforeEach(() => {
  emu.reset();
  emu.clock.freeze();
  emu.clock.set('2026-03-01T00:00:00Z');
});

const refOf = (k: { ref: string }): KeyRef => parseKeyRef(k.ref);
const ctx = { tenant: 't1' };

async function listAll(p: AwsKmsProvider, pageSize?: number) {
  const out: AwsManagedKey[] = [];
  let cursor: string | null = null;
  do {
    const page = await p.listKeys({ pageSize }, cursor);
    out.push(...(page.items as AwsManagedKey[]));
    cursor = page.cursor;
  } while (cursor !== null);
  return out;
}

describe('inventory', () => {
  it('lists customer managed keys with tags, aliases, spec, origin, multi-Region and rotation status', async () => {
    emu.kms.createAwsManagedKey(REGION, 's3');
    const created = await provider.createKey({ name: 'orders', tags: { 'data-class': 'pci' } });
    const mrk = (await kms.send(new CreateKeyCommand({ MultiRegion: true }))).KeyMetadata!;
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/global', TargetKeyId: mrk.KeyId }));
    const hmac = await provider.createKey({ name: 'macs', algorithm: 'HMAC_256' });
    await provider.setAutoRotation(refOf(created), 180);

    const keys = await listAll(provider, 1);
    expect(keys.map((k) => k.name).sort()).toEqual(['global', 'macs', 'orders']);
    const orders = keys.find((k) => k.name === 'orders')!;
    expect(orders).toMatchObject({
      providerId: 'aws-test',
      providerType: 'aws-kms',
      tags: { 'data-class': 'pci' },
      protection: 'hsm',
      algorithm: 'AES_256',
      enabled: true,
      autoRotation: { periodDays: 180, nextRotationAt: '2026-08-28T00:00:00.000Z' },
    });
    expect(orders.aws).toMatchObject({
      aliases: ['alias/orders'],
      keySpec: 'SYMMETRIC_DEFAULT',
      origin: 'AWS_KMS',
      multiRegion: false,
      rotationEnabled: true,
      onDemandRotations: 0,
    });
    expect(orders.versions).toEqual([
      { id: orders.primaryVersion, state: 'enabled', createdAt: orders.createdAt },
    ]);
    expect(keys.find((k) => k.name === 'global')!.aws.multiRegion).toBe(true);
    const macs = keys.find((k) => k.name === 'macs')!;
    // HMAC keys cannot rotate in AWS: behind an alias they are an alias chain, versions = key ARNs.
    expect(macs).toMatchObject({
      algorithm: 'HMAC_256',
      ref: `aws-kms://arn:aws:kms:${REGION}:${emu.account}:alias/macs`,
      primaryVersion: hmac.aws.arn,
      versions: [{ id: hmac.aws.arn, state: 'enabled' }],
    });
    expect(macs.aws.aliasManaged).toEqual({ alias: 'alias/macs' });
    expect(macs.aws.keySpec).toBe(hmac.aws.keySpec);
  });

  it('lists every configured Region, each key once, under its own Region', async () => {
    const two = newProvider({ regions: [REGION, 'us-east-2'] });
    const east = new AwsKmsProvider({
      id: 'aws-test',
      regions: ['us-east-2'],
      endpoint: emu.endpoint,
      credentials: CREDENTIALS,
      maxAttempts: 1,
    });
    await provider.createKey({ name: 'in-eu' });
    await east.createKey({ name: 'in-us' });
    const keys = await listAll(two);
    expect(keys.map((k) => [k.name, k.aws.region])).toEqual([
      ['in-eu', REGION],
      ['in-us', 'us-east-2'],
    ]);
    expect(refOf(keys[1]!)).toMatchObject({ region: 'us-east-2' });
    await expect(two.listKeys({}, 'bm90LWEtY3Vyc29y')).rejects.toBeInstanceOf(ValidationError);
    await two.close();
    await east.close();
  });

  it('filters by name prefix and leaves keys pending deletion out', async () => {
    await provider.createKey({ name: 'team-a-1' });
    await provider.createKey({ name: 'team-b-1' });
    const gone = await provider.createKey({ name: 'team-a-2' });
    await provider.scheduleKeyDeletion(refOf(gone), 7);
    const page = await provider.listKeys({ namePrefix: 'team-a' }, null);
    expect(page.items.map((k) => k.name)).toEqual(['team-a-1']);
    // getKey still shows it, with the deletion date on every version.
    const k = await provider.getKey(refOf(gone));
    expect(k.enabled).toBe(false);
    expect(k.aws.keyState).toBe('PendingDeletion');
    expect(k.versions.map((v) => [v.state, v.destroyAt])).toEqual([
      ['destroy_scheduled', '2026-03-08T00:00:00.000Z'],
    ]);
  });

  it('resolves alias refs to the key', async () => {
    const k = await provider.createKey({ name: 'by-alias' });
    const viaAlias = await provider.getKey(
      parseKeyRef(`aws-kms://arn:aws:kms:${REGION}:${emu.account}:alias/by-alias`),
    );
    expect(viaAlias.ref).toBe(k.ref);
    const { version } = await provider.wrap(
      parseKeyRef(`aws-kms://arn:aws:kms:${REGION}:${emu.account}:alias/by-alias`),
      randomBytes(32),
      ctx,
    );
    expect(version).toBe(k.primaryVersion);
  });
});

describe('versions are key materials', () => {
  it('rotate returns the new KeyMaterialId; versions are ordered with their rotation dates', async () => {
    const k = await provider.createKey({ name: 'rot' });
    emu.clock.advance(3_600_000);
    const v2 = await provider.rotate(refOf(k));
    expect(v2).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{64}$/),
      state: 'enabled',
      createdAt: '2026-03-01T01:00:00.000Z',
    });
    await provider.setAutoRotation(refOf(k), 90);
    emu.clock.advanceDays(91);
    const after = await provider.getKey(refOf(k));
    expect(after.versions.map((v) => v.id).slice(0, 2)).toEqual([k.primaryVersion, v2.id]);
    expect(after.versions).toHaveLength(3);
    expect(after.primaryVersion).toBe(after.versions[2]!.id);
    expect(after.aws.onDemandRotations).toBe(1);
  });

  it('rotate waits for an asynchronous on-demand rotation to land', async () => {
    const slow = await emulator({ onDemandRotationMs: 150 });
    const p = new AwsKmsProvider({
      id: 'aws-slow',
      regions: [REGION],
      endpoint: slow.endpoint,
      credentials: CREDENTIALS,
      maxAttempts: 1,
      rotationPollMs: 20,
    });
    try {
      const k = await p.createKey({ name: 'slow' });
      const v2 = await p.rotate(refOf(k));
      expect(v2.id).not.toBe(k.primaryVersion);
      expect(slow.requestCounts['kms.DescribeKey']).toBeGreaterThan(2);
      expect((await p.getKey(refOf(k))).primaryVersion).toBe(v2.id);
      // Gave up waiting: not retryable, since rotating again would rotate twice.
      slow.clock.freeze();
      const short = new AwsKmsProvider({
        id: 'aws-slow',
        regions: [REGION],
        endpoint: slow.endpoint,
        credentials: CREDENTIALS,
        maxAttempts: 1,
        rotationPollMs: 5,
        rotationTimeoutMs: 30,
      });
      const e = (await rejectionOf(short.rotate(refOf(k)))) as unknown as ProviderError;
      expect(e).toMatchObject({ providerCode: 'RotationPending', retryable: false });
      await short.close();
    } finally {
      await p.close();
      await slow.close();
    }
  });

  it('wrap learns the version right even when the key rotated since it was last seen', async () => {
    const k = await provider.createKey({ name: 'stale' });
    await provider.wrap(refOf(k), randomBytes(32), ctx); // caches the current material
    // Rotated behind the provider's back (another rekey instance, the console...).
    const other = newProvider();
    const v2 = await other.rotate(refOf(k));
    await other.close();
    const w = await provider.wrap(refOf(k), randomBytes(32), ctx);
    expect(w.version).toBe(v2.id);
    const dek = await provider.unwrap(refOf(k), w, ctx);
    expect(dek).toHaveLength(32);
  });

  it('unwrap refuses a ciphertext recorded under the wrong version (IntegrityError)', async () => {
    const k = await provider.createKey({ name: 'mislabelled' });
    const w = await provider.wrap(refOf(k), randomBytes(32), ctx);
    const v2 = await provider.rotate(refOf(k));
    const e = await rejectionOf(provider.unwrap(refOf(k), { version: v2.id, ciphertext: w.ciphertext }, ctx));
    expect(e.constructor.name).toBe('IntegrityError');
  });

  it('rewrap uses ReEncrypt to the current material only', async () => {
    const k = await provider.createKey({ name: 'rewrap' });
    const dek = randomBytes(32);
    const w = await provider.wrap(refOf(k), dek, ctx);
    const v2 = await provider.rotate(refOf(k));
    const before = emu.requestCounts['kms.Decrypt'] ?? 0;
    const moved = await provider.rewrap(refOf(k), w, ctx, v2.id);
    expect(moved.version).toBe(v2.id);
    expect(emu.requestCounts['kms.ReEncrypt']).toBe(1);
    expect(emu.requestCounts['kms.Decrypt'] ?? 0).toBe(before);
    const e = await rejectionOf(provider.rewrap(refOf(k), w, ctx, k.primaryVersion));
    expect(e).toBeInstanceOf(ProviderError);
    expect((e as unknown as ProviderError).providerCode).toBe('UnsupportedOperation');
    expect(Buffer.from(await provider.unwrap(refOf(k), moved, ctx)).equals(dek)).toBe(true);
  });

  it('tracks the 25 on-demand rotations AWS allows and says so when they are used up', async () => {
    expect(provider.capabilities().maxOnDemandRotations).toBe(25);
    const k = await provider.createKey({ name: 'limit' });
    for (let i = 0; i < 25; i++) await provider.rotate(refOf(k));
    expect((await provider.getKey(refOf(k))).aws.onDemandRotations).toBe(25);
    const e = (await rejectionOf(provider.rotate(refOf(k)))) as unknown as ProviderError;
    expect(e).toBeInstanceOf(ProviderError);
    expect(e.providerCode).toBe('LimitExceededException');
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/25 on-demand rotations/);
  });

  it('reports lastUsed from GetKeyLastUsage', async () => {
    const k = await provider.createKey({ name: 'used' });
    expect(await provider.lastUsed(refOf(k))).toBeNull();
    emu.clock.advance(5_000);
    await provider.wrap(refOf(k), randomBytes(16), ctx);
    expect(await provider.lastUsed(refOf(k))).toBe('2026-03-01T00:00:05.000Z');
  });
});

describe('state is per key in AWS', () => {
  it('refuses to disable or destroy one material of a rotated key (UnsupportedOperation)', async () => {
    const k = await provider.createKey({ name: 'multi' });
    await provider.rotate(refOf(k));
    for (const p of [
      provider.setVersionState(refOf(k), k.primaryVersion, 'disabled'),
      provider.scheduleDestroy(refOf(k), k.primaryVersion, 30),
    ]) {
      const e = (await rejectionOf(p)) as unknown as ProviderError;
      expect(e).toBeInstanceOf(ProviderError);
      expect(e.providerCode).toBe('UnsupportedOperation');
      expect(e.retryable).toBe(false);
    }
    expect((await provider.getKey(refOf(k))).aws.keyState).toBe('Enabled');
    // Enabling a material of an enabled key asks for nothing new.
    await provider.setVersionState(refOf(k), k.primaryVersion, 'enabled');
  });

  it('maps a single-material key onto DisableKey/EnableKey and ScheduleKeyDeletion', async () => {
    const k = await provider.createKey({ name: 'single' });
    await provider.setVersionState(refOf(k), k.primaryVersion, 'disabled');
    const disabled = await provider.getKey(refOf(k));
    expect(disabled.enabled).toBe(false);
    expect(disabled.aws.keyState).toBe('Disabled');
    await provider.setVersionState(refOf(k), k.primaryVersion, 'enabled');
    expect((await provider.getKey(refOf(k))).enabled).toBe(true);
    await expect(provider.scheduleDestroy(refOf(k), k.primaryVersion, 6)).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(provider.scheduleDestroy(refOf(k), 'f'.repeat(64), 7)).rejects.toBeInstanceOf(NotFoundError);
    const { destroyAt } = await provider.scheduleDestroy(refOf(k), k.primaryVersion, 7);
    expect(destroyAt).toBe('2026-03-08T00:00:00.000Z');
    await provider.cancelKeyDeletion(refOf(k));
    expect((await provider.getKey(refOf(k))).aws.keyState).toBe('Disabled');
  });

  it('validates auto-rotation periods before calling AWS', async () => {
    const k = await provider.createKey({ name: 'period' });
    const calls = emu.requestCounts['kms.EnableKeyRotation'] ?? 0;
    for (const days of [89, 2561, 90.5]) {
      await expect(provider.setAutoRotation(refOf(k), days)).rejects.toBeInstanceOf(ValidationError);
    }
    expect(emu.requestCounts['kms.EnableKeyRotation'] ?? 0).toBe(calls);
  });
});

describe('error translation', () => {
  it('NotFoundException -> NotFoundError whose cause is a non-retryable ProviderError', async () => {
    const missing = parseKeyRef(
      `aws-kms://arn:aws:kms:${REGION}:${emu.account}:key/${globalThis.crypto.randomUUID()}`,
    );
    const e = await rejectionOf(provider.getKey(missing));
    expect(e).toBeInstanceOf(NotFoundError);
    const cause = (e as Error).cause as ProviderError;
    expect(cause).toBeInstanceOf(ProviderError);
    expect(cause).toMatchObject({
      provider: 'aws-test',
      providerCode: 'NotFoundException',
      retryable: false,
    });
  });

  it('DisabledException and InvalidCiphertextException are permanent', async () => {
    const k = await provider.createKey({ name: 'perm' });
    const w = await provider.wrap(refOf(k), randomBytes(32), ctx);
    const bad = (await rejectionOf(
      provider.unwrap(refOf(k), w, { tenant: 't2' }),
    )) as unknown as ProviderError;
    expect(bad).toMatchObject({
      providerCode: 'InvalidCiphertextException',
      retryable: false,
      throttled: false,
    });
    await provider.disableKey(refOf(k));
    const dis = (await rejectionOf(
      provider.wrap(refOf(k), randomBytes(32), ctx),
    )) as unknown as ProviderError;
    expect(dis).toMatchObject({ providerCode: 'DisabledException', retryable: false, throttled: false });
  });

  it('throttling is retryable and flagged; 5xx is retryable', async () => {
    const k = await provider.createKey({ name: 'flaky' });
    emu.faults.failNext('Encrypt', 'ThrottlingException', 1);
    const t = (await rejectionOf(provider.wrap(refOf(k), randomBytes(32), ctx))) as unknown as ProviderError;
    expect(t).toMatchObject({ providerCode: 'ThrottlingException', retryable: true, throttled: true });
    emu.faults.failNext('Encrypt', 'KMSInternalException', 1, 500);
    const s = (await rejectionOf(provider.wrap(refOf(k), randomBytes(32), ctx))) as unknown as ProviderError;
    expect(s).toMatchObject({ providerCode: 'KMSInternalException', retryable: true, throttled: false });
  });

  it('a network failure is retryable', async () => {
    const dead = await emulator();
    const endpoint = dead.endpoint;
    await dead.close();
    const p = new AwsKmsProvider({
      id: 'aws-dead',
      regions: [REGION],
      endpoint,
      credentials: CREDENTIALS,
      maxAttempts: 1,
    });
    const e = (await rejectionOf(p.listKeys({}, null))) as unknown as ProviderError;
    expect(e).toBeInstanceOf(ProviderError);
    expect(e.retryable).toBe(true);
    expect(e.throttled).toBe(false);
    await p.close();
  });

  it('refuses refs of other providers and bad names without calling AWS', async () => {
    await expect(provider.getKey(parseKeyRef('local://abc'))).rejects.toBeInstanceOf(ValidationError);
    await expect(provider.createKey({ name: 'aws/reserved' })).rejects.toBeInstanceOf(ValidationError);
    await expect(provider.createKey({ name: 'aes128', algorithm: 'AES_128' })).rejects.toBeInstanceOf(
      ValidationError,
    );
    expect(emu.requestCounts['kms.CreateKey']).toBeUndefined();
  });

  it('a duplicate name is a ConflictError and leaves no unnamed key behind', async () => {
    await provider.createKey({ name: 'dup' });
    const e = await rejectionOf(provider.createKey({ name: 'dup' }));
    expect(e.constructor.name).toBe('ConflictError');
    const states = emu.kms.keys(REGION).map((k) => k.state);
    expect(states.sort()).toEqual(['Enabled', 'PendingDeletion']);
  });
});
