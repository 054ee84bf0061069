/**
 * Key import on the Cloud KMS emulator, through the unmodified KeyManagementServiceClient:
 * import jobs (generation, public key, expiry after three days, listing), ImportCryptoKeyVersion
 * for every RSA import method, the errors the service gives before unwrapping (status codes,
 * no version created) and after (IMPORT_FAILED with a reason), import-only keys, and
 * re-import into a destroyed version.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import type { KeyManagementServiceClient, protos } from '@google-cloud/kms';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { kwpWrap, rsaAesKeyWrap, rsaOaepWrap } from '../../support/byokWrap.js';
import { DAY_MS, emulator, LOCATION_NAME, rawClient, rejectionOf } from './helpers.js';

type IImportJob = protos.google.cloud.kms.v1.IImportJob;
type IVersion = protos.google.cloud.kms.v1.ICryptoKeyVersion;
const NO_RETRY = { retry: null } as const;

let emu: GcpKmsEmulator;
let kms: KeyManagementServiceClient;
let ring: string;
let n = 0;

beforeAll(async () => {
  emu = await emulator();
  kms = rawClient(emu);
  const [r] = await kms.createKeyRing({ parent: LOCATION_NAME, keyRingId: 'imports', keyRing: {} });
  ring = r.name!;
});
afterAll(async () => {
  await kms?.close();
  await emu?.close();
});

async function codeOf(p: Promise<unknown>): Promise<number | undefined> {
  return (await rejectionOf(p)).code;
}

async function newJob(importMethod: string, protectionLevel = 'SOFTWARE'): Promise<IImportJob> {
  n += 1;
  const [job] = await kms.createImportJob({
    parent: ring,
    importJobId: `job-${n}`,
    importJob: {
      importMethod: importMethod as 'RSA_OAEP_3072_SHA1_AES_256',
      protectionLevel: protectionLevel as 'HSM',
    },
  });
  return job;
}

/** Polls GetImportJob until the wrapping key exists. */
async function active(job: IImportJob): Promise<IImportJob> {
  for (let i = 0; i < 600; i++) {
    const [j] = await kms.getImportJob({ name: job.name! });
    if (j.state !== 'PENDING_GENERATION') return j;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`import job ${job.name} never became ACTIVE`);
}

async function newKey(opts: { importOnly?: boolean; protectionLevel?: string } = {}): Promise<string> {
  n += 1;
  const [key] = await kms.createCryptoKey({
    parent: ring,
    cryptoKeyId: `ik-${n}`,
    skipInitialVersionCreation: opts.importOnly === true,
    cryptoKey: {
      purpose: 'ENCRYPT_DECRYPT',
      importOnly: opts.importOnly === true,
      versionTemplate: {
        algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
        protectionLevel: (opts.protectionLevel ?? 'SOFTWARE') as 'HSM',
      },
    },
  });
  return key.name!;
}

const spki = (job: IImportJob) => createPublicKey(job.publicKey!.pem!);

async function importInto(
  key: string,
  job: IImportJob,
  wrappedKey: Buffer,
  extra: Record<string, unknown> = {},
) {
  const [v] = await kms.importCryptoKeyVersion({
    parent: key,
    importJob: job.name!,
    algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
    wrappedKey,
    ...extra,
  });
  return v;
}

/** The version once the import has finished (PENDING_IMPORT never outlives the next request). */
async function settled(v: IVersion): Promise<IVersion> {
  const [got] = await kms.getCryptoKeyVersion({ name: v.name! });
  return got;
}

async function roundTrip(key: string, version: string): Promise<void> {
  const plaintext = randomBytes(48);
  const [enc] = await kms.encrypt({ name: version, plaintext });
  const [dec] = await kms.decrypt({ name: key, ciphertext: enc.ciphertext });
  expect(Buffer.from(dec.plaintext as Uint8Array).equals(plaintext)).toBe(true);
}

let sha1Job: IImportJob;

describe('import jobs', () => {
  it('are PENDING_GENERATION, then ACTIVE with a PEM wrapping key of the method size, expiring three days after creation', async () => {
    const created = await newJob('RSA_OAEP_3072_SHA1_AES_256', 'HSM');
    expect(created.state).toBe('PENDING_GENERATION');
    expect(created.publicKey).toBeNull();
    expect(Number(created.expireTime!.seconds) - Number(created.createTime!.seconds)).toBe(3 * 86_400);
    const job = await active(created);
    expect(job).toMatchObject({
      state: 'ACTIVE',
      importMethod: 'RSA_OAEP_3072_SHA1_AES_256',
      protectionLevel: 'HSM',
      expireEventTime: null,
    });
    expect(job.generateTime).not.toBeNull();
    expect(job.publicKey!.pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const key = spki(job);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(3072);
    sha1Job = await active(await newJob('RSA_OAEP_3072_SHA1_AES_256'));
  });

  it('are listed per key ring, filtered by state, method and protection level', async () => {
    const [all] = await kms.listImportJobs({ parent: ring });
    expect(all.map((j) => j.name)).toEqual(expect.arrayContaining([sha1Job.name]));
    const [hsm] = await kms.listImportJobs({ parent: ring, filter: 'protection_level = HSM' });
    expect(hsm.length).toBeGreaterThan(0);
    expect(hsm.every((j) => j.protectionLevel === 'HSM')).toBe(true);
    const [activeSoftware] = await kms.listImportJobs({
      parent: ring,
      filter: 'state = ACTIVE AND import_method = RSA_OAEP_3072_SHA1_AES_256 AND protection_level = SOFTWARE',
    });
    expect(activeSoftware.map((j) => j.name)).toContain(sha1Job.name);
  });

  it('refuse a missing method or protection level, ALREADY_EXISTS a reused id, NOT_FOUND an unknown job', async () => {
    expect(
      await codeOf(
        kms.createImportJob({ parent: ring, importJobId: 'nomethod', importJob: { protectionLevel: 'HSM' } }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    expect(
      await codeOf(
        kms.createImportJob({
          parent: ring,
          importJobId: 'noprot',
          importJob: { importMethod: 'RSA_OAEP_3072_SHA1_AES_256' },
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    const id = sha1Job.name!.slice(sha1Job.name!.lastIndexOf('/') + 1);
    expect(
      await codeOf(
        kms.createImportJob({
          parent: ring,
          importJobId: id,
          importJob: { importMethod: 'RSA_OAEP_3072_SHA1_AES_256', protectionLevel: 'SOFTWARE' },
        }),
      ),
    ).toBe(status.ALREADY_EXISTS);
    expect(await codeOf(kms.getImportJob({ name: `${ring}/importJobs/none` }))).toBe(status.NOT_FOUND);
    expect(await codeOf(kms.getImportJob({ name: `${ring}/importJob/x` }))).toBe(status.INVALID_ARGUMENT);
  });
});

describe('ImportCryptoKeyVersion', () => {
  it.each([
    ['RSA_OAEP_3072_SHA1_AES_256', (job: IImportJob, m: Buffer) => rsaAesKeyWrap(spki(job), m, 'sha1')],
    ['RSA_OAEP_3072_SHA256_AES_256', (job: IImportJob, m: Buffer) => rsaAesKeyWrap(spki(job), m, 'sha256')],
    ['RSA_OAEP_3072_SHA256', (job: IImportJob, m: Buffer) => rsaOaepWrap(spki(job), m, 'sha256')],
  ])(
    'imports 32 bytes wrapped with %s: PENDING_IMPORT, then ENABLED with the job and import time',
    async (method, wrap) => {
      const job = method === 'RSA_OAEP_3072_SHA1_AES_256' ? sha1Job : await active(await newJob(method));
      const key = await newKey();
      const v = await importInto(key, job, wrap(job, randomBytes(32)));
      expect(v.name).toBe(`${key}/cryptoKeyVersions/2`);
      expect(v.state).toBe('PENDING_IMPORT');
      const done = await settled(v);
      expect(done).toMatchObject({
        state: 'ENABLED',
        importJob: job.name,
        importFailureReason: '',
        reimportEligible: true,
        generateTime: null,
        algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
      });
      expect(done.importTime).not.toBeNull();
      await roundTrip(key, done.name!);
    },
  );

  it('imports with a 4096-bit wrapping key, and accepts the legacy rsa_aes_wrapped_key field', async () => {
    const job = await active(await newJob('RSA_OAEP_4096_SHA1_AES_256'));
    expect(spki(job).asymmetricKeyDetails?.modulusLength).toBe(4096);
    const key = await newKey();
    const [created] = await kms.importCryptoKeyVersion({
      parent: key,
      importJob: job.name!,
      algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
      rsaAesWrappedKey: rsaAesKeyWrap(spki(job), randomBytes(32)),
    });
    const v = await settled(created);
    expect(v.state).toBe('ENABLED');
    await roundTrip(key, v.name!);
  });

  it('rejects wrapped keys of the wrong length before unwrapping: INVALID_ARGUMENT, no version created', async () => {
    const key = await newKey({ importOnly: true });
    const rsa = rsaOaepWrap(spki(sha1Job), randomBytes(32));
    const cases: [Buffer, string][] = [
      [rsa.subarray(0, 100), 'too short'],
      [Buffer.concat([rsa, randomBytes(41)]), '64-bit blocks'],
      [Buffer.concat([rsa, kwpWrap(randomBytes(32), randomBytes(48))]), 'invalid length'],
    ];
    for (const [wrapped, words] of cases) {
      const e = await rejectionOf(importInto(key, sha1Job, wrapped));
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.details).toContain(words);
    }
    const direct = await active(await newJob('RSA_OAEP_3072_SHA256'));
    expect(await codeOf(importInto(key, direct, Buffer.concat([rsa, Buffer.alloc(8)])))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(await codeOf(importInto(key, sha1Job, Buffer.alloc(0)))).toBe(status.INVALID_ARGUMENT);
    expect(
      await codeOf(
        kms.importCryptoKeyVersion({
          parent: key,
          importJob: sha1Job.name!,
          algorithm: 'RSA_SIGN_PSS_2048_SHA256',
          wrappedKey: rsaAesKeyWrap(spki(sha1Job), randomBytes(32)),
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    const [versions] = await kms.listCryptoKeyVersions({ parent: key });
    expect(versions).toEqual([]);
  });

  it('ends IMPORT_FAILED with a reason when the material cannot be unwrapped: tampered, wrong OAEP hash, wrong size', async () => {
    const key = await newKey();
    const tampered = rsaAesKeyWrap(spki(sha1Job), randomBytes(32));
    tampered[tampered.length - 3]! ^= 0x10;
    const wrongHash = rsaAesKeyWrap(spki(sha1Job), randomBytes(32), 'sha256');
    // 28 bytes pad to the same 40-byte KWP block as 32: only unwrapping finds the size wrong.
    const wrongSize = rsaAesKeyWrap(spki(sha1Job), randomBytes(28));
    for (const wrapped of [tampered, wrongHash, wrongSize]) {
      const v = await settled(await importInto(key, sha1Job, wrapped));
      expect(v.state).toBe('IMPORT_FAILED');
      expect(v.importFailureReason).toMatch(/could not be unwrapped/);
      expect(await codeOf(kms.encrypt({ name: v.name!, plaintext: Buffer.from('x') }))).toBe(
        status.FAILED_PRECONDITION,
      );
      expect(
        await codeOf(
          kms.updateCryptoKeyPrimaryVersion({ name: key, cryptoKeyVersionId: v.name!.split('/').pop()! }),
        ),
      ).toBe(status.FAILED_PRECONDITION);
    }
    // The key's own version is still the primary.
    const [ck] = await kms.getCryptoKey({ name: key });
    expect(ck.primary?.name).toBe(`${key}/cryptoKeyVersions/1`);
    // A failed version can take the import again.
    const retry = await settled(
      await importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), randomBytes(32)), {
        cryptoKeyVersion: `${key}/cryptoKeyVersions/2`,
      }),
    );
    expect(retry).toMatchObject({
      name: `${key}/cryptoKeyVersions/2`,
      state: 'ENABLED',
      importFailureReason: '',
    });
  });

  it('FAILED_PRECONDITION for a job still generating, a job of another protection level, and an expired job', async () => {
    const key = await newKey();
    emu.kms.holdImportJobGeneration(true);
    const pending = await newJob('RSA_OAEP_3072_SHA1_AES_256');
    try {
      // Nothing can be wrapped for it yet; any well-formed blob shows the state check.
      const early = await rejectionOf(
        importInto(key, pending, rsaAesKeyWrap(spki(sha1Job), randomBytes(32))),
      );
      expect(early.code).toBe(status.FAILED_PRECONDITION);
      expect(early.details).toContain('PENDING_GENERATION');
    } finally {
      emu.kms.holdImportJobGeneration(false);
    }
    expect((await active(pending)).state).toBe('ACTIVE');
    const hsmJob = await active(await newJob('RSA_OAEP_3072_SHA1_AES_256', 'HSM'));
    const e = await rejectionOf(importInto(key, hsmJob, rsaAesKeyWrap(spki(hsmJob), randomBytes(32))));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain('protection level HSM');

    const job = await active(await newJob('RSA_OAEP_3072_SHA1_AES_256'));
    const wrapped = rsaAesKeyWrap(spki(job), randomBytes(32));
    emu.clock.advance(3 * DAY_MS);
    const [expired] = await kms.getImportJob({ name: job.name! });
    expect(expired.state).toBe('EXPIRED');
    expect(expired.publicKey).toBeNull();
    expect(expired.expireEventTime).not.toBeNull();
    const late = await rejectionOf(importInto(key, job, wrapped));
    expect(late.code).toBe(status.FAILED_PRECONDITION);
    expect(late.details).toContain('EXPIRED');
    const [versions] = await kms.listCryptoKeyVersions({ parent: key });
    expect(versions.map((v) => v.state)).toEqual(['ENABLED']);
    // Later tests need a live job.
    sha1Job = await active(await newJob('RSA_OAEP_3072_SHA1_AES_256'));
  });

  it('re-imports into a destroyed imported version only the same material', async () => {
    const key = await newKey({ importOnly: true });
    const material = randomBytes(32);
    const v1 = await settled(await importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), material)));
    await kms.updateCryptoKeyPrimaryVersion({ name: key, cryptoKeyVersionId: '1' });
    const v2 = await settled(await importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), randomBytes(32))));
    await kms.updateCryptoKeyPrimaryVersion({ name: key, cryptoKeyVersionId: '2' });
    const plaintext = randomBytes(32);
    const [enc] = await kms.encrypt({ name: v1.name!, plaintext });
    await kms.destroyCryptoKeyVersion({ name: v1.name! });
    emu.clock.advance(31 * DAY_MS);
    expect((await settled(v1)).state).toBe('DESTROYED');
    sha1Job = await active(await newJob('RSA_OAEP_3072_SHA1_AES_256'));

    // A version that is neither DESTROYED nor IMPORT_FAILED takes no re-import.
    expect(
      await codeOf(
        importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), material), { cryptoKeyVersion: v2.name }),
      ),
    ).toBe(status.FAILED_PRECONDITION);
    const other = await settled(
      await importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), randomBytes(32)), {
        cryptoKeyVersion: v1.name,
      }),
    );
    expect(other.state).toBe('IMPORT_FAILED');
    expect(other.importFailureReason).toContain('does not match');
    const same = await settled(
      await importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), material), { cryptoKeyVersion: v1.name }),
    );
    expect(same.state).toBe('ENABLED');
    // The ciphertext made before destruction decrypts again: it is the same key.
    const [dec] = await kms.decrypt({ name: key, ciphertext: enc.ciphertext });
    expect(Buffer.from(dec.plaintext as Uint8Array).equals(plaintext)).toBe(true);
  });

  it('import-only keys need skip_initial_version_creation, refuse CreateCryptoKeyVersion and rotation schedules', async () => {
    expect(
      await codeOf(
        kms.createCryptoKey({
          parent: ring,
          cryptoKeyId: 'io-bad',
          cryptoKey: { purpose: 'ENCRYPT_DECRYPT', importOnly: true },
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    const key = await newKey({ importOnly: true });
    const [ck] = await kms.getCryptoKey({ name: key });
    expect(ck).toMatchObject({ importOnly: true, primary: null });
    const e = await rejectionOf(kms.createCryptoKeyVersion({ parent: key, cryptoKeyVersion: {} }, NO_RETRY));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain('import_only');
    expect(
      await codeOf(
        kms.updateCryptoKey({
          cryptoKey: {
            name: key,
            rotationPeriod: { seconds: 30 * 86_400 },
            nextRotationTime: { seconds: Math.floor(emu.clock.nowMs() / 1000) + 86_400 },
          },
          updateMask: { paths: ['rotation_period', 'next_rotation_time'] },
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    // The first import becomes version 1; it serves once made primary.
    const v = await settled(await importInto(key, sha1Job, rsaAesKeyWrap(spki(sha1Job), randomBytes(32))));
    expect(v.name).toBe(`${key}/cryptoKeyVersions/1`);
    await kms.updateCryptoKeyPrimaryVersion({ name: key, cryptoKeyVersionId: '1' });
    await roundTrip(key, key);
  });

  it('NOT_FOUND for an unknown key or job; INVALID_ARGUMENT for a job in another location or a foreign version', async () => {
    const key = await newKey();
    const blob = rsaAesKeyWrap(spki(sha1Job), randomBytes(32));
    expect(await codeOf(importInto(`${ring}/cryptoKeys/none`, sha1Job, blob))).toBe(status.NOT_FOUND);
    expect(await codeOf(importInto(key, { name: `${ring}/importJobs/none` }, blob))).toBe(status.NOT_FOUND);
    const [otherRing] = await kms.createKeyRing({
      parent: 'projects/rekey-test/locations/us-east1',
      keyRingId: 'elsewhere',
      keyRing: {},
    });
    const [far] = await kms.createImportJob({
      parent: otherRing.name!,
      importJobId: 'far',
      importJob: { importMethod: 'RSA_OAEP_3072_SHA1_AES_256', protectionLevel: 'SOFTWARE' },
    });
    expect(await codeOf(importInto(key, far, blob))).toBe(status.INVALID_ARGUMENT);
    const other = await newKey();
    expect(
      await codeOf(importInto(key, sha1Job, blob, { cryptoKeyVersion: `${other}/cryptoKeyVersions/1` })),
    ).toBe(status.INVALID_ARGUMENT);
  });
});
