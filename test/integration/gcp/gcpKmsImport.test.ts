/**
 * BYOK into Cloud KMS through GcpKmsProvider: prepareImport (import-only key and import job,
 * reused while it lives), importMaterial (new primary version), proof that the imported
 * material serves (round trips, a second import and a re-wrap onto it), and bad input:
 * unsupported algorithms, expired jobs, tampered or mis-wrapped blobs, foreign tokens. None of
 * them leaves a usable version behind or moves the primary.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type GcpKmsRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ProviderError, ValidationError } from '../../../shared/core/errors.js';
import type { ImportParameters } from '../../../shared/core/ports/KeyProvider.js';
import { GcpKmsProvider, type GcpKmsProviderOptions } from '../../../shared/providers/gcp/GcpKmsProvider.js';
import type { GcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { rsaAesKeyWrap } from '../../support/byokWrap.js';
import { DAY_MS, emulator, LOCATION, PROJECT, rawClient, rejectionOf } from './helpers.js';

let emu: GcpKmsEmulator;
let p: GcpKmsProvider;
const made: GcpKmsProvider[] = [];
let n = 0;
const ctx = { tenant: 'acme', table: 'orders' };

function provider(opts: Partial<GcpKmsProviderOptions> = {}): GcpKmsProvider {
  const x = new GcpKmsProvider({
    id: 'gcp-byok',
    projects: [PROJECT],
    locations: [LOCATION],
    keyRings: ['byok'],
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    insecure: true,
    libraryRetries: false,
    clock: emu.clock,
    ...opts,
  });
  made.push(x);
  return x;
}

function ref(name: string, ring = 'byok'): GcpKmsRef {
  return parseKeyRef(
    `gcp-kms://projects/${PROJECT}/locations/${LOCATION}/keyRings/${ring}/cryptoKeys/${name}`,
  ) as GcpKmsRef;
}
const fresh = (label: string) => ref(`${label}-${++n}`);

beforeAll(async () => {
  emu = await emulator();
});
beforeEach(() => {
  p = provider();
});
afterAll(async () => {
  for (const x of made) await x.close();
  await emu?.close();
});

/** A DEK wrapped under the current primary, then unwrapped again. */
async function roundTrip(via: GcpKmsProvider, r: GcpKmsRef): Promise<string> {
  const dek = randomBytes(32);
  const w = await via.wrap(r, dek, ctx);
  const back = await via.unwrap(r, w, ctx);
  expect(Buffer.from(back).equals(dek)).toBe(true);
  return w.version;
}

async function importFresh(
  r: GcpKmsRef,
  material = randomBytes(32),
): Promise<{ params: ImportParameters; version: string }> {
  const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
  const v = await p.importMaterial(r, params, rsaAesKeyWrap(params.wrappingPublicKey, material), {});
  return { params, version: v.id };
}

describe('capabilities', () => {
  it('offer rsa-aes-kwp-sha1 only: Cloud KMS has no RSA-OAEP-SHA1 direct import method', () => {
    expect(p.capabilities().import).toEqual({ algorithms: ['rsa-aes-kwp-sha1'] });
  });
});

describe('prepareImport', () => {
  it('creates an import-only key without versions and an import job, returning its wrapping key as SPKI DER', async () => {
    const r = fresh('new');
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    expect(params.algorithm).toBe('rsa-aes-kwp-sha1');
    expect(params.importToken).toMatch(
      new RegExp(
        `^projects/${PROJECT}/locations/${LOCATION}/keyRings/byok/importJobs/rekey-rsa-oaep-3072-sha1-aes-256-software-\\d{8}t\\d{6}z-[0-9a-f]{4}$`,
      ),
    );
    const key = createPublicKey({ key: Buffer.from(params.wrappingPublicKey), format: 'der', type: 'spki' });
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(3072);
    expect(Date.parse(params.expiresAt!) - emu.clock.nowMs()).toBeGreaterThan(3 * DAY_MS - 60_000);
    const [ck] = await rawKey(r);
    expect(ck).toMatchObject({ importOnly: true, primary: null });
  });

  it('reuses an ACTIVE job of the same method and protection level, but not one about to expire', async () => {
    const first = await p.prepareImport(fresh('reuse'), 'rsa-aes-kwp-sha1');
    const jobs = emu.requestCounts.CreateImportJob ?? 0;
    const second = await p.prepareImport(fresh('reuse'), 'rsa-aes-kwp-sha1');
    expect(second.importToken).toBe(first.importToken);
    expect(Buffer.from(second.wrappingPublicKey).equals(Buffer.from(first.wrappingPublicKey))).toBe(true);
    expect(emu.requestCounts.CreateImportJob ?? 0).toBe(jobs);
    emu.clock.advance(3 * DAY_MS - 30 * 60_000);
    const third = await p.prepareImport(fresh('reuse'), 'rsa-aes-kwp-sha1');
    expect(third.importToken).not.toBe(first.importToken);
    expect(emu.requestCounts.CreateImportJob).toBe(jobs + 1);
  });

  it('matches the job to an HSM key, with a 4096-bit wrapping key when configured', async () => {
    const hsm = provider({ createProtection: 'hsm', importRsaBits: 4096 });
    const r = fresh('hsm');
    const params = await hsm.prepareImport(r, 'rsa-aes-kwp-sha1');
    expect(params.importToken).toContain('rsa-oaep-4096-sha1-aes-256-hsm');
    const v = await hsm.importMaterial(
      r,
      params,
      rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32)),
      {},
    );
    expect(await hsm.getKey(r)).toMatchObject({ protection: 'hsm', primaryVersion: v.id });
    await roundTrip(hsm, r);
  });

  it('refuses rsa-oaep-sha1 before calling Cloud KMS', async () => {
    const before = { ...emu.requestCounts };
    const e = await rejectionOf(p.prepareImport(fresh('oaep'), 'rsa-oaep-sha1'));
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.message).toContain('rsa-oaep-sha1');
    expect(emu.requestCounts).toEqual(before);
  });
});

describe('importMaterial', () => {
  it('imports the first material as version 1, primary, and it serves wrap and unwrap', async () => {
    const r = fresh('first');
    const material = randomBytes(32);
    const { version } = await importFresh(r, material);
    expect(version).toBe('1');
    expect(emu.kms.materialOf(`${r.name}/cryptoKeyVersions/1`)?.equals(material)).toBe(true);
    const key = await p.getKey(r);
    expect(key).toMatchObject({
      primaryVersion: '1',
      enabled: true,
      versions: [{ id: '1', state: 'enabled' }],
      gcp: { importOnly: true, billableVersions: 1 },
    });
    expect(await roundTrip(p, r)).toBe('1');
  });

  it('import-only keys are reported imported, without native rotation; a re-import needs a destroyed version', async () => {
    const r = fresh('caps');
    await importFresh(r);
    const key = await p.getKey(r);
    expect(key.imported).toBe(true);
    expect(p.capabilitiesFor(key).autoRotation).toBeUndefined();
    const plain = await p.getKey(parseKeyRef((await p.createKey({ name: `caps-plain-${++n}` })).ref));
    expect(plain.imported).toBeUndefined();
    expect(p.capabilitiesFor(plain).autoRotation).toEqual(p.capabilities().autoRotation);
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const e = await rejectionOf(
      p.importMaterial(r, params, rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32)), {
        reimport: true,
      }),
    );
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.message).toContain('nothing to re-import into');
    expect((await p.getKey(r)).versions).toHaveLength(1);
  });

  it('a second import becomes the primary; DEKs under the first still unwrap and re-wrap onto it', async () => {
    const r = fresh('second');
    await importFresh(r);
    const dek = randomBytes(32);
    const old = await p.wrap(r, dek, ctx);
    expect(old.version).toBe('1');
    const { version } = await importFresh(r);
    expect(version).toBe('2');
    expect((await p.getKey(r)).primaryVersion).toBe('2');
    // The engine's re-wrap on Cloud KMS: unwrap under the old version, wrap under the primary.
    const plain = await p.unwrap(r, old, ctx);
    const moved = await p.wrap(r, plain, ctx);
    plain.fill(0);
    expect(moved.version).toBe('2');
    expect(Buffer.from(await p.unwrap(r, moved, ctx)).equals(dek)).toBe(true);
    expect(Buffer.from(await p.unwrap(r, old, ctx)).equals(dek)).toBe(true);
  });

  it('imports into an existing key made by Cloud KMS, next to its generated version', async () => {
    const created = await p.createKey({ name: `plain-${++n}` });
    const r = parseKeyRef(created.ref) as GcpKmsRef;
    const { version } = await importFresh(r);
    expect(version).toBe('2');
    const key = await p.getKey(r);
    expect(key.primaryVersion).toBe('2');
    expect(key.versions.map((v) => v.id)).toEqual(['1', '2']);
    expect(key.gcp.importOnly).toBe(false);
    await roundTrip(p, r);
  });

  it('a tampered blob or one wrapped with the wrong OAEP hash fails IMPORT_FAILED: no usable version, primary unchanged', async () => {
    const r = fresh('bad');
    await importFresh(r);
    const before = await p.getKey(r);
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const tampered = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32));
    tampered[10]! ^= 0x01;
    const sha256 = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32), 'sha256');
    for (const blob of [tampered, sha256]) {
      const e = await rejectionOf(p.importMaterial(r, params, blob, {}));
      expect(e).toBeInstanceOf(ProviderError);
      expect((e as unknown as ProviderError).providerCode).toBe('IMPORT_FAILED');
      expect((e as unknown as ProviderError).retryable).toBe(false);
      expect(e.message).toMatch(/could not import the material into version \d+: .*could not be unwrapped/);
    }
    const after = await p.getKey(r);
    expect(after.primaryVersion).toBe(before.primaryVersion);
    expect(after.versions).toEqual(before.versions);
    expect(after.gcp.billableVersions).toBe(before.gcp.billableVersions);
    await roundTrip(p, r);
  });

  it('a blob of the wrong length is refused by Cloud KMS up front, creating nothing', async () => {
    const r = fresh('short');
    await importFresh(r);
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const blob = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(48));
    const e = await rejectionOf(p.importMaterial(r, params, blob, {}));
    expect((e as unknown as ProviderError).providerCode).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain('Wrapped key has invalid length');
    expect((await p.getKey(r)).versions.map((v) => v.id)).toEqual(['1']);
    const [raw] = await rawVersions(r);
    expect(raw).toHaveLength(1);
  });

  it('an expired import job is refused: locally when its expiry is known, by Cloud KMS otherwise', async () => {
    const r = fresh('late');
    await importFresh(r);
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const blob = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32));
    emu.clock.advance(3 * DAY_MS);
    const before = { ...emu.requestCounts };
    const local = await rejectionOf(p.importMaterial(r, params, blob, {}));
    expect(local).toBeInstanceOf(ValidationError);
    expect(local.message).toContain('expired');
    expect(emu.requestCounts.ImportCryptoKeyVersion).toBe(before.ImportCryptoKeyVersion);
    const remote = await rejectionOf(p.importMaterial(r, { ...params, expiresAt: null }, blob, {}));
    expect((remote as unknown as ProviderError).providerCode).toBe('FAILED_PRECONDITION');
    expect(remote.message).toContain('EXPIRED');
    expect((await p.getKey(r)).versions.map((v) => v.id)).toEqual(['1']);
    // A new preparation gives a live job again.
    const again = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    expect(again.importToken).not.toBe(params.importToken);
    await p.importMaterial(r, again, rsaAesKeyWrap(again.wrappingPublicKey, randomBytes(32)), {});
  });

  it('refuses bad parameters before calling Cloud KMS', async () => {
    const r = fresh('params');
    const params = await p.prepareImport(r, 'rsa-aes-kwp-sha1');
    const blob = rsaAesKeyWrap(params.wrappingPublicKey, randomBytes(32));
    const before = { ...emu.requestCounts };
    const bad: [ImportParameters, Uint8Array, { expiresAt?: string }, string][] = [
      [{ ...params, algorithm: 'rsa-oaep-sha1' }, blob, {}, 'rsa-oaep-sha1'],
      [params, blob, { expiresAt: '2030-01-01T00:00:00Z' }, 'cannot expire'],
      [{ ...params, importToken: 'arn:aws:kms:token' }, blob, {}, 'not an import job name'],
      [
        {
          ...params,
          importToken: params.importToken.replace(`/locations/${LOCATION}/`, '/locations/us-east1/'),
        },
        blob,
        {},
        "not in the key's project and location",
      ],
      [params, new Uint8Array(0), {}, 'empty'],
    ];
    for (const [prm, b, o, words] of bad) {
      const e = await rejectionOf(p.importMaterial(r, prm, b, o));
      expect(e).toBeInstanceOf(ValidationError);
      expect(e.message).toContain(words);
    }
    expect(emu.requestCounts).toEqual(before);
  });
});

async function rawKey(r: GcpKmsRef) {
  const c = rawClient(emu);
  try {
    return await c.getCryptoKey({ name: r.name });
  } finally {
    await c.close();
  }
}

async function rawVersions(r: GcpKmsRef) {
  const c = rawClient(emu);
  try {
    return await c.listCryptoKeyVersions({ parent: r.name });
  } finally {
    await c.close();
  }
}
