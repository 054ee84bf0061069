/**
 * BYOK from a real SoftHSM2 token into AWS KMS (the emulator, through the official SDK): both
 * wrapping schemes, proof that KMS holds the HSM's material, re-import after deletion and
 * expiry, rotation of an imported key by a plan, and bad input that must import nothing.
 */
import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DeleteImportedKeyMaterialCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GetParametersForImportCommand,
  type KMSClient,
  ListKeyRotationsCommand,
} from '@aws-sdk/client-kms';
import pkcs11js from 'pkcs11js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../../cli/main.js';
import { AuditLog } from '../../../shared/core/audit/auditLog.js';
import { type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { NotFoundError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { KeyMaterialSource } from '../../../shared/core/ports/KeyProvider.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import { ApprovalRequired, approve } from '../../../shared/core/usecases/approvals.js';
import { importKey, importKeyByRef, materialLabel } from '../../../shared/core/usecases/byok.js';
import type { RekeyContext } from '../../../shared/core/usecases/context.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { AwsKmsProvider } from '../../../shared/providers/aws/AwsKmsProvider.js';
import {
  type ByokSource,
  createByokSource,
  generateByokKey,
} from '../../../shared/providers/pkcs11/export.js';
import { Pkcs11Provider } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { type SoftHsm, startSoftHsm } from '../../support/softhsm.js';
import { CREDENTIALS, emulator, kmsClient, REGION, rejectionOf } from '../aws/helpers.js';

const START = '2026-03-01T00:00:00.000Z';
const SCHEMES = ['rsa-oaep-sha1', 'rsa-aes-kwp-sha1'] as const;

let hsm: SoftHsm;
let token: Pkcs11Provider;
let source: ByokSource;
let emu: AwsEmulator;
let kms: KMSClient;
let aws: AwsKmsProvider;
let state: SqliteStateStore;
let clock: ManualClock;
let ctx: RekeyContext;
let n = 0;

beforeAll(async () => {
  hsm = await startSoftHsm({ label: 'byok' });
  token = await Pkcs11Provider.open({ id: 'hsm', module: hsm.module, token: hsm.label, pin: hsm.pin });
  source = createByokSource(token);
  emu = await emulator();
  kms = kmsClient(emu);
});
afterAll(async () => {
  await token.close();
  await hsm.cleanup();
  kms.destroy();
  await emu.close();
});
beforeEach(() => {
  emu.reset();
  emu.clock.freeze();
  emu.clock.set(START);
  clock = new ManualClock(START);
  aws = new AwsKmsProvider({
    id: 'aws-test',
    regions: [REGION],
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    rotationPollMs: 5,
    // The longest wrapping key is the default; a shorter one keeps the suite quick.
    importWrappingKeySpec: 'RSA_2048',
  });
  state = SqliteStateStore.open(':memory:');
  ctx = {
    config: loadConfig(
      'version: 1\nproviders:\n  aws-test: { type: aws-kms, regions: [eu-west-1] }\n',
      't.yaml',
    ),
    providers: new Map([['aws-test', aws]]),
    materialSources: new Map([['hsm', source]]),
    stores: new Map(),
    state,
    audit: new AuditLog(state, clock),
    clock,
    actor: 'test',
    instanceId: 'test-1',
  };
});
afterEach(async () => {
  await aws.close();
  await state.close?.();
});

/** A new KMS key for imported material, named by an alias. */
async function externalKey(): Promise<{ arn: string; ref: KeyRef; alias: string }> {
  const md = (await kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL', Description: 'byok' }))).KeyMetadata!;
  const alias = `byok-target-${++n}`;
  await kms.send(new CreateAliasCommand({ AliasName: `alias/${alias}`, TargetKeyId: md.KeyId }));
  return { arn: md.Arn!, ref: parseKeyRef(`aws-kms://${md.Arn}`), alias };
}

async function keyState(arn: string): Promise<string> {
  return (await kms.send(new DescribeKeyCommand({ KeyId: arn }))).KeyMetadata!.KeyState!;
}

/** The material bytes the emulator holds for a key (its current material). */
function materialInKms(arn: string): Buffer {
  const k = emu.kms.keys(REGION).find((x) => x.arn === arn)!;
  return Buffer.from(k.materials[k.materials.length - 1]!.key);
}

/**
 * The HSM's material, read the only way it can leave the token: wrapped under an RSA key,
 * here one the test holds, so the test can compare it with what KMS holds.
 */
async function materialInHsm(ref: KeyRef): Promise<Buffer> {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = pair.publicKey.export({ type: 'spki', format: 'der' });
  const wrapped = await source.exportWrapped(ref, spki, 'rsa-oaep-sha1');
  return privateDecrypt(
    { key: pair.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
    wrapped,
  );
}

/** Session (non-token) objects alive on the token in this process: none may be left behind. */
function sessionObjects(): number {
  const p = new pkcs11js.PKCS11();
  p.load(hsm.module);
  try {
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (!String((e as Error).message).includes('CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw e;
  }
  const slot = p.C_GetSlotList(true).find((sl) => p.C_GetTokenInfo(sl).label.trim() === hsm.label)!;
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    p.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_TOKEN, value: false }]);
    const found = p.C_FindObjects(s, 1000);
    p.C_FindObjectsFinal(s);
    return found.length;
  } finally {
    p.C_CloseSession(s);
  }
}

function tokenKeys(): string[] {
  return hsm
    .listObjects('secrkey')
    .map((o) => o.label)
    .sort();
}

describe('generating BYOK material on the token', () => {
  it('is a sensitive, extractable AES-256 token key usable for nothing else; labels are unique', async () => {
    const ref = await generateByokKey(token, { label: 'byok-generated' });
    expect(ref.uri).toBe('pkcs11:token=byok;object=byok-generated;type=secret-key');
    const obj = hsm.listObjects('secrkey').find((o) => o.label === 'byok-generated')!;
    expect(obj.kind).toMatch(/AES length 32/);
    expect(obj.access).toEqual(expect.arrayContaining(['sensitive', 'extractable']));
    expect(obj.access).not.toContain('never extractable');
    expect(obj.usage).toEqual(['none']);
    await expect(generateByokKey(token, { label: 'byok-generated' })).rejects.toThrow(
      /already has an object/,
    );
    await expect(generateByokKey(token, { label: 'bad label' })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe.each(SCHEMES)('import with %s', (algorithm) => {
  it('imports HSM material into a PendingImport key; KMS then holds exactly that material', async () => {
    const target = await externalKey();
    expect(await keyState(target.arn)).toBe('PendingImport');
    const material = await generateByokKey(token, { label: `orders-${algorithm}` });
    const objectsBefore = sessionObjects();
    const tokenBefore = tokenKeys();

    const r = await importKey(ctx, {
      source,
      sourceRef: material,
      target: aws,
      targetRef: target.ref,
      algorithm,
    });
    expect(r).toMatchObject({
      algorithm,
      targetRef: target.ref.uri,
      sourceRef: material.uri,
      expiresAt: null,
    });
    expect(await keyState(target.arn)).toBe('Enabled');
    // Nothing left on the token: no ephemeral AES key, no public key object.
    expect(sessionObjects()).toBe(objectsBefore);
    expect(tokenKeys()).toEqual(tokenBefore);

    const inKms = materialInKms(target.arn);
    const inHsm = await materialInHsm(material);
    expect(inKms.equals(inHsm)).toBe(true);
    inKms.fill(0);
    inHsm.fill(0);

    // The imported key works as any key: wrap and unwrap through the provider.
    const key = await aws.getKey(target.ref);
    expect(key).toMatchObject({ imported: true, primaryVersion: r.version.id, enabled: true });
    const dek = Buffer.alloc(32, 7);
    const w = await aws.wrap(target.ref, dek, { t: '1' });
    expect(w.version).toBe(r.version.id);
    expect(Buffer.from(await aws.unwrap(target.ref, w, { t: '1' })).equals(dek)).toBe(true);

    const audit = await state.auditRead(0, 1000);
    expect(audit.map((a) => a.action)).toContain('key.imported');
    expect(JSON.stringify(audit)).not.toContain(dek.toString('base64'));
  });
});

describe('re-import and expiry', () => {
  it('after DeleteImportedKeyMaterial, the same material comes back and old ciphertext decrypts', async () => {
    const target = await externalKey();
    const material = await generateByokKey(token, { label: 'reimport-src' });
    const first = await importKey(ctx, { source, sourceRef: material, target: aws, targetRef: target.ref });
    const ct = (await kms.send(new EncryptCommand({ KeyId: target.arn, Plaintext: Buffer.from('order 42') })))
      .CiphertextBlob!;

    await kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: target.arn }));
    expect(await keyState(target.arn)).toBe('PendingImport');
    expect((await rejectionOf(kms.send(new DecryptCommand({ CiphertextBlob: ct })))).name).toBe(
      'KMSInvalidStateException',
    );

    // Other material is refused; the key stays PendingImport.
    const other = await generateByokKey(token, { label: 'reimport-other' });
    const wrong = await rejectionOf(
      importKey(ctx, { source, sourceRef: other, target: aws, targetRef: target.ref }),
    );
    expect(wrong).toBeInstanceOf(ProviderError);
    expect((wrong as ProviderError).providerCode).toBe('IncorrectKeyMaterialException');
    expect(await keyState(target.arn)).toBe('PendingImport');

    const again = await importKey(ctx, { source, sourceRef: material, target: aws, targetRef: target.ref });
    expect(again.version.id).toBe(first.version.id);
    expect(await keyState(target.arn)).toBe('Enabled');
    const pt = (await kms.send(new DecryptCommand({ CiphertextBlob: ct }))).Plaintext!;
    expect(Buffer.from(pt).toString()).toBe('order 42');
  });

  it('material expires on the emulator clock; plans report it before and after; a re-import restores it', async () => {
    const target = await externalKey();
    const material = await generateByokKey(token, { label: 'expiring' });
    const expiresAt = '2026-03-11T00:00:00.000Z';
    const r = await importKey(ctx, {
      source,
      sourceRef: material,
      target: aws,
      targetRef: target.ref,
      expiresAt,
    });
    expect(r.version.expiresAt).toBe(expiresAt);
    const rotations = await kms.send(
      new ListKeyRotationsCommand({ KeyId: target.arn, IncludeKeyMaterial: 'ALL_KEY_MATERIAL' }),
    );
    expect(rotations.Rotations![0]).toMatchObject({
      ImportState: 'IMPORTED',
      ExpirationModel: 'KEY_MATERIAL_EXPIRES',
      ValidTo: new Date(expiresAt),
    });

    // No byok block: expiring material is still reported, 30 days ahead by default.
    ctx.config = loadConfig(
      `version: 1
providers:
  aws-test: { type: aws-kms, regions: [${REGION}] }
policies:
  - name: imported
    match: { provider: [aws-test] }
`,
      't.yaml',
    );
    const soon = await makePlan(ctx);
    expect(soon.plan.findings.find((f) => f.kind === 'material_expiring')).toMatchObject({
      severity: 'warning',
      keyRef: target.ref.uri,
      version: r.version.id,
    });

    emu.clock.advanceDays(11);
    clock.set('2026-03-12T00:00:00Z');
    expect(await keyState(target.arn)).toBe('PendingImport');
    const listed = await aws.getKey(target.ref);
    expect(listed.enabled).toBe(false);
    const late = await makePlan(ctx);
    expect(late.plan.findings.find((f) => f.kind === 'material_expiring')).toMatchObject({
      severity: 'critical',
    });

    await importKey(ctx, { source, sourceRef: material, target: aws, targetRef: target.ref, reimport: true });
    expect(await keyState(target.arn)).toBe('Enabled');
    expect((await aws.getKey(target.ref)).versions[0]!.expiresAt).toBeUndefined();
  });
});

describe('rotation of an imported key', () => {
  const yaml = (byok: string) => `version: 1
providers:
  aws-test: { type: aws-kms, regions: [${REGION}] }
  hsm: { type: pkcs11, module: /usr/lib/softhsm/libsofthsm2.so, token: byok, pin: env:HSM_PIN }
policies:
  - name: imported
    match: { provider: [aws-test] }
    rotate: { every: P30D }
${byok}`;

  it('a policy with a byok source rotates by importing new HSM material as the new version', async () => {
    const target = await externalKey();
    const first = await importKey(ctx, {
      source,
      sourceRef: await generateByokKey(token, { label: 'rot-first' }),
      target: aws,
      targetRef: target.ref,
    });
    const ct = (await kms.send(new EncryptCommand({ KeyId: target.arn, Plaintext: Buffer.from('kept') })))
      .CiphertextBlob!;
    clock.set('2026-04-15T00:00:00Z');
    emu.clock.set('2026-04-15T00:00:00Z');

    ctx.config = loadConfig(yaml(''), 't.yaml');
    const without = await makePlan(ctx);
    expect(without.plan.actions).toEqual([]);
    expect(without.plan.findings.find((f) => f.kind === 'byok_source_missing')?.message).toMatch(
      /names no byok source/,
    );

    ctx.config = loadConfig(
      yaml('    byok: { source: hsm, algorithm: rsa-oaep-sha1, expiresAfter: P180D }\n'),
      't.yaml',
    );
    const { plan } = await makePlan(ctx);
    expect(plan.actions).toHaveLength(1);
    expect(plan.actions[0]).toMatchObject({
      type: 'rotate',
      expectPrimary: first.version.id,
      byok: { source: 'hsm', algorithm: 'rsa-oaep-sha1', expiresAfter: 'P180D' },
    });
    const report = await applyPlan(ctx, plan);
    expect(report.status).toBe('completed');

    const key = await aws.getKey(target.ref);
    expect(key.versions.map((v) => v.id)).toEqual([first.version.id, key.primaryVersion]);
    expect(key.primaryVersion).not.toBe(first.version.id);
    expect(key.versions[1]!.expiresAt).toBe('2026-10-12T00:00:00.000Z');
    // New material came from the HSM: a new token key named after the key and the time.
    const label = materialLabel(key.name, new Date('2026-04-15T00:00:00Z'));
    expect(tokenKeys()).toContain(label);
    const inHsm = await materialInHsm(parseKeyRef(`pkcs11:token=byok;object=${label}`));
    const inKms = materialInKms(target.arn);
    expect(inKms.equals(inHsm)).toBe(true);
    inKms.fill(0);
    inHsm.fill(0);
    // Old ciphertext still decrypts (its material stays), new encryptions use the new version.
    expect(
      Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: ct }))).Plaintext!).toString(),
    ).toBe('kept');
    expect((await aws.wrap(target.ref, Buffer.alloc(32, 1), {})).version).toBe(key.primaryVersion);
    // Re-applying does not rotate twice.
    const again = await applyPlan(ctx, plan);
    expect(again.outcomes[0]!.status).toBe('done');
    expect((await aws.getKey(target.ref)).versions).toHaveLength(2);
  });
});

describe('bad input imports nothing', () => {
  /** A source that takes longer than the import token lives (an HSM queue, an approval). */
  function slowSource(days: number): KeyMaterialSource {
    return {
      exportWrapped: async (ref, pub, alg) => {
        emu.clock.advanceDays(days);
        return source.exportWrapped(ref, pub, alg);
      },
    };
  }

  it('an expired import token: ExpiredImportTokenException, audited, key still PendingImport', async () => {
    const target = await externalKey();
    const material = await generateByokKey(token, { label: 'bad-expired' });
    const err = await rejectionOf(
      importKey(ctx, { source: slowSource(1.01), sourceRef: material, target: aws, targetRef: target.ref }),
    );
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as ProviderError).providerCode).toBe('ExpiredImportTokenException');
    expect(err.message).toMatch(/GetParametersForImport again/);
    expect(await keyState(target.arn)).toBe('PendingImport');
    const last = (await state.auditRead(0, 1000)).at(-1)!;
    expect(last).toMatchObject({ action: 'key.import_failed', details: { step: 'importMaterial' } });
  });

  it('material wrapped with another scheme than the token was issued for: InvalidCiphertextException', async () => {
    const target = await externalKey();
    const material = await generateByokKey(token, { label: 'bad-scheme' });
    const params = await aws.prepareImport(target.ref, 'rsa-oaep-sha1');
    const wrapped = await source.exportWrapped(material, params.wrappingPublicKey, 'rsa-aes-kwp-sha1');
    const err = await rejectionOf(aws.importMaterial(target.ref, params, wrapped, {}));
    expect((err as ProviderError).providerCode).toBe('InvalidCiphertextException');
    expect(await keyState(target.arn)).toBe('PendingImport');
    // A scheme the target does not accept is refused before anything is asked of AWS.
    await expect(
      importKey(ctx, {
        source,
        sourceRef: material,
        target: aws,
        targetRef: target.ref,
        algorithm: 'rsa-pkcs1' as never,
      }),
    ).rejects.toBeInstanceOf(ValidationError);
    // AWS no longer offers PKCS#1 v1.5 wrapping.
    expect(
      (
        await rejectionOf(
          kms.send(
            new GetParametersForImportCommand({
              KeyId: target.arn,
              WrappingAlgorithm: 'RSAES_PKCS1_V1_5',
              WrappingKeySpec: 'RSA_2048',
            }),
          ),
        )
      ).name,
    ).toBe('UnsupportedOperationException');
  });

  it.each(SCHEMES)(
    'a tampered blob (%s): InvalidCiphertextException, key still PendingImport',
    async (algorithm) => {
      const target = await externalKey();
      const material = await generateByokKey(token, { label: `bad-tampered-${algorithm}` });
      const params = await aws.prepareImport(target.ref, algorithm);
      const wrapped = await source.exportWrapped(material, params.wrappingPublicKey, algorithm);
      wrapped[wrapped.length - 3]! ^= 0x40;
      const err = await rejectionOf(aws.importMaterial(target.ref, params, wrapped, {}));
      expect((err as ProviderError).providerCode).toBe('InvalidCiphertextException');
      expect(await keyState(target.arn)).toBe('PendingImport');
    },
  );

  it('an import token of another key: InvalidImportTokenException', async () => {
    const a = await externalKey();
    const b = await externalKey();
    const material = await generateByokKey(token, { label: 'bad-token' });
    const params = await aws.prepareImport(a.ref, 'rsa-aes-kwp-sha1');
    const wrapped = await source.exportWrapped(material, params.wrappingPublicKey, 'rsa-aes-kwp-sha1');
    const err = await rejectionOf(aws.importMaterial(b.ref, params, wrapped, {}));
    expect((err as ProviderError).providerCode).toBe('InvalidImportTokenException');
    expect(await keyState(b.arn)).toBe('PendingImport');
  });

  it('a key that is not for imported material, a missing or non-extractable source: refused before importing', async () => {
    const native = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const material = await generateByokKey(token, { label: 'bad-target' });
    const onNative = await rejectionOf(
      importKey(ctx, {
        source,
        sourceRef: material,
        target: aws,
        targetRef: parseKeyRef(`aws-kms://${native.Arn}`),
      }),
    );
    expect(onNative).toBeInstanceOf(ValidationError);
    expect(onNative.message).toMatch(/Origin EXTERNAL/);

    const target = await externalKey();
    const missing = await rejectionOf(
      importKey(ctx, {
        source,
        sourceRef: parseKeyRef('pkcs11:token=byok;object=no-such-key'),
        target: aws,
        targetRef: target.ref,
      }),
    );
    expect(missing).toBeInstanceOf(NotFoundError);

    // rekey's own managed keys never leave the HSM, even wrapped.
    const objectsBefore = sessionObjects();
    const managed = await token.createKey({ name: 'managed-kek' });
    const locked = await rejectionOf(
      importKey(ctx, { source, sourceRef: parseKeyRef(managed.ref), target: aws, targetRef: target.ref }),
    );
    expect(locked).toBeInstanceOf(ValidationError);
    expect(locked.message).toMatch(/not extractable/);
    expect(sessionObjects()).toBe(objectsBefore);
    expect(await keyState(target.arn)).toBe('PendingImport');
  });
});

describe('rekey byok (CLI)', () => {
  it('generates material and imports it, with --json output', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rekey-byok-'));
    const env = {
      HSM_PIN: hsm.pin,
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    const rekey = async (...args: string[]) => {
      written.length = 0;
      const code = await main(['node', 'rekey', '--config', join(dir, 'rekey.yaml'), '--json', ...args]);
      return { code, json: () => JSON.parse(written.join('')) };
    };
    try {
      writeFileSync(
        join(dir, 'rekey.yaml'),
        `version: 1
providers:
  aws-prod: { type: aws-kms, regions: [${REGION}], endpoint: "${emu.endpoint}" }
  hsm: { type: pkcs11, module: ${hsm.module}, token: ${hsm.label}, pin: env:HSM_PIN }
`,
      );
      // The CLI runs on the system clock (its --expires is from now): so does the emulator here.
      emu.clock.set(new Date());
      emu.clock.thaw();
      const target = await externalKey();
      const gen = await rekey('byok', 'generate', '--provider', 'hsm', '--label', 'cli-orders');
      expect(gen.code).toBe(0);
      expect(gen.json()).toEqual({ ref: 'pkcs11:token=byok;object=cli-orders;type=secret-key' });
      const imp = await rekey(
        'byok',
        'import',
        '--from',
        'pkcs11:token=byok;object=cli-orders',
        '--to',
        target.ref.uri,
        '--algorithm',
        'rsa-oaep-sha1',
        '--expires',
        'P90D',
      );
      expect(imp.code).toBe(0);
      expect(imp.json()).toMatchObject({ algorithm: 'rsa-oaep-sha1', targetRef: target.ref.uri });
      expect(await keyState(target.arn)).toBe('Enabled');

      const bad = await rekey(
        'byok',
        'import',
        '--from',
        'pkcs11:token=byok;object=cli-orders',
        '--to',
        target.ref.uri,
        '--algorithm',
        'rsa-pkcs1',
      );
      expect(bad.code).not.toBe(0);
      expect(bad.json().error.message).toMatch(/--algorithm must be/);
    } finally {
      spy.mockRestore();
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('dual control', () => {
  it('an import that approvals.require names waits for M-of-N approvals, then runs once', async () => {
    const target = await externalKey();
    const material = await generateByokKey(token, { label: 'dual-control' });
    ctx.config = loadConfig(
      [
        'version: 1',
        'providers:',
        '  aws-test: { type: aws-kms, regions: [eu-west-1] }',
        `  hsm: { type: pkcs11, module: ${hsm.module}, token: ${hsm.label}, pin: env:UNUSED_PIN }`,
        'approvals: { approvers: [alice, bob, carol], quorum: 2, require: [import] }',
        '',
      ].join('\n'),
      't.yaml',
    );
    ctx.providers.set('hsm', token);
    try {
      const run = () => importKeyByRef(ctx, { from: material.uri, to: target.ref.uri });
      const refused = (await rejectionOf(run())) as unknown as ApprovalRequired;
      expect(refused).toBeInstanceOf(ApprovalRequired);
      expect(refused.message).toMatch(/needs 2 approval/);
      expect(await keyState(target.arn)).toBe('PendingImport');
      const id = refused.requestId!;
      // The requester cannot approve their own import; two others can.
      await expect(approve(ctx, id, { by: 'test' })).rejects.toThrow();
      await approve(ctx, id, { by: 'alice' });
      expect((await rejectionOf(run())).message).toMatch(/has 1/);
      await approve(ctx, id, { by: 'bob' });
      const done = await run();
      expect(done.targetRef).toBe(target.ref.uri);
      expect(await keyState(target.arn)).toBe('Enabled');
      // The approval was used up: a second import needs a new request.
      await expect(run()).rejects.toBeInstanceOf(ApprovalRequired);
    } finally {
      ctx.providers.delete('hsm');
    }
  });
});
