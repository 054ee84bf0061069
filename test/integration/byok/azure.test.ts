/**
 * BYOK from a real SoftHSM2 token into a Managed HSM (the Key Vault emulator, through the
 * official SDK): the importKey use case with the PKCS#11 material source, byte-for-byte proof
 * that the Managed HSM holds the HSM's material, a second import onto which DEKs move, an
 * expiry, and bad input (a vault target, an expired KEK, a tampered blob, a missing source)
 * that adds no version.
 */
import { constants, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../shared/core/audit/auditLog.js';
import { type AzureKvRef, type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { NotFoundError, type ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { KeyMaterialSource, KeyProvider } from '../../../shared/core/ports/KeyProvider.js';
import { importKey } from '../../../shared/core/usecases/byok.js';
import type { RekeyContext } from '../../../shared/core/usecases/context.js';
import type { AzureKeyVaultProvider } from '../../../shared/providers/azure/AzureKeyVaultProvider.js';
import {
  type ByokSource,
  createByokSource,
  generateByokKey,
} from '../../../shared/providers/pkcs11/export.js';
import { Pkcs11Provider } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { type SoftHsm, startSoftHsm } from '../../support/softhsm.js';
import { certificates, emulator, HSM, provider, sdkClient, VAULT } from '../azure/helpers.js';

const HOUR = 3_600_000;

let hsm: SoftHsm;
let token: Pkcs11Provider;
let source: ByokSource;
let emu: AzureKeyVaultEmulator;
let azure: AzureKeyVaultProvider;
let state: SqliteStateStore;
let clock: ManualClock;
let ctx: RekeyContext;
let n = 0;

beforeAll(async () => {
  hsm = await startSoftHsm({ label: 'byok' });
  token = await Pkcs11Provider.open({ id: 'hsm', module: hsm.module, token: hsm.label, pin: hsm.pin });
  source = createByokSource(token);
  emu = await emulator();
});
afterAll(async () => {
  await token?.close();
  await hsm?.cleanup();
  await emu?.close();
  certificates().cleanup();
});
beforeEach(() => {
  clock = new ManualClock(emu.clock.now().toISOString());
  azure = provider(emu, { id: 'azure-test', clock: emu.clock, kekKeySize: 2048 });
  state = SqliteStateStore.open(':memory:');
  ctx = {
    config: loadConfig(
      `version: 1\nproviders:\n  azure-test: { type: azure-kv, vaults: [${VAULT}, ${HSM}] }\n`,
      't.yaml',
    ),
    providers: new Map<string, KeyProvider>([['azure-test', azure]]),
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
  await azure.close();
  await state.close?.();
});

const target = (label: string, host = HSM) =>
  parseKeyRef(`azure-kv://${host}/keys/${label}-${randomBytes(2).toString('hex')}${++n}`) as AzureKvRef;

async function materialInHsm(ref: KeyRef): Promise<Buffer> {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const wrapped = await source.exportWrapped(
    ref,
    pair.publicKey.export({ type: 'spki', format: 'der' }),
    'rsa-oaep-sha1',
  );
  return privateDecrypt(
    { key: pair.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
    wrapped,
  );
}

function sameMaterial(r: AzureKvRef, version: string, inHsm: Buffer): boolean {
  const inVault = emu.vaults.get(HSM)!.materialOf(r.name, version);
  const same = inVault?.equals(inHsm) === true;
  inVault?.fill(0);
  inHsm.fill(0);
  return same;
}

async function rejectionOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

describe('import from the HSM into a Managed HSM', () => {
  it('makes an oct-HSM key holding exactly the HSM material; it wraps and unwraps DEKs', async () => {
    const r = target('orders');
    const material = await generateByokKey(token, { label: `az-orders-${n}` });
    const result = await importKey(ctx, { source, sourceRef: material, target: azure, targetRef: r });
    expect(result).toMatchObject({
      algorithm: 'rsa-aes-kwp-sha1',
      targetRef: r.uri,
      sourceRef: material.uri,
    });
    expect(sameMaterial(r, result.version.id, await materialInHsm(material))).toBe(true);
    const key = await azure.getKey(r);
    expect(key).toMatchObject({
      primaryVersion: result.version.id,
      algorithm: 'AES_256',
      protection: 'hsm',
      azure: { keyType: 'oct-HSM' },
    });
    const dek = randomBytes(32);
    const w = await azure.wrap(r, dek, { t: '1' });
    expect(Buffer.from(await azure.unwrap(r, w, { t: '1' })).equals(dek)).toBe(true);
    const audit = await state.auditRead(0, 1000);
    expect(audit.map((a) => a.action)).toContain('key.imported');
    expect(JSON.stringify(audit)).not.toContain(dek.toString('base64'));
  });

  it('a second import is the primary with the key tags; DEKs under the first move onto it', async () => {
    const r = target('second');
    const first = await importKey(ctx, {
      source,
      sourceRef: await generateByokKey(token, { label: `az-second-a-${n}` }),
      target: azure,
      targetRef: r,
    });
    await sdkClient(emu, HSM).updateKeyProperties(r.name, first.version.id, { tags: { team: 'payments' } });
    const dek = randomBytes(32);
    const old = await azure.wrap(r, dek, {});
    const nextSrc = await generateByokKey(token, { label: `az-second-b-${n}` });
    const second = await importKey(ctx, { source, sourceRef: nextSrc, target: azure, targetRef: r });
    expect(sameMaterial(r, second.version.id, await materialInHsm(nextSrc))).toBe(true);
    const key = await azure.getKey(r);
    expect(key.primaryVersion).toBe(second.version.id);
    expect(key.tags).toEqual({ team: 'payments' });
    const plain = await azure.unwrap(r, old, {});
    const moved = await azure.wrap(r, plain, {});
    plain.fill(0);
    expect(moved.version).toBe(second.version.id);
    expect(Buffer.from(await azure.unwrap(r, moved, {})).equals(dek)).toBe(true);
  });

  it('an expiry becomes the version expiry', async () => {
    const r = target('expiring');
    const expiresAt = new Date(emu.clock.nowMs() + 90 * 24 * HOUR).toISOString().replace(/\.\d+Z$/, '.000Z');
    const result = await importKey(ctx, {
      source,
      sourceRef: await generateByokKey(token, { label: `az-exp-${n}` }),
      target: azure,
      targetRef: r,
      expiresAt,
    });
    expect(result.expiresAt).toBe(expiresAt);
    expect((await azure.getKey(r)).azure.expiresOn).toBe(expiresAt);
  });
});

describe('bad input adds no version', () => {
  function slowSource(hours: number): KeyMaterialSource {
    return {
      exportWrapped: async (ref, pub, alg) => {
        emu.clock.advance(hours * HOUR);
        return source.exportWrapped(ref, pub, alg);
      },
    };
  }

  it('a vault target: AES material goes only into a Managed HSM; nothing is asked of the HSM', async () => {
    const material = await generateByokKey(token, { label: `az-vault-${n}` });
    const e = await rejectionOf(
      importKey(ctx, { source, sourceRef: material, target: azure, targetRef: target('v', VAULT) }),
    );
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.message).toContain('only into a Managed HSM');
    const last = (await state.auditRead(0, 1000)).at(-1)!;
    expect(last).toMatchObject({ action: 'key.import_failed', details: { step: 'prepareImport' } });
  });

  it('an expired key exchange key: refused, audited, no key', async () => {
    const r = target('late');
    const material = await generateByokKey(token, { label: `az-late-${n}` });
    const e = await rejectionOf(
      importKey(ctx, { source: slowSource(25), sourceRef: material, target: azure, targetRef: r }),
    );
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.message).toMatch(/expired/);
    expect(emu.vaults.get(HSM)!.versionCount(r.name)).toBe(0);
  });

  it('a tampered blob is a 400 from Key Vault; a missing source key fails at export', async () => {
    const r = target('tampered');
    const material = await generateByokKey(token, { label: `az-tamper-${n}` });
    const params = await azure.prepareImport(r, 'rsa-aes-kwp-sha1');
    const wrapped = await source.exportWrapped(material, params.wrappingPublicKey, 'rsa-aes-kwp-sha1');
    wrapped[wrapped.length - 3]! ^= 0x40;
    const e = await rejectionOf(azure.importMaterial(r, params, wrapped, {}));
    expect((e as ProviderError).providerCode).toBe('BadParameter');
    expect(emu.vaults.get(HSM)!.versionCount(r.name)).toBe(0);
    const missing = await rejectionOf(
      importKey(ctx, {
        source,
        sourceRef: parseKeyRef('pkcs11:token=byok;object=no-such-key'),
        target: azure,
        targetRef: r,
      }),
    );
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(emu.vaults.get(HSM)!.versionCount(r.name)).toBe(0);
  });

  it('re-import is refused: Key Vault never removes material from a version', async () => {
    const r = target('reimport');
    const material = await generateByokKey(token, { label: `az-re-${n}` });
    await importKey(ctx, { source, sourceRef: material, target: azure, targetRef: r });
    const e = await rejectionOf(
      importKey(ctx, { source, sourceRef: material, target: azure, targetRef: r, reimport: true }),
    );
    expect(e).toBeInstanceOf(ValidationError);
    expect(emu.vaults.get(HSM)!.versionCount(r.name)).toBe(1);
  });
});
