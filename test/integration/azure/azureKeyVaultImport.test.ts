/**
 * BYOK into a Managed HSM through AzureKeyVaultProvider: prepareImport (a key exchange key per
 * target key, reused while it lives, never listed as a managed key), importMaterial (a new
 * oct-HSM key or version that becomes the primary, keeping the key's tags), proof that the
 * imported material serves (a DEK wrapped locally with it unwraps through the provider; a
 * second import and a re-wrap onto it), and bad input that changes nothing.
 */
import { createCipheriv, createPublicKey, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AzureKvRef, type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ConflictError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import type { ImportParameters } from '../../../shared/core/ports/KeyProvider.js';
import type { AzureKeyVaultProvider } from '../../../shared/providers/azure/AzureKeyVaultProvider.js';
import { kekNameFor } from '../../../shared/providers/azure/byok.js';
import { encodePayload } from '../../../shared/providers/azure/wrapFormat.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { rsaAesKeyWrap } from '../../support/byokWrap.js';
import { certificates, emulator, HSM, provider, sdkClient, VAULT } from './helpers.js';

let emu: AzureKeyVaultEmulator;
let p: AzureKeyVaultProvider;
let n = 0;
const ctx = { tenant: 'acme', table: 'orders' };
const HOUR = 3_600_000;

const hsmRef = (label: string) =>
  parseKeyRef(`azure-kv://${HSM}/keys/${label}-${randomBytes(3).toString('hex')}${++n}`) as AzureKvRef;

beforeAll(async () => {
  emu = await emulator();
  p = provider(emu, { clock: emu.clock });
});
afterAll(async () => {
  await p?.close();
  await emu?.close();
  certificates().cleanup();
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

async function importFresh(r: KeyRef, material = randomBytes(32), opts: { expiresAt?: string } = {}) {
  const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
  const v = await p.importMaterial(r, params, rsaAesKeyWrap(params.wrappingPublicKey, material), opts);
  return { params, version: v.id };
}

async function roundTrip(r: KeyRef): Promise<string> {
  const dek = randomBytes(32);
  const w = await p.wrap(r, dek, ctx);
  expect(Buffer.from(await p.unwrap(r, w, ctx)).equals(dek)).toBe(true);
  return w.version;
}

/** What A256KW gives for rekey's payload under `material`: a ciphertext made without Key Vault. */
function wrapLocally(material: Buffer, dek: Buffer): Uint8Array {
  const payload = encodePayload(dek, ctx);
  const c = createCipheriv('id-aes256-wrap', material, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  const out = Buffer.concat([c.update(payload), c.final()]);
  payload.fill(0);
  return out;
}

describe('capabilities', () => {
  it('offer rsa-aes-kwp-sha1 where a Managed HSM is configured, nothing for vaults alone', () => {
    expect(p.capabilities().import).toEqual({ algorithms: ['rsa-aes-kwp-sha1'] });
    const vaultOnly = provider(emu, { vaults: [VAULT], endpoints: { [VAULT]: emu.endpoints[VAULT]! } });
    expect(vaultOnly.capabilities().import).toBeUndefined();
  });
});

describe('prepareImport', () => {
  it('creates byok-kek-<key> (RSA-HSM 3072, import only, expiring in 24 h) and hands out its public key and id', async () => {
    const r = hsmRef('new');
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    expect(params.importToken).toMatch(new RegExp(`/keys/byok-kek-${r.name}/[0-9a-f]{32}$`));
    const pub = createPublicKey({ key: Buffer.from(params.wrappingPublicKey), format: 'der', type: 'spki' });
    expect(pub.asymmetricKeyDetails?.modulusLength).toBe(3072);
    expect(Date.parse(params.expiresAt!) - emu.clock.nowMs()).toBeGreaterThan(23 * HOUR);
    const kek = await sdkClient(emu, HSM).getKey(kekNameFor(r.name));
    expect(kek).toMatchObject({ keyType: 'RSA-HSM', keyOperations: ['import'] });
    expect(kek.properties.tags).toEqual({ 'rekey-byok-target': r.name });
  });

  it('reuses the KEK while it has more than an hour left, then makes a new version of it', async () => {
    const r = hsmRef('reuse');
    const first = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const again = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    expect(again.importToken).toBe(first.importToken);
    emu.clock.advance(23.5 * HOUR);
    const later = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    expect(later.importToken).not.toBe(first.importToken);
    expect(later.importToken.slice(0, later.importToken.lastIndexOf('/'))).toBe(
      first.importToken.slice(0, first.importToken.lastIndexOf('/')),
    );
  });

  it('names KEKs of long key names by a digest, within 127 characters', () => {
    expect(kekNameFor('orders')).toBe('byok-kek-orders');
    const long = 'k'.repeat(127);
    expect(kekNameFor(long)).toMatch(/^byok-kek-[0-9a-f]{32}$/);
    expect(kekNameFor(long)).not.toBe(kekNameFor(`${'k'.repeat(126)}j`));
  });

  it('refuses a vault key, rsa-oaep-sha1, and a KEK name held by another kind of key', async () => {
    const before = { ...emu.requests };
    const vault = parseKeyRef(`azure-kv://${VAULT}/keys/plain-${++n}`);
    const v = await rejection(p.prepareImport(vault, 'rsa-aes-kwp-sha1'));
    expect(v).toBeInstanceOf(ValidationError);
    expect(v.message).toContain('only into a Managed HSM');
    const oaep = await rejection(p.prepareImport(hsmRef('oaep'), 'rsa-oaep-sha1'));
    expect(oaep).toBeInstanceOf(ValidationError);
    expect(oaep.message).toContain('rsa-oaep-sha1');
    expect(emu.requests).toEqual(before);
    const r = hsmRef('squat');
    await sdkClient(emu, HSM).createKey(kekNameFor(r.name), 'oct-HSM');
    expect(await rejection(p.prepareImport(r, 'rsa-aes-kwp-sha1'))).toBeInstanceOf(ConflictError);
  });
});

describe('importMaterial', () => {
  it('imports a new oct-HSM key: primary, AES_256 hsm, and a DEK wrapped locally with the material unwraps through it', async () => {
    const r = hsmRef('first');
    const material = randomBytes(32);
    const { version } = await importFresh(r, material);
    expect(emu.vaults.get(HSM)!.materialOf(r.name, version)?.equals(material)).toBe(true);
    const key = await p.getKey(r);
    expect(key).toMatchObject({
      primaryVersion: version,
      protection: 'hsm',
      algorithm: 'AES_256',
      azure: { kind: 'managedhsm', keyType: 'oct-HSM' },
    });
    expect(await roundTrip(r)).toBe(version);
    const dek = randomBytes(32);
    const local = { version, ciphertext: wrapLocally(material, dek) };
    expect(Buffer.from(await p.unwrap(r, local, ctx)).equals(dek)).toBe(true);
  });

  it('a second import is the new primary, keeps the tags; DEKs under the first still unwrap and re-wrap onto it', async () => {
    const r = hsmRef('second');
    const { version: v1 } = await importFresh(r);
    await sdkClient(emu, HSM).updateKeyProperties(r.name, v1, { tags: { team: 'payments' } });
    const dek = randomBytes(32);
    const old = await p.wrap(r, dek, ctx);
    const { version: v2 } = await importFresh(r);
    expect(v2).not.toBe(v1);
    const key = await p.getKey(r);
    expect(key.primaryVersion).toBe(v2);
    expect(key.tags).toEqual({ team: 'payments' });
    expect(key.versions.map((v) => v.id).sort()).toEqual([v1, v2].sort());
    const plain = await p.unwrap(r, old, ctx);
    const moved = await p.wrap(r, plain, ctx);
    plain.fill(0);
    expect(moved.version).toBe(v2);
    expect(Buffer.from(await p.unwrap(r, moved, ctx)).equals(dek)).toBe(true);
  });

  it('sets the version expiry from expiresAt', async () => {
    const r = hsmRef('expiry');
    const at = new Date(emu.clock.nowMs() + 90 * 24 * HOUR);
    await importFresh(r, randomBytes(32), { expiresAt: at.toISOString() });
    expect((await p.getKey(r)).azure.expiresOn).toBe(
      new Date(Math.floor(at.getTime() / 1000) * 1000).toISOString(),
    );
  });

  it('KEKs are not inventoried: nothing to rotate or re-wrap there', async () => {
    const r = hsmRef('listed');
    await importFresh(r);
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await p.listKeys({}, cursor);
      names.push(...page.items.map((k) => k.name));
      cursor = page.cursor;
    } while (cursor);
    expect(names).toContain(r.name);
    expect(names).not.toContain(kekNameFor(r.name));
    // It is still there, for the next import.
    expect((await sdkClient(emu, HSM).getKey(kekNameFor(r.name))).keyOperations).toEqual(['import']);
  });

  it('a tampered blob, or one wrapped with the wrong OAEP hash, is refused (400) and adds no version', async () => {
    const r = hsmRef('bad');
    await importFresh(r);
    const before = await p.getKey(r);
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const tampered = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32));
    tampered[tampered.length - 1]! ^= 0x01;
    for (const blob of [tampered, rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32), 'sha256')]) {
      const e = await rejection(p.importMaterial(r, params, blob, {}));
      expect(e).toBeInstanceOf(ProviderError);
      expect((e as ProviderError).providerCode).toBe('BadParameter');
      expect((e as ProviderError).retryable).toBe(false);
      expect(e.message).toContain('could not be unwrapped');
    }
    const after = await p.getKey(r);
    expect(after.primaryVersion).toBe(before.primaryVersion);
    expect(after.versions).toEqual(before.versions);
  });

  it('an expired KEK is refused: locally when its expiry is known, by Key Vault otherwise', async () => {
    const r = hsmRef('late');
    await importFresh(r);
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const blob = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32));
    emu.clock.advance(25 * HOUR);
    const before = emu.requests.importKey;
    const local = await rejection(p.importMaterial(r, params, blob, {}));
    expect(local).toBeInstanceOf(ValidationError);
    expect(local.message).toContain('expired');
    expect(emu.requests.importKey).toBe(before);
    const remote = await rejection(p.importMaterial(r, { ...params, expiresAt: null }, blob, {}));
    expect((remote as ProviderError).providerCode).toBe('BadParameter');
    expect(remote.message).toMatch(/expired at/);
    expect((await p.getKey(r)).versions).toHaveLength(1);
  });

  it('refuses bad parameters before calling Key Vault', async () => {
    const r = hsmRef('params');
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const blob = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32));
    const before = { ...emu.requests };
    const cases: [KeyRef, ImportParameters, Uint8Array, { expiresAt?: string }, string][] = [
      [r, { ...params, algorithm: 'rsa-oaep-sha1' }, blob, {}, 'rsa-oaep-sha1'],
      [
        r,
        { ...params, importToken: 'projects/p/locations/l/keyRings/r/importJobs/j' },
        blob,
        {},
        'not the id of a key exchange key',
      ],
      [
        r,
        { ...params, importToken: `https://elsewhere.managedhsm.azure.net/keys/k/${'a'.repeat(32)}` },
        blob,
        {},
        'not the id',
      ],
      [r, params, new Uint8Array(0), {}, 'empty'],
      [r, params, blob, { expiresAt: 'tomorrow' }, 'not a future date'],
      [parseKeyRef(`azure-kv://${VAULT}/keys/v-${++n}`), params, blob, {}, 'only into a Managed HSM'],
    ];
    for (const [ref, prm, b, o, words] of cases) {
      const e = await rejection(p.importMaterial(ref, prm, b, o));
      expect(e, words).toBeInstanceOf(ValidationError);
      expect(e.message).toContain(words);
    }
    expect(emu.requests).toEqual(before);
  });
});
