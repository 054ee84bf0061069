/**
 * The emulator's import operations (GetParametersForImport, ImportKeyMaterial,
 * DeleteImportedKeyMaterial) driven by the official SDK, with material wrapped here by
 * node:crypto as any BYOK tool would, checked against the AWS KMS API Reference.
 */
import {
  constants,
  createCipheriv,
  createPublicKey,
  type KeyObject,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import {
  CreateKeyCommand,
  DecryptCommand,
  DeleteImportedKeyMaterialCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GetParametersForImportCommand,
  ImportKeyMaterialCommand,
  type ImportKeyMaterialCommandInput,
  type KMSClient,
  ListKeyRotationsCommand,
  RotateKeyOnDemandCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { emulator, kmsClient, rejectionOf } from './helpers.js';

let emu: AwsEmulator;
let kms: KMSClient;

beforeAll(async () => {
  emu = await emulator();
  kms = kmsClient(emu);
});
afterAll(async () => {
  kms.destroy();
  await emu.close();
});
beforeEach(() => {
  emu.reset();
  emu.clock.freeze();
  emu.clock.set('2026-03-01T00:00:00Z');
});

type Algorithm =
  | 'RSAES_OAEP_SHA_1'
  | 'RSAES_OAEP_SHA_256'
  | 'RSA_AES_KEY_WRAP_SHA_1'
  | 'RSA_AES_KEY_WRAP_SHA_256';

async function params(keyId: string, algorithm: Algorithm = 'RSA_AES_KEY_WRAP_SHA_256') {
  const out = await kms.send(
    new GetParametersForImportCommand({
      KeyId: keyId,
      WrappingAlgorithm: algorithm,
      WrappingKeySpec: 'RSA_2048',
    }),
  );
  const pub = createPublicKey({ key: Buffer.from(out.PublicKey!), format: 'der', type: 'spki' });
  return { token: out.ImportToken!, pub, validTo: out.ParametersValidTo!, algorithm };
}

/** Wraps material as the algorithm says: RSA-OAEP, or RSA-OAEP of an AES key + RFC 5649. */
function wrap(material: Buffer, pub: KeyObject, algorithm: Algorithm): Buffer {
  const oaepHash = algorithm.endsWith('SHA_256') ? 'sha256' : 'sha1';
  const rsa = (b: Buffer) =>
    publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, b);
  if (algorithm.startsWith('RSAES')) return rsa(material);
  const aes = randomBytes(32);
  const c = createCipheriv('id-aes256-wrap-pad', aes, Buffer.from('A65959A6', 'hex'));
  const out = Buffer.concat([rsa(aes), c.update(material), c.final()]);
  aes.fill(0);
  return out;
}

async function external(extra: Record<string, unknown> = {}): Promise<string> {
  return (await kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL', ...extra }))).KeyMetadata!.KeyId!;
}

const state = async (keyId: string) =>
  (await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!;

async function importInto(
  keyId: string,
  material: Buffer,
  extra: Partial<ImportKeyMaterialCommandInput> = {},
) {
  const p = await params(keyId);
  return kms.send(
    new ImportKeyMaterialCommand({
      KeyId: keyId,
      ImportToken: p.token,
      EncryptedKeyMaterial: wrap(material, p.pub, p.algorithm),
      ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      ...extra,
    }),
  );
}

describe('GetParametersForImport', () => {
  it('answers every RSA wrapping algorithm with a fresh RSA key and a token valid 24 hours', async () => {
    const id = await external();
    const a = await params(id, 'RSAES_OAEP_SHA_1');
    const b = await params(id, 'RSAES_OAEP_SHA_1');
    expect(a.validTo.toISOString()).toBe('2026-03-02T00:00:00.000Z');
    expect(a.pub.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(a.pub.export({ format: 'jwk' }).n).not.toBe(b.pub.export({ format: 'jwk' }).n);
    for (const alg of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
      await params(id, alg);
    }
  });

  it('refuses keys without EXTERNAL origin, PKCS#1 v1.5, and unknown specs', async () => {
    const native = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    expect((await rejectionOf(params(native))).name).toBe('UnsupportedOperationException');
    const id = await external();
    expect(
      (
        await rejectionOf(
          kms.send(
            new GetParametersForImportCommand({
              KeyId: id,
              WrappingAlgorithm: 'RSAES_OAEP_SHA_1',
              WrappingKeySpec: 'RSA_1024' as never,
            }),
          ),
        )
      ).name,
    ).toBe('ValidationException');
  });
});

describe('ImportKeyMaterial', () => {
  it.each([
    'RSAES_OAEP_SHA_1',
    'RSAES_OAEP_SHA_256',
    'RSA_AES_KEY_WRAP_SHA_1',
    'RSA_AES_KEY_WRAP_SHA_256',
  ] as const)('imports with %s; the key becomes Enabled and encrypts', async (algorithm) => {
    const id = await external();
    expect((await state(id)).KeyState).toBe('PendingImport');
    const p = await params(id, algorithm);
    const material = randomBytes(32);
    const out = await kms.send(
      new ImportKeyMaterialCommand({
        KeyId: id,
        ImportToken: p.token,
        EncryptedKeyMaterial: wrap(material, p.pub, algorithm),
        ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      }),
    );
    expect(out.KeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
    const md = await state(id);
    expect(md).toMatchObject({ KeyState: 'Enabled', CurrentKeyMaterialId: out.KeyMaterialId });
    expect(md.ExpirationModel).toBe('KEY_MATERIAL_DOES_NOT_EXPIRE');
    const ct = (await kms.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') })))
      .CiphertextBlob!;
    expect(
      Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: ct }))).Plaintext!).toString(),
    ).toBe('x');
  });

  it('checks ExpirationModel and ValidTo, ImportType and KeyMaterialId, and the material length', async () => {
    const id = await external();
    const m = randomBytes(32);
    const code = async (extra: Partial<ImportKeyMaterialCommandInput>, material = m) =>
      (await rejectionOf(importInto(id, material, extra))).name;
    expect(await code({ ExpirationModel: 'KEY_MATERIAL_EXPIRES' })).toBe('ValidationException');
    expect(await code({ ValidTo: new Date('2026-04-01T00:00:00Z') })).toBe('ValidationException');
    expect(
      await code({ ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: new Date('2027-03-02T00:00:00Z') }),
    ).toBe('ValidationException');
    expect(await code({ ImportType: 'EXISTING_KEY_MATERIAL' })).toBe('ValidationException');
    expect(await code({ ImportType: 'NEW_KEY_MATERIAL', KeyMaterialId: 'a'.repeat(64) })).toBe(
      'ValidationException',
    );
    expect(await code({}, randomBytes(16))).toBe('IncorrectKeyMaterialException');
    expect((await state(id)).KeyState).toBe('PendingImport');
  });

  it('an expired token, another key’s token and a tampered blob are refused', async () => {
    const id = await external();
    const other = await external();
    const m = randomBytes(32);
    const p = await params(id);
    const blob = wrap(m, p.pub, p.algorithm);
    const send = (keyId: string, b: Buffer) =>
      kms.send(
        new ImportKeyMaterialCommand({
          KeyId: keyId,
          ImportToken: p.token,
          EncryptedKeyMaterial: b,
          ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
        }),
      );
    expect((await rejectionOf(send(other, blob))).name).toBe('InvalidImportTokenException');
    const tampered = Buffer.from(blob);
    tampered[10]! ^= 1;
    expect((await rejectionOf(send(id, tampered))).name).toBe('InvalidCiphertextException');
    emu.clock.advance(24 * 3_600_000);
    expect((await rejectionOf(send(id, blob))).name).toBe('ExpiredImportTokenException');
    expect((await state(id)).KeyState).toBe('PendingImport');
  });

  it('new material waits as PENDING_ROTATION until RotateKeyOnDemand makes it current', async () => {
    const id = await external({ Description: 'rotating' });
    const first = await importInto(id, randomBytes(32));
    // Imported keys need staged material to rotate.
    expect((await rejectionOf(kms.send(new RotateKeyOnDemandCommand({ KeyId: id })))).name).toBe(
      'KMSInvalidStateException',
    );
    const ct = (await kms.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('old') })))
      .CiphertextBlob!;
    const second = await importInto(id, randomBytes(32), {
      ImportType: 'NEW_KEY_MATERIAL',
      KeyMaterialDescription: 'second',
    });
    const listed = async () =>
      (await kms.send(new ListKeyRotationsCommand({ KeyId: id, IncludeKeyMaterial: 'ALL_KEY_MATERIAL' })))
        .Rotations!;
    expect((await listed()).map((r) => [r.KeyMaterialId, r.KeyMaterialState, r.ImportState])).toEqual([
      [first.KeyMaterialId, 'CURRENT', 'IMPORTED'],
      [second.KeyMaterialId, 'PENDING_ROTATION', 'IMPORTED'],
    ]);
    expect(
      (await rejectionOf(importInto(id, randomBytes(32), { ImportType: 'NEW_KEY_MATERIAL' }))).name,
    ).toBe('KMSInvalidStateException');
    await kms.send(new RotateKeyOnDemandCommand({ KeyId: id }));
    const after = await listed();
    expect(after.map((r) => [r.KeyMaterialId, r.KeyMaterialState, r.RotationType])).toEqual([
      [first.KeyMaterialId, 'NON_CURRENT', undefined],
      [second.KeyMaterialId, 'CURRENT', 'ON_DEMAND'],
    ]);
    expect(after[1]!.KeyMaterialDescription).toBe('second');
    expect((await state(id)).CurrentKeyMaterialId).toBe(second.KeyMaterialId);
    expect(
      Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: ct }))).Plaintext!).toString(),
    ).toBe('old');
  });

  it('deleted or expired material leaves the key PendingImport until the same material returns', async () => {
    const id = await external();
    const m = randomBytes(32);
    const first = await importInto(id, m, {
      ExpirationModel: 'KEY_MATERIAL_EXPIRES',
      ValidTo: new Date('2026-03-10T00:00:00Z'),
    });
    expect((await state(id)).ValidTo?.toISOString()).toBe('2026-03-10T00:00:00.000Z');
    emu.clock.advanceDays(9);
    expect((await state(id)).KeyState).toBe('PendingImport');
    const rot = await kms.send(
      new ListKeyRotationsCommand({ KeyId: id, IncludeKeyMaterial: 'ALL_KEY_MATERIAL' }),
    );
    expect(rot.Rotations![0]!.ImportState).toBe('PENDING_IMPORT');
    // Different material is not the key's.
    expect((await rejectionOf(importInto(id, randomBytes(32)))).name).toBe('IncorrectKeyMaterialException');
    const back = await importInto(id, m);
    expect(back.KeyMaterialId).toBe(first.KeyMaterialId);
    expect((await state(id)).KeyState).toBe('Enabled');

    const del = await kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: id }));
    expect(del.KeyMaterialId).toBe(first.KeyMaterialId);
    expect((await state(id)).KeyState).toBe('PendingImport');
    await importInto(id, m, { ImportType: 'EXISTING_KEY_MATERIAL', KeyMaterialId: first.KeyMaterialId });
    expect((await state(id)).KeyState).toBe('Enabled');
    m.fill(0);
  });
});
