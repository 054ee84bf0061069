/**
 * The KMS emulator through the unmodified AWS SDK: request/response shapes, every error type
 * rekey relies on, pagination, rotation on the simulated clock and the deletion window.
 */
import { randomBytes } from 'node:crypto';
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DeleteAliasCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateDataKeyWithoutPlaintextCommand,
  GetKeyLastUsageCommand,
  GetKeyRotationStatusCommand,
  type KMSClient,
  ListAliasesCommand,
  ListKeyRotationsCommand,
  ListKeysCommand,
  ListResourceTagsCommand,
  ReEncryptCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateAliasCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { emulator, kmsClient, REGION, rejectionOf } from './helpers.js';

const DAY = 86_400_000;

let emu: AwsEmulator;
let kms: KMSClient;

beforeAll(async () => {
  emu = await emulator({ startTime: '2026-01-01T00:00:00Z' });
  kms = kmsClient(emu);
});
afterAll(async () => {
  kms.destroy();
  await emu.close();
});
beforeEach(() => {
  emu.reset();
  // Frozen simulated time: dates in responses are exact, and only the test moves them.
  emu.clock.freeze();
  emu.clock.set('2026-01-01T00:00:00Z');
});

async function newKey(input: ConstructorParameters<typeof CreateKeyCommand>[0] = {}) {
  const out = await kms.send(new CreateKeyCommand(input));
  return out.KeyMetadata!;
}

async function expectError(p: Promise<unknown>, name: string): Promise<Error> {
  const e = await rejectionOf(p);
  expect(e.name, e.message).toBe(name);
  expect(e.$metadata?.httpStatusCode).toBe(name === 'KMSInternalException' ? 500 : 400);
  return e;
}

describe('wire protocol', () => {
  async function raw(headers: Record<string, string>, body = '{}') {
    const res = await fetch(emu.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'TrentService.ListKeys',
        ...headers,
      },
      body,
    });
    return { status: res.status, body: (await res.json()) as { __type: string; message: string } };
  }
  const signed = {
    'x-amz-date': '20260101T000000Z',
    authorization:
      'AWS4-HMAC-SHA256 Credential=AKIAEMULATOR/20260101/eu-west-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=' +
      'a'.repeat(64),
  };

  it('refuses a request without a SigV4 Authorization header', async () => {
    const r = await raw({});
    expect(r.status).toBe(400);
    expect(r.body.__type).toBe('MissingAuthenticationTokenException');
  });

  it('refuses a malformed signature', async () => {
    const r = await raw({
      'x-amz-date': '20260101T000000Z',
      authorization: 'AWS4-HMAC-SHA256 Credential=oops',
    });
    expect(r.status).toBe(400);
    expect(r.body.__type).toBe('IncompleteSignatureException');
  });

  it('answers a well-formed request, and refuses bad JSON and unknown operations', async () => {
    const ok = await raw(signed);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ Keys: [], Truncated: false });
    expect((await raw(signed, '{not json')).body.__type).toBe('SerializationException');
    expect((await raw({ ...signed, 'x-amz-target': 'TrentService.NoSuchThing' })).body.__type).toBe(
      'UnknownOperationException',
    );
  });

  it('has a control API outside the AWS protocol: health, clock, reset', async () => {
    const control = async (path: string, body?: unknown) => {
      const res = await fetch(`${emu.endpoint}/_emulator/${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect((await control('health')).body).toMatchObject({ ok: true, account: emu.account });
    expect((await control('clock', { advanceDays: 10 })).body.now).toBe('2026-01-11T00:00:00.000Z');
    expect((await control('clock', { set: '2027-02-03T04:05:06Z' })).body.now).toBe(
      '2027-02-03T04:05:06.000Z',
    );
    expect(emu.clock.now().toISOString()).toBe('2027-02-03T04:05:06.000Z');
    await newKey();
    expect((await control('reset', {})).status).toBe(200);
    expect((await kms.send(new ListKeysCommand({}))).Keys).toEqual([]);
    expect((await control('nothing-here')).status).toBe(404);
  });

  it('keeps keys per Region (the Region of the credential scope)', async () => {
    await newKey();
    const other = kmsClient(emu, { region: 'us-west-2' });
    expect((await other.send(new ListKeysCommand({}))).Keys).toEqual([]);
    expect((await kms.send(new ListKeysCommand({}))).Keys).toHaveLength(1);
    other.destroy();
  });
});

describe('keys and aliases', () => {
  it('describes a key by id, ARN, alias name and alias ARN', async () => {
    const md = await newKey({ Description: 'orders', Tags: [{ TagKey: 'team', TagValue: 'pay' }] });
    expect(md.Arn).toBe(`arn:aws:kms:${REGION}:${emu.account}:key/${md.KeyId}`);
    expect(md).toMatchObject({
      KeyState: 'Enabled',
      Enabled: true,
      KeySpec: 'SYMMETRIC_DEFAULT',
      KeyUsage: 'ENCRYPT_DECRYPT',
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      MultiRegion: false,
      EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    });
    expect(md.CreationDate?.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(md.CurrentKeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/orders', TargetKeyId: md.KeyId }));
    for (const id of [
      md.KeyId!,
      md.Arn!,
      'alias/orders',
      `arn:aws:kms:${REGION}:${emu.account}:alias/orders`,
    ]) {
      const out = await kms.send(new DescribeKeyCommand({ KeyId: id }));
      expect(out.KeyMetadata?.KeyId, id).toBe(md.KeyId);
    }
  });

  it('creates RSA, HMAC, multi-Region and imported-material keys with the right metadata', async () => {
    const rsa = await newKey({ KeySpec: 'RSA_3072', KeyUsage: 'SIGN_VERIFY' });
    expect(rsa.SigningAlgorithms?.length).toBeGreaterThan(0);
    expect(rsa.CurrentKeyMaterialId).toBeUndefined();
    const hmac = await newKey({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' });
    expect(hmac.MacAlgorithms).toEqual(['HMAC_SHA_256']);
    const mrk = await newKey({ MultiRegion: true });
    expect(mrk.KeyId).toMatch(/^mrk-[0-9a-f]{32}$/);
    expect(mrk.MultiRegionConfiguration?.MultiRegionKeyType).toBe('PRIMARY');
    const ext = await newKey({ Origin: 'EXTERNAL' });
    expect(ext.KeyState).toBe('PendingImport');
    await expectError(
      kms.send(new EncryptCommand({ KeyId: ext.KeyId, Plaintext: randomBytes(16) })),
      'KMSInvalidStateException',
    );
    // HMAC keys must say GENERATE_VERIFY_MAC; the default usage does not fit.
    await expectError(newKey({ KeySpec: 'HMAC_256' }), 'ValidationException');
  });

  it('reports NotFoundException, InvalidArnException and ValidationException for bad key ids', async () => {
    await expectError(
      kms.send(new DescribeKeyCommand({ KeyId: globalThis.crypto.randomUUID() })),
      'NotFoundException',
    );
    await expectError(kms.send(new DescribeKeyCommand({ KeyId: 'alias/none' })), 'NotFoundException');
    await expectError(
      kms.send(new DescribeKeyCommand({ KeyId: 'arn:aws:kms:nowhere' })),
      'InvalidArnException',
    );
    await expectError(kms.send(new DescribeKeyCommand({ KeyId: '' })), 'ValidationException');
  });

  it('pages ListKeys with Limit and Marker, and refuses a forged marker', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) ids.add((await newKey()).KeyId!);
    const seen: string[] = [];
    let marker: string | undefined;
    const sizes: number[] = [];
    do {
      const out = await kms.send(new ListKeysCommand({ Limit: 3, Marker: marker }));
      sizes.push(out.Keys!.length);
      seen.push(...out.Keys!.map((k) => k.KeyId!));
      expect(out.Truncated).toBe(out.NextMarker !== undefined);
      marker = out.NextMarker;
    } while (marker);
    expect(sizes).toEqual([3, 3, 1]);
    expect(new Set(seen)).toEqual(ids);
    await expectError(kms.send(new ListKeysCommand({ Marker: 'Zm9yZ2Vk' })), 'InvalidMarkerException');
    await expectError(kms.send(new ListKeysCommand({ Limit: 0 })), 'ValidationException');
  });

  it('manages aliases: create, duplicate, invalid and reserved names, update, list, delete', async () => {
    const a = await newKey();
    const b = await newKey();
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/app', TargetKeyId: a.KeyId }));
    await expectError(
      kms.send(new CreateAliasCommand({ AliasName: 'alias/app', TargetKeyId: b.KeyId })),
      'AlreadyExistsException',
    );
    await expectError(
      kms.send(new CreateAliasCommand({ AliasName: 'app', TargetKeyId: b.KeyId })),
      'InvalidAliasNameException',
    );
    await expectError(
      kms.send(new CreateAliasCommand({ AliasName: 'alias/aws/s3', TargetKeyId: b.KeyId })),
      'InvalidAliasNameException',
    );
    await kms.send(new UpdateAliasCommand({ AliasName: 'alias/app', TargetKeyId: b.KeyId }));
    const forB = await kms.send(new ListAliasesCommand({ KeyId: b.KeyId }));
    expect(forB.Aliases?.map((x) => [x.AliasName, x.TargetKeyId])).toEqual([['alias/app', b.KeyId]]);
    for (let i = 0; i < 4; i++)
      await kms.send(new CreateAliasCommand({ AliasName: `alias/p${i}`, TargetKeyId: a.KeyId }));
    const first = await kms.send(new ListAliasesCommand({ Limit: 3 }));
    expect(first.Truncated).toBe(true);
    const rest = await kms.send(new ListAliasesCommand({ Limit: 3, Marker: first.NextMarker }));
    expect([...first.Aliases!, ...rest.Aliases!].map((x) => x.AliasName)).toHaveLength(5);
    await kms.send(new DeleteAliasCommand({ AliasName: 'alias/app' }));
    await expectError(kms.send(new DeleteAliasCommand({ AliasName: 'alias/app' })), 'NotFoundException');
  });

  it('tags and untags, pages tags, and refuses reserved tag keys', async () => {
    const k = await newKey();
    await kms.send(
      new TagResourceCommand({
        KeyId: k.KeyId,
        Tags: Array.from({ length: 5 }, (_, i) => ({ TagKey: `t${i}`, TagValue: `v${i}` })),
      }),
    );
    await kms.send(new UntagResourceCommand({ KeyId: k.KeyId, TagKeys: ['t0'] }));
    const p1 = await kms.send(new ListResourceTagsCommand({ KeyId: k.KeyId, Limit: 2 }));
    const p2 = await kms.send(
      new ListResourceTagsCommand({ KeyId: k.KeyId, Limit: 2, Marker: p1.NextMarker }),
    );
    expect(p1.Truncated).toBe(true);
    expect(p2.Truncated).toBe(false);
    expect([...p1.Tags!, ...p2.Tags!].map((t) => t.TagKey)).toEqual(['t1', 't2', 't3', 't4']);
    await expectError(
      kms.send(new TagResourceCommand({ KeyId: k.KeyId, Tags: [{ TagKey: 'aws:x', TagValue: '1' }] })),
      'TagException',
    );
  });
});

describe('cryptography', () => {
  const ctx = { tenant: 'acme', row: '7' };

  it('encrypts and decrypts with the context as AAD; Decrypt needs no KeyId', async () => {
    const k = await newKey();
    const pt = randomBytes(32);
    const enc = await kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: pt, EncryptionContext: ctx }));
    expect(enc.KeyId).toBe(k.Arn);
    const dec = await kms.send(
      new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ctx }),
    );
    expect(Buffer.from(dec.Plaintext!).equals(pt)).toBe(true);
    expect(dec.KeyMaterialId).toBe(k.CurrentKeyMaterialId);
    await expectError(
      kms.send(
        new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { ...ctx, row: '8' } }),
      ),
      'InvalidCiphertextException',
    );
    await expectError(
      kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      'InvalidCiphertextException',
    );
    const other = await newKey();
    await expectError(
      kms.send(
        new DecryptCommand({
          CiphertextBlob: enc.CiphertextBlob,
          EncryptionContext: ctx,
          KeyId: other.KeyId,
        }),
      ),
      'IncorrectKeyException',
    );
    await expectError(
      kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: randomBytes(4097) })),
      'ValidationException',
    );
  });

  it('re-encrypts under another key and context without returning plaintext', async () => {
    const a = await newKey();
    const b = await newKey();
    const enc = await kms.send(
      new EncryptCommand({ KeyId: a.KeyId, Plaintext: Buffer.from('dek'), EncryptionContext: ctx }),
    );
    const re = await kms.send(
      new ReEncryptCommand({
        CiphertextBlob: enc.CiphertextBlob,
        SourceEncryptionContext: ctx,
        DestinationKeyId: b.Arn,
        DestinationEncryptionContext: { moved: 'yes' },
      }),
    );
    expect(re).toMatchObject({
      SourceKeyId: a.Arn,
      KeyId: b.Arn,
      SourceKeyMaterialId: a.CurrentKeyMaterialId,
    });
    expect(re.DestinationKeyMaterialId).toBe(b.CurrentKeyMaterialId);
    expect(re).not.toHaveProperty('Plaintext');
    const dec = await kms.send(
      new DecryptCommand({ CiphertextBlob: re.CiphertextBlob, EncryptionContext: { moved: 'yes' } }),
    );
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('dek');
  });

  it('generates data keys with and without plaintext', async () => {
    const k = await newKey();
    const g = await kms.send(
      new GenerateDataKeyCommand({ KeyId: k.KeyId, KeySpec: 'AES_256', EncryptionContext: ctx }),
    );
    expect(g.Plaintext).toHaveLength(32);
    expect(g.KeyMaterialId).toBe(k.CurrentKeyMaterialId);
    const dec = await kms.send(
      new DecryptCommand({ CiphertextBlob: g.CiphertextBlob, EncryptionContext: ctx }),
    );
    expect(Buffer.from(dec.Plaintext!).equals(Buffer.from(g.Plaintext!))).toBe(true);
    const w = await kms.send(
      new GenerateDataKeyWithoutPlaintextCommand({ KeyId: k.KeyId, NumberOfBytes: 64 }),
    );
    expect(w).not.toHaveProperty('Plaintext');
    expect((await kms.send(new DecryptCommand({ CiphertextBlob: w.CiphertextBlob }))).Plaintext).toHaveLength(
      64,
    );
    await expectError(
      kms.send(new GenerateDataKeyCommand({ KeyId: k.KeyId, KeySpec: 'AES_256', NumberOfBytes: 32 })),
      'ValidationException',
    );
  });

  it('refuses crypto with a disabled key (DisabledException) and works again once enabled', async () => {
    const k = await newKey();
    const enc = await kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x') }));
    await kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    expect((await kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.KeyState).toBe(
      'Disabled',
    );
    await expectError(
      kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      'DisabledException',
    );
    await kms.send(new EnableKeyCommand({ KeyId: k.KeyId }));
    expect(
      (await kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }))).Plaintext,
    ).toBeDefined();
  });

  it('refuses Encrypt with keys that do not encrypt', async () => {
    const sign = await newKey({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    await expectError(
      kms.send(new EncryptCommand({ KeyId: sign.KeyId, Plaintext: Buffer.from('x') })),
      'InvalidKeyUsageException',
    );
  });

  it('records the last use for GetKeyLastUsage', async () => {
    const k = await newKey();
    const before = await kms.send(new GetKeyLastUsageCommand({ KeyId: k.KeyId }));
    expect(before.KeyLastUsage).toEqual({});
    expect(before.KeyCreationDate?.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    emu.clock.advance(60_000);
    await kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x') }));
    const after = await kms.send(new GetKeyLastUsageCommand({ KeyId: k.Arn }));
    expect(after.KeyLastUsage?.Operation).toBe('Encrypt');
    expect(after.KeyLastUsage?.Timestamp?.toISOString()).toBe('2026-01-01T00:01:00.000Z');
  });
});

describe('rotation', () => {
  it('rotates automatically on the simulated clock; old ciphertexts still decrypt', async () => {
    const k = await newKey();
    const old = await kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('old') }));
    await kms.send(new EnableKeyRotationCommand({ KeyId: k.KeyId, RotationPeriodInDays: 90 }));
    const status = await kms.send(new GetKeyRotationStatusCommand({ KeyId: k.KeyId }));
    expect(status).toMatchObject({ KeyRotationEnabled: true, RotationPeriodInDays: 90, KeyId: k.Arn });
    expect(status.NextRotationDate?.toISOString()).toBe('2026-04-01T00:00:00.000Z');

    emu.clock.advanceDays(200);
    const rotations = await kms.send(new ListKeyRotationsCommand({ KeyId: k.KeyId }));
    expect(rotations.Rotations?.map((r) => [r.RotationType, r.RotationDate?.toISOString()])).toEqual([
      ['AUTOMATIC', '2026-04-01T00:00:00.000Z'],
      ['AUTOMATIC', '2026-06-30T00:00:00.000Z'],
    ]);
    const md = (await kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata!;
    expect(md.CurrentKeyMaterialId).toBe(rotations.Rotations![1]!.KeyMaterialId);
    const dec = await kms.send(new DecryptCommand({ CiphertextBlob: old.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('old');
    expect(dec.KeyMaterialId).toBe(k.CurrentKeyMaterialId);
    const fresh = await kms.send(new GenerateDataKeyCommand({ KeyId: k.KeyId, NumberOfBytes: 16 }));
    expect(fresh.KeyMaterialId).toBe(md.CurrentKeyMaterialId);

    await kms.send(new DisableKeyRotationCommand({ KeyId: k.KeyId }));
    expect((await kms.send(new GetKeyRotationStatusCommand({ KeyId: k.KeyId }))).KeyRotationEnabled).toBe(
      false,
    );
  });

  it('does not rotate a disabled key, and catches up once it is enabled', async () => {
    const k = await newKey();
    await kms.send(new EnableKeyRotationCommand({ KeyId: k.KeyId, RotationPeriodInDays: 90 }));
    await kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    emu.clock.advanceDays(100);
    expect((await kms.send(new ListKeyRotationsCommand({ KeyId: k.KeyId }))).Rotations).toEqual([]);
    await kms.send(new EnableKeyCommand({ KeyId: k.KeyId }));
    expect((await kms.send(new ListKeyRotationsCommand({ KeyId: k.KeyId }))).Rotations).toHaveLength(1);
  });

  it('validates the rotation period and refuses keys that cannot rotate', async () => {
    const k = await newKey();
    for (const days of [89, 2561]) {
      await expectError(
        kms.send(new EnableKeyRotationCommand({ KeyId: k.KeyId, RotationPeriodInDays: days })),
        'ValidationException',
      );
    }
    await kms.send(new EnableKeyRotationCommand({ KeyId: k.KeyId }));
    expect((await kms.send(new GetKeyRotationStatusCommand({ KeyId: k.KeyId }))).RotationPeriodInDays).toBe(
      365,
    );
    const rsa = await newKey({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' });
    await expectError(
      kms.send(new EnableKeyRotationCommand({ KeyId: rsa.KeyId })),
      'UnsupportedOperationException',
    );
    const hmac = await newKey({ KeySpec: 'HMAC_512', KeyUsage: 'GENERATE_VERIFY_MAC' });
    await expectError(
      kms.send(new RotateKeyOnDemandCommand({ KeyId: hmac.KeyId })),
      'UnsupportedOperationException',
    );
    const ext = await newKey({ Origin: 'EXTERNAL' });
    await expectError(
      kms.send(new EnableKeyRotationCommand({ KeyId: ext.KeyId })),
      'KMSInvalidStateException',
    );
    await kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    await expectError(kms.send(new EnableKeyRotationCommand({ KeyId: k.KeyId })), 'DisabledException');
    await expectError(kms.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId })), 'DisabledException');
  });

  it('allows 25 on-demand rotations per key, then LimitExceededException; ListKeyRotations pages', async () => {
    const k = await newKey();
    for (let i = 0; i < 25; i++) await kms.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId }));
    await expectError(kms.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId })), 'LimitExceededException');
    const all: Array<{ id?: string; type?: string; state?: string; date?: Date }> = [];
    let marker: string | undefined;
    let pages = 0;
    do {
      const out = await kms.send(
        new ListKeyRotationsCommand({
          KeyId: k.KeyId,
          IncludeKeyMaterial: 'ALL_KEY_MATERIAL',
          Limit: 10,
          Marker: marker,
        }),
      );
      all.push(
        ...out.Rotations!.map((r) => ({
          id: r.KeyMaterialId,
          type: r.RotationType,
          state: r.KeyMaterialState,
          date: r.RotationDate,
        })),
      );
      marker = out.NextMarker;
      pages++;
    } while (marker);
    expect(pages).toBe(3);
    expect(all).toHaveLength(26);
    expect(all[0]).toMatchObject({
      id: k.CurrentKeyMaterialId,
      type: undefined,
      date: undefined,
      state: 'NON_CURRENT',
    });
    expect(all.slice(1).every((r) => r.type === 'ON_DEMAND')).toBe(true);
    expect(all.filter((r) => r.state === 'CURRENT').map((r) => r.id)).toEqual([all[25]!.id]);
    expect(new Set(all.map((r) => r.id)).size).toBe(26);
  });

  it('shows an on-demand rotation in progress until it completes on the clock', async () => {
    const slow = await emulator({ onDemandRotationMs: 60_000 });
    const c = kmsClient(slow);
    try {
      slow.clock.freeze();
      const k = (await c.send(new CreateKeyCommand({}))).KeyMetadata!;
      await c.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId }));
      const s = await c.send(new GetKeyRotationStatusCommand({ KeyId: k.KeyId }));
      expect(s.OnDemandRotationStartDate?.getTime()).toBe(slow.clock.nowMs());
      expect((await rejectionOf(c.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId })))).name).toBe(
        'ConflictException',
      );
      expect(
        (await c.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.CurrentKeyMaterialId,
      ).toBe(k.CurrentKeyMaterialId);
      slow.clock.advance(60_000);
      const after = await c.send(new GetKeyRotationStatusCommand({ KeyId: k.KeyId }));
      expect(after.OnDemandRotationStartDate).toBeUndefined();
      const md = (await c.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata!;
      expect(md.CurrentKeyMaterialId).not.toBe(k.CurrentKeyMaterialId);
    } finally {
      c.destroy();
      await slow.close();
    }
  });
});

describe('deletion', () => {
  it('validates the waiting period and defaults it to 30 days', async () => {
    const k = await newKey();
    for (const days of [6, 31]) {
      await expectError(
        kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.KeyId, PendingWindowInDays: days })),
        'ValidationException',
      );
    }
    const out = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.KeyId }));
    expect(out).toMatchObject({ KeyId: k.Arn, KeyState: 'PendingDeletion', PendingWindowInDays: 30 });
    expect(out.DeletionDate?.getTime()).toBe(emu.clock.nowMs() + 30 * DAY);
    await expectError(
      kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.KeyId })),
      'KMSInvalidStateException',
    );
  });

  it('a key pending deletion refuses crypto; cancelling leaves it Disabled', async () => {
    const k = await newKey();
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.KeyId, PendingWindowInDays: 7 }));
    await expectError(
      kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x') })),
      'KMSInvalidStateException',
    );
    await expectError(kms.send(new EnableKeyCommand({ KeyId: k.KeyId })), 'KMSInvalidStateException');
    await kms.send(new CancelKeyDeletionCommand({ KeyId: k.KeyId }));
    const md = (await kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata!;
    expect(md.KeyState).toBe('Disabled');
    expect(md.DeletionDate).toBeUndefined();
    await expectError(kms.send(new CancelKeyDeletionCommand({ KeyId: k.KeyId })), 'KMSInvalidStateException');
  });

  it('deletes the key and its aliases when the window ends, not before', async () => {
    const k = await newKey();
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/doomed', TargetKeyId: k.KeyId }));
    const enc = await kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x') }));
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.KeyId, PendingWindowInDays: 7 }));
    emu.clock.advance(7 * DAY - 1);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.KeyState).toBe(
      'PendingDeletion',
    );
    emu.clock.advance(1);
    await expectError(kms.send(new DescribeKeyCommand({ KeyId: k.KeyId })), 'NotFoundException');
    await expectError(kms.send(new DescribeKeyCommand({ KeyId: 'alias/doomed' })), 'NotFoundException');
    await expectError(
      kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      'NotFoundException',
    );
  });
});
