/**
 * Rotation by a new key and an alias swap (asymmetric, HMAC, and symmetric keys configured for
 * it), against the emulator with the official SDK: the chain model, re-wrap across keys, and the
 * full plan/apply cycle retiring old keys only once no DEK uses them.
 */
import { randomBytes } from 'node:crypto';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  GetKeyPolicyCommand,
  type KMSClient,
  ListResourceTagsCommand,
  TagResourceCommand,
  UpdateAliasCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../shared/core/audit/auditLog.js';
import { type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import {
  IntegrityError,
  InvariantViolation,
  NotFoundError,
  PolicyError,
  ProviderError,
  ValidationError,
} from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import type { RekeyContext } from '../../../shared/core/usecases/context.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { AwsKmsProvider, type AwsManagedKey } from '../../../shared/providers/aws/AwsKmsProvider.js';
import { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { CREDENTIALS, emulator, kmsClient, REGION, rejectionOf } from './helpers.js';

let emu: AwsEmulator;
let kms: KMSClient;
let provider: AwsKmsProvider;

function newProvider(extra: Partial<ConstructorParameters<typeof AwsKmsProvider>[0]> = {}) {
  return new AwsKmsProvider({
    id: 'aws-test',
    regions: [REGION],
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    rotationPollMs: 5,
    rotateByNewKey: ['orders*'],
    ...extra,
  });
}

beforeAll(async () => {
  emu = await emulator();
  kms = kmsClient(emu);
});
afterAll(async () => {
  kms.destroy();
  await emu.close();
});
beforeEach(async () => {
  await provider?.close();
  emu.reset();
  emu.clock.freeze();
  emu.clock.set('2026-03-01T00:00:00Z');
  // A fresh provider each test: it remembers which aliases are chains.
  provider = newProvider();
});

const aliasRef = (name: string): KeyRef =>
  parseKeyRef(`aws-kms://arn:aws:kms:${REGION}:${emu.account}:alias/${name}`);

async function tagsOf(keyId: string): Promise<Record<string, string>> {
  const out = await kms.send(new ListResourceTagsCommand({ KeyId: keyId }));
  return Object.fromEntries((out.Tags ?? []).map((t) => [t.TagKey!, t.TagValue!]));
}

async function listAll(p: AwsKmsProvider): Promise<AwsManagedKey[]> {
  const out: AwsManagedKey[] = [];
  let cursor: string | null = null;
  do {
    const page = await p.listKeys({}, cursor);
    out.push(...(page.items as AwsManagedKey[]));
    cursor = page.cursor;
  } while (cursor !== null);
  return out;
}

describe('rotation by a new key and an alias swap', () => {
  it('rotates an HMAC key: same spec, usage, description, policy and tags; the alias moves', async () => {
    const policy = JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        { Sid: 'app', Effect: 'Allow', Principal: { AWS: '*' }, Action: 'kms:GenerateMac', Resource: '*' },
      ],
    });
    const first = (
      await kms.send(
        new CreateKeyCommand({
          KeySpec: 'HMAC_256',
          KeyUsage: 'GENERATE_VERIFY_MAC',
          Description: 'webhook signatures',
          Policy: policy,
          Tags: [{ TagKey: 'team', TagValue: 'payments' }],
        }),
      )
    ).KeyMetadata!;
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/webhooks', TargetKeyId: first.KeyId }));
    const ref = aliasRef('webhooks');

    const before = await provider.getKey(ref);
    expect(before).toMatchObject({
      ref: ref.uri,
      name: 'webhooks',
      algorithm: 'HMAC_256',
      primaryVersion: first.Arn,
      versions: [{ id: first.Arn, state: 'enabled' }],
      tags: { team: 'payments' },
    });
    expect(provider.capabilitiesFor(before)).toMatchObject({
      versionControl: { disable: true, destroy: true },
    });
    expect(provider.capabilitiesFor(before).autoRotation).toBeUndefined();

    const v2 = await provider.rotate(ref);
    expect(v2.id).not.toBe(first.Arn);
    const second = (await kms.send(new DescribeKeyCommand({ KeyId: v2.id }))).KeyMetadata!;
    expect(second).toMatchObject({
      KeySpec: 'HMAC_256',
      KeyUsage: 'GENERATE_VERIFY_MAC',
      Description: 'webhook signatures',
      Origin: 'AWS_KMS',
      KeyState: 'Enabled',
    });
    expect((await kms.send(new GetKeyPolicyCommand({ KeyId: v2.id }))).Policy).toBe(policy);
    expect(await tagsOf(v2.id)).toEqual({ team: 'payments', 'rekey:previous-key': first.Arn });
    expect(await tagsOf(first.KeyId!)).toEqual({ team: 'payments', 'rekey:superseded-by': v2.id });
    expect((await kms.send(new DescribeKeyCommand({ KeyId: 'alias/webhooks' }))).KeyMetadata!.Arn).toBe(
      v2.id,
    );

    const v3 = await provider.rotate(ref);
    const after = await provider.getKey(ref);
    expect(after.versions.map((v) => v.id)).toEqual([first.Arn, v2.id, v3.id]);
    expect(after.primaryVersion).toBe(v3.id);
    expect(after.versions.every((v) => v.state === 'enabled')).toBe(true);
    // The chain's bookkeeping tags stay out of the key's tags (policies match on these).
    expect(after.tags).toEqual({ team: 'payments' });

    // Inventory: one logical key named by the alias, the old keys are its versions.
    const listed = await listAll(provider);
    expect(listed.map((k) => k.ref)).toEqual([ref.uri]);
    expect(listed[0]!.versions.map((v) => v.id)).toEqual([first.Arn, v2.id, v3.id]);
  });

  it('rotates an asymmetric key behind an alias, and retires old versions one by one', async () => {
    const created = await provider.createKey({ name: 'signing', algorithm: 'EC_P256', tags: { app: 'api' } });
    const ref = parseKeyRef(created.ref);
    expect(ref.uri).toBe(aliasRef('signing').uri);
    const v1 = created.primaryVersion;
    const v2 = (await provider.rotate(ref)).id;
    expect((await kms.send(new DescribeKeyCommand({ KeyId: v2 }))).KeyMetadata).toMatchObject({
      KeySpec: 'ECC_NIST_P256',
      KeyUsage: 'SIGN_VERIFY',
    });

    // The current key is never disabled or deleted.
    await expect(provider.setVersionState(ref, v2, 'disabled')).rejects.toBeInstanceOf(InvariantViolation);
    await expect(provider.scheduleDestroy(ref, v2, 7)).rejects.toBeInstanceOf(InvariantViolation);

    await provider.setVersionState(ref, v1, 'disabled');
    expect((await provider.getKey(ref)).versions[0]).toMatchObject({ id: v1, state: 'disabled' });
    const { destroyAt } = await provider.scheduleDestroy(ref, v1, 7);
    expect(destroyAt).toBe('2026-03-08T00:00:00.000Z');
    expect((await provider.getKey(ref)).versions[0]).toMatchObject({ state: 'destroy_scheduled', destroyAt });
    // Back to disabled = CancelKeyDeletion (AWS leaves the key Disabled).
    await provider.setVersionState(ref, v1, 'disabled');
    expect((await provider.getKey(ref)).versions[0]!.state).toBe('disabled');
    await provider.scheduleDestroy(ref, v1, 7);
    emu.clock.advanceDays(8);
    const gone = await provider.getKey(ref);
    expect(gone.versions.map((v) => [v.id, v.state])).toEqual([
      [v1, 'destroyed'],
      [v2, 'enabled'],
    ]);
    await expect(provider.setVersionState(ref, v1, 'enabled')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('keys AWS rotates natively keep their key ARN ref; unrotatable keys without an alias say how to fix it', async () => {
    const plain = await provider.createKey({ name: 'billing' });
    expect(plain.ref).toMatch(/:key\//);
    expect(plain.aws.aliasManaged).toBeUndefined();
    const bare = (await kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' })))
      .KeyMetadata!;
    const err = await rejectionOf(provider.rotate(parseKeyRef(`aws-kms://${bare.Arn}`)));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.message).toMatch(/give it an alias/);
  });

  it('a symmetric key listed in rotateByNewKey re-wraps across keys with ReEncrypt', async () => {
    const created = await provider.createKey({ name: 'orders' });
    const ref = parseKeyRef(created.ref);
    expect(created.aws.aliasManaged).toEqual({ alias: 'alias/orders' });
    const v1 = created.primaryVersion;
    const dek = randomBytes(32);
    const ctx = { tenant: 't1' };
    const w1 = await provider.wrap(ref, dek, ctx);
    expect(w1.version).toBe(v1);

    const v2 = (await provider.rotate(ref)).id;
    const w2 = await provider.wrap(ref, dek, ctx);
    expect(w2.version).toBe(v2);
    // Old ciphertexts still open with the key that made them.
    expect(Buffer.from(await provider.unwrap(ref, w1, ctx)).equals(dek)).toBe(true);

    const reEncrypts = emu.requestCounts['kms.ReEncrypt'] ?? 0;
    const moved = await provider.rewrap(ref, w1, ctx);
    expect(moved.version).toBe(v2);
    expect(emu.requestCounts['kms.ReEncrypt']).toBe(reEncrypts + 1);
    expect(Buffer.from(await provider.unwrap(ref, moved, ctx)).equals(dek)).toBe(true);
    // A DEK recorded under the wrong version is caught, not silently accepted.
    await expect(provider.unwrap(ref, { ...w1, version: v2 }, ctx)).rejects.toThrow();
    await expect(provider.unwrap(ref, { ...w1, version: 'original' }, ctx)).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  it('an interrupted swap is finished by the next rotation, never doubled', async () => {
    const created = await provider.createKey({ name: 'macs', algorithm: 'HMAC_256' });
    const ref = parseKeyRef(created.ref);
    emu.faults.failNext('UpdateAlias', 'KMSInternalException', 1);
    await expect(provider.rotate(ref)).rejects.toBeInstanceOf(ProviderError);
    // The new key exists but the alias did not move: still one key, one version.
    expect(emu.kms.keys(REGION)).toHaveLength(2);
    const listed = await listAll(provider);
    expect(listed.map((k) => [k.ref, k.versions.length])).toEqual([[ref.uri, 1]]);

    const v2 = await provider.rotate(ref);
    expect(emu.kms.keys(REGION)).toHaveLength(2);
    expect((await provider.getKey(ref)).versions.map((v) => v.id)).toEqual([created.primaryVersion, v2.id]);
  });
});

describe('bad input changes nothing', () => {
  it('a ref in a Region the provider does not serve is refused before any call', async () => {
    const calls = { ...emu.requestCounts };
    const ref = parseKeyRef(`aws-kms://arn:aws:kms:us-east-2:${emu.account}:alias/macs`);
    const err = await rejectionOf(provider.rotate(ref));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toMatch(/us-east-2.*does not serve.*eu-west-1/);
    expect(emu.requestCounts).toEqual(calls);
  });

  it('a missing alias is a NotFoundError naming it', async () => {
    const err = await rejectionOf(provider.rotate(aliasRef('nope')));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toMatch(/alias\/nope does not exist in eu-west-1/);
    expect(emu.kms.keys(REGION)).toHaveLength(0);
  });

  it('a history tag pointing at a key in another Region is an IntegrityError; nothing is created', async () => {
    const created = await provider.createKey({ name: 'macs', algorithm: 'HMAC_256' });
    const other = `arn:aws:kms:us-east-1:${emu.account}:key/0b6d4ba4-4bb5-4c1a-9d3b-9d7f1f3c5a11`;
    await kms.send(
      new TagResourceCommand({
        KeyId: created.primaryVersion,
        Tags: [{ TagKey: 'rekey:previous-key', TagValue: other }],
      }),
    );
    const ref = parseKeyRef(created.ref);
    const fresh = newProvider();
    await expect(fresh.getKey(ref)).rejects.toBeInstanceOf(IntegrityError);
    const err = await rejectionOf(fresh.rotate(ref));
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.message).toMatch(/us-east-1/);
    expect(emu.kms.keys(REGION)).toHaveLength(1);
    await fresh.close();
  });

  it('a successor would exceed 50 tags: refused before CreateKey', async () => {
    const tags = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`t${i}`, 'x']));
    const created = await provider.createKey({ name: 'macs', algorithm: 'HMAC_256', tags });
    const err = await rejectionOf(provider.rotate(parseKeyRef(created.ref)));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toMatch(/50/);
    expect(emu.kms.keys(REGION)).toHaveLength(1);
  });
});

describe('plan and apply on an alias chain', () => {
  const YAML = `version: 1
providers:
  aws-test: { type: aws-kms, regions: [${REGION}] }
stores:
  app: { type: sqlite, path: app.db }
  legacy: { type: sqlite, path: legacy.db }
policies:
  - name: orders
    match: { provider: [aws-test] }
    rotate: { every: P30D }
    rewrap: { stores: [app], verify: full, batchSize: 20 }
    retire: { disableAfter: P0D, destroyAfter: P0D, destroyDelay: P7D }
`;

  async function workspace() {
    const clock = new ManualClock('2026-05-01T00:00:00Z');
    const store = (id: string) =>
      SqliteDekStore.open({
        id,
        path: ':memory:',
        table: 'data_keys',
        columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
        create: true,
      });
    const app = store('app');
    const legacy = store('legacy');
    const state = SqliteStateStore.open(':memory:');
    const ctx: RekeyContext = {
      config: loadConfig(YAML, 'test.yaml'),
      providers: new Map([['aws-test', provider]]),
      stores: new Map([
        ['app', app],
        ['legacy', legacy],
      ]),
      state,
      audit: new AuditLog(state, clock),
      clock,
      actor: 'test',
      instanceId: 'test-1',
    };
    const plaintexts = new Map<string, Buffer>();
    const seed = async (ref: KeyRef, into: SqliteDekStore, n: number) => {
      const recs: DekRecord[] = [];
      for (let i = 0; i < n; i++) {
        const id = `${into.id}-${i}`;
        const pt = randomBytes(32);
        plaintexts.set(id, pt);
        const w = await provider.wrap(ref, pt, { id });
        recs.push({ id, keyRef: ref.uri, version: w.version, wrapped: w.ciphertext, context: { id } });
      }
      await into.insertMany(recs);
    };
    const lost = async (ref: KeyRef, from: SqliteDekStore) => {
      const bad: string[] = [];
      for (const [id, pt] of plaintexts) {
        const d = await from.get(id);
        if (!d) continue;
        const got = await provider.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
        if (!Buffer.from(got).equals(pt)) bad.push(id);
      }
      return bad;
    };
    return {
      ctx,
      app,
      legacy,
      seed,
      lost,
      close: async () => {
        await app.close?.();
        await legacy.close?.();
        await state.close?.();
      },
    };
  }

  it('rotates by swap, re-wraps across keys, then disables and schedules deletion of the old key', async () => {
    const w = await workspace();
    const created = await provider.createKey({ name: 'orders' });
    const ref = parseKeyRef(created.ref);
    const v1 = created.primaryVersion;
    await w.seed(ref, w.app, 45);

    const { plan } = await makePlan(w.ctx);
    expect(plan.actions.map((a) => `${a.type}${'version' in a ? ` ${a.version}` : ''}`)).toEqual([
      'rotate',
      'rewrap',
      'disable_version previous-primary',
      'schedule_destroy previous-primary',
    ]);
    const report = await applyPlan(w.ctx, plan);
    expect(report.status).toBe('completed');
    expect(report.totals).toMatchObject({ rotated: 1, rewrapped: 45, verified: 45, failed: 0, retired: 1 });

    const key = await provider.getKey(ref);
    const v2 = key.primaryVersion;
    expect(v2).not.toBe(v1);
    expect(key.versions.map((v) => [v.id, v.state])).toEqual([
      [v1, 'destroy_scheduled'],
      [v2, 'enabled'],
    ]);
    expect(await w.app.countByVersion(ref.uri)).toEqual({ [v2]: 45 });
    expect(await w.lost(ref, w.app)).toEqual([]);
    await w.close();
  });

  it('an old key still used by a DEK outside the re-wrap stores is never disabled', async () => {
    const w = await workspace();
    const created = await provider.createKey({ name: 'orders' });
    const ref = parseKeyRef(created.ref);
    const v1 = created.primaryVersion;
    await w.seed(ref, w.app, 10);
    await w.seed(ref, w.legacy, 1);

    const { plan } = await makePlan(w.ctx);
    expect(plan.actions.map((a) => a.type)).toEqual(['rotate', 'rewrap']);
    expect(plan.findings.some((f) => f.kind === 'version_retirable' && f.severity === 'warning')).toBe(true);
    const report = await applyPlan(w.ctx, plan);
    expect(report.status).toBe('completed');
    const key = await provider.getKey(ref);
    expect(key.versions.find((v) => v.id === v1)!.state).toBe('enabled');
    expect((await kms.send(new DescribeKeyCommand({ KeyId: v1 }))).KeyMetadata!.KeyState).toBe('Enabled');
    expect(await w.legacy.countByVersion(ref.uri)).toEqual({ [v1]: 1 });
    expect(await w.lost(ref, w.legacy)).toEqual([]);
    await w.close();
  });
});

describe('configuration', () => {
  it('rotateByNewKey takes alias name globs; a bad glob names the field', () => {
    const cfg = (globs: string) => `version: 1
providers:
  aws-prod: { type: aws-kms, regions: [${REGION}], rotateByNewKey: ${globs} }
`;
    const ok = loadConfig(cfg('[orders-*, "pci/**"]'), 'ok.yaml');
    expect(ok.providers['aws-prod']).toMatchObject({ rotateByNewKey: ['orders-*', 'pci/**'] });
    const err = (() => {
      try {
        loadConfig(cfg('["orders-["]'), 'bad.yaml');
      } catch (e) {
        return e as PolicyError;
      }
      throw new Error('expected a PolicyError');
    })();
    expect(err).toBeInstanceOf(PolicyError);
    expect(err.issues[0]).toMatchObject({ file: 'bad.yaml', path: 'providers.aws-prod.rotateByNewKey[0]' });
  });
});

describe('emulator: UpdateAlias and GetKeyPolicy as the API Reference describes them', () => {
  it('UpdateAlias accepts another spec of the same type and usage, refuses another type or usage', async () => {
    const rsa = async (spec: 'RSA_2048' | 'RSA_3072', usage: 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT') =>
      (await kms.send(new CreateKeyCommand({ KeySpec: spec, KeyUsage: usage }))).KeyMetadata!.KeyId!;
    const a = await rsa('RSA_2048', 'SIGN_VERIFY');
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/sig', TargetKeyId: a }));
    await kms.send(
      new UpdateAliasCommand({ AliasName: 'alias/sig', TargetKeyId: await rsa('RSA_3072', 'SIGN_VERIFY') }),
    );
    const otherUsage = await rsa('RSA_2048', 'ENCRYPT_DECRYPT');
    expect(
      (
        await rejectionOf(
          kms.send(new UpdateAliasCommand({ AliasName: 'alias/sig', TargetKeyId: otherUsage })),
        )
      ).name,
    ).toBe('ValidationException');
    const symmetric = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    expect(
      (
        await rejectionOf(
          kms.send(new UpdateAliasCommand({ AliasName: 'alias/sig', TargetKeyId: symmetric })),
        )
      ).name,
    ).toBe('ValidationException');
  });

  it('GetKeyPolicy returns the policy CreateKey stored, or the default one', async () => {
    const k = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const out = await kms.send(new GetKeyPolicyCommand({ KeyId: k.KeyId }));
    expect(JSON.parse(out.Policy!).Statement[0].Principal.AWS).toBe(`arn:aws:iam::${emu.account}:root`);
    expect(
      (await rejectionOf(kms.send(new GetKeyPolicyCommand({ KeyId: k.KeyId, PolicyName: 'other' })))).name,
    ).toBe('NotFoundException');
    expect((await rejectionOf(kms.send(new CreateKeyCommand({ Policy: '{"no": "statement"}' })))).name).toBe(
      'MalformedPolicyDocumentException',
    );
  });
});
