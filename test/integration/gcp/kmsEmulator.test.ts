/**
 * The Cloud KMS emulator, driven through the unmodified KeyManagementServiceClient: each status
 * code it answers, pagination and filters, rotation and destruction on the simulated clock,
 * and the CRC32C integrity fields.
 */
import type { KeyManagementServiceClient, protos } from '@google-cloud/kms';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32c } from '../../../shared/providers/gcp/crc32c.js';
import type { GcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { DAY_MS, emulator, LOCATION_NAME, PROJECT, rawClient, rejectionOf } from './helpers.js';

const NO_RETRY = { retry: null } as const;
let emu: GcpKmsEmulator;
let kms: KeyManagementServiceClient;
let ring: string;
let n = 0;

beforeAll(async () => {
  emu = await emulator({ projects: [PROJECT, 'other-project'], controlPort: 0 });
  kms = rawClient(emu);
  [{ name: ring }] = (await kms.createKeyRing({ parent: LOCATION_NAME, keyRingId: 'emu', keyRing: {} })) as [
    { name: string },
    ...unknown[],
  ];
});
afterAll(async () => {
  await kms?.close();
  await emu?.close();
});

function nowSeconds(): number {
  return Math.floor(emu.clock.nowMs() / 1000);
}

async function newKey(extra: Record<string, unknown> = {}, request: Record<string, unknown> = {}) {
  n += 1;
  const [key] = await kms.createCryptoKey({
    parent: ring,
    cryptoKeyId: `k${n}`,
    cryptoKey: { purpose: 'ENCRYPT_DECRYPT', ...extra },
    ...request,
  });
  return key as { name: string } & Record<string, unknown>;
}

async function encrypt(name: string, plaintext: Buffer, aad?: Buffer) {
  const [res] = await kms.encrypt({ name, plaintext, ...(aad ? { additionalAuthenticatedData: aad } : {}) });
  return res;
}

async function codeOf(p: Promise<unknown>): Promise<number | undefined> {
  return (await rejectionOf(p)).code;
}

const versionName = (key: string, id: number) => `${key}/cryptoKeyVersions/${id}`;

describe('status codes', () => {
  it('INVALID_ARGUMENT for malformed names, ids and requests', async () => {
    expect(await codeOf(kms.getCryptoKey({ name: 'projects/rekey-test/cryptoKeys/x' }))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(await codeOf(kms.getCryptoKey({ name: `${ring}/cryptoKeys/bad!id` }))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(await codeOf(kms.getCryptoKeyVersion({ name: `${ring}/cryptoKeys/k/cryptoKeyVersions/x` }))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(
      await codeOf(
        kms.createCryptoKey({
          parent: ring,
          cryptoKeyId: 'has space',
          cryptoKey: { purpose: 'ENCRYPT_DECRYPT' },
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(kms.createCryptoKey({ parent: ring, cryptoKeyId: 'nopurpose', cryptoKey: {} }))).toBe(
      status.INVALID_ARGUMENT,
    );
    const key = await newKey();
    // Decrypt names a key, never a version: the server picks the version.
    const ct = (await encrypt(key.name, Buffer.from('x'))).ciphertext;
    expect(await codeOf(kms.decrypt({ name: versionName(key.name, 1), ciphertext: ct }))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(await codeOf(kms.encrypt({ name: key.name, plaintext: Buffer.alloc(0) }))).toBe(
      status.INVALID_ARGUMENT,
    );
  });

  it('NOT_FOUND for missing rings, keys and versions, and for a location Cloud KMS does not serve', async () => {
    expect(await codeOf(kms.getKeyRing({ name: `${LOCATION_NAME}/keyRings/none` }))).toBe(status.NOT_FOUND);
    expect(await codeOf(kms.getCryptoKey({ name: `${ring}/cryptoKeys/none` }))).toBe(status.NOT_FOUND);
    const key = await newKey();
    expect(await codeOf(kms.getCryptoKeyVersion({ name: versionName(key.name, 9) }))).toBe(status.NOT_FOUND);
    const e = await rejectionOf(kms.listKeyRings({ parent: `projects/${PROJECT}/locations/mars-north1` }));
    expect(e.code).toBe(status.NOT_FOUND);
    expect(e.message).toContain('mars-north1');
  });

  it('ALREADY_EXISTS for a second ring or key of the same id', async () => {
    expect(await codeOf(kms.createKeyRing({ parent: LOCATION_NAME, keyRingId: 'emu', keyRing: {} }))).toBe(
      status.ALREADY_EXISTS,
    );
    const key = await newKey();
    const id = key.name.slice(key.name.lastIndexOf('/') + 1);
    expect(
      await codeOf(
        kms.createCryptoKey({ parent: ring, cryptoKeyId: id, cryptoKey: { purpose: 'ENCRYPT_DECRYPT' } }),
      ),
    ).toBe(status.ALREADY_EXISTS);
  });

  it('PERMISSION_DENIED for a project the caller may not use', async () => {
    expect(await codeOf(kms.listKeyRings({ parent: 'projects/someone-else/locations/global' }))).toBe(
      status.PERMISSION_DENIED,
    );
  });

  it('UNIMPLEMENTED for purposes and RPCs the emulator does not model', async () => {
    expect(
      await codeOf(
        kms.createCryptoKey({ parent: ring, cryptoKeyId: 'sign', cryptoKey: { purpose: 'ASYMMETRIC_SIGN' } }),
      ),
    ).toBe(status.UNIMPLEMENTED);
    expect(
      await codeOf(kms.getPublicKey({ name: `${ring}/cryptoKeys/x/cryptoKeyVersions/1` }, NO_RETRY)),
    ).toBe(status.UNIMPLEMENTED);
  });

  it('RESOURCE_EXHAUSTED once the per-minute crypto quota of a project and location is spent', async () => {
    const key = await newKey();
    emu.faults.set({ cryptoRequestsPerMinute: 3 });
    try {
      for (let i = 0; i < 3; i++) await encrypt(key.name, Buffer.from('q'));
      const e = await rejectionOf(kms.encrypt({ name: key.name, plaintext: Buffer.from('q') }, NO_RETRY));
      expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
      // Admin calls draw from another quota.
      await kms.getCryptoKey({ name: key.name });
    } finally {
      emu.faults.set({ cryptoRequestsPerMinute: null });
    }
  });

  it('UNAVAILABLE from the fault dice, DEADLINE_EXCEEDED when latency outlasts the deadline', async () => {
    const key = await newKey();
    emu.faults.set({ unavailableProbability: 1 });
    try {
      expect(await codeOf(kms.getCryptoKey({ name: key.name }, NO_RETRY))).toBe(status.UNAVAILABLE);
    } finally {
      emu.faults.set({ unavailableProbability: 0 });
    }
    emu.faults.set({ latencyMs: 300 });
    try {
      expect(await codeOf(kms.getCryptoKey({ name: key.name }, { ...NO_RETRY, timeout: 50 }))).toBe(
        status.DEADLINE_EXCEEDED,
      );
    } finally {
      emu.faults.set({ latencyMs: 0 });
      await emu.settled();
    }
  });

  it('FAILED_PRECONDITION for a disabled version, a non-enabled primary and illegal state moves', async () => {
    const key = await newKey();
    const ct = (await encrypt(key.name, Buffer.from('p'))).ciphertext;
    await kms.createCryptoKeyVersion({ parent: key.name, cryptoKeyVersion: {} });
    await kms.updateCryptoKeyPrimaryVersion({ name: key.name, cryptoKeyVersionId: '2' });
    await kms.updateCryptoKeyVersion({
      cryptoKeyVersion: { name: versionName(key.name, 1), state: 'DISABLED' },
      updateMask: { paths: ['state'] },
    });
    expect(await codeOf(kms.decrypt({ name: key.name, ciphertext: ct }))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(kms.updateCryptoKeyPrimaryVersion({ name: key.name, cryptoKeyVersionId: '1' }))).toBe(
      status.FAILED_PRECONDITION,
    );
    expect(await codeOf(kms.restoreCryptoKeyVersion({ name: versionName(key.name, 1) }))).toBe(
      status.FAILED_PRECONDITION,
    );
  });
});

describe('pagination and filters', () => {
  it('pages keys with page_size and page_token; a token from another query is refused', async () => {
    const [r] = await kms.createKeyRing({ parent: LOCATION_NAME, keyRingId: 'paged', keyRing: {} });
    for (let i = 0; i < 5; i++) {
      await kms.createCryptoKey({
        parent: r.name!,
        cryptoKeyId: `p${i}`,
        cryptoKey: { purpose: 'ENCRYPT_DECRYPT' },
      });
    }
    const seen: string[] = [];
    const sizes: number[] = [];
    let pageToken: string | undefined;
    do {
      const [items, , raw] = await kms.listCryptoKeys(
        { parent: r.name!, pageSize: 2, ...(pageToken ? { pageToken } : {}) },
        { autoPaginate: false },
      );
      sizes.push(items.length);
      seen.push(...items.map((k) => k.name!.split('/').pop()!));
      expect(raw?.totalSize).toBe(5);
      pageToken = raw?.nextPageToken || undefined;
    } while (pageToken);
    expect(sizes).toEqual([2, 2, 1]);
    expect(seen).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);

    const [, , first] = await kms.listCryptoKeys({ parent: r.name!, pageSize: 2 }, { autoPaginate: false });
    expect(
      await codeOf(
        kms.listCryptoKeys(
          { parent: ring, pageSize: 2, pageToken: first!.nextPageToken! },
          { autoPaginate: false },
        ),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(kms.listCryptoKeys({ parent: r.name!, pageSize: -1 }, { autoPaginate: false }))).toBe(
      status.INVALID_ARGUMENT,
    );
    // The library's own auto-pagination walks every page.
    const [all] = await kms.listCryptoKeys({ parent: r.name!, pageSize: 2 });
    expect(all).toHaveLength(5);
  });

  it('pages key rings', async () => {
    const parent = `projects/other-project/locations/us-east1`;
    for (let i = 0; i < 3; i++) await kms.createKeyRing({ parent, keyRingId: `r${i}`, keyRing: {} });
    const [p1, , raw1] = await kms.listKeyRings({ parent, pageSize: 2 }, { autoPaginate: false });
    expect(p1).toHaveLength(2);
    const [p2, , raw2] = await kms.listKeyRings(
      { parent, pageSize: 2, pageToken: raw1!.nextPageToken! },
      { autoPaginate: false },
    );
    expect(p2.map((x) => x.name)).toEqual([`${parent}/keyRings/r2`]);
    expect(raw2?.nextPageToken).toBe('');
  });

  it('pages and filters versions on state, and keys on labels', async () => {
    const key = await newKey({ labels: { env: 'prod' } });
    await newKey({ labels: { env: 'dev' } });
    for (let i = 0; i < 3; i++) await kms.createCryptoKeyVersion({ parent: key.name, cryptoKeyVersion: {} });
    await kms.updateCryptoKeyVersion({
      cryptoKeyVersion: { name: versionName(key.name, 2), state: 'DISABLED' },
      updateMask: { paths: ['state'] },
    });
    await kms.destroyCryptoKeyVersion({ name: versionName(key.name, 3) });
    const ids = async (filter: string) => {
      const [vs, , raw] = await kms.listCryptoKeyVersions(
        { parent: key.name, filter },
        { autoPaginate: false },
      );
      expect(raw?.totalSize ?? 0).toBe(0); // not populated when filtering
      return vs.map((v) => Number(v.name!.split('/').pop()));
    };
    const [page1, , rawV] = await kms.listCryptoKeyVersions(
      { parent: key.name, pageSize: 3 },
      { autoPaginate: false },
    );
    expect(page1).toHaveLength(3);
    expect(rawV?.totalSize).toBe(4);
    const [page2, , rawV2] = await kms.listCryptoKeyVersions(
      { parent: key.name, pageSize: 3, pageToken: rawV!.nextPageToken! },
      { autoPaginate: false },
    );
    expect(page2.map((v) => v.name)).toEqual([versionName(key.name, 4)]);
    expect(rawV2?.nextPageToken).toBe('');
    expect(await ids('state=ENABLED')).toEqual([1, 4]);
    expect(await ids('state = DISABLED')).toEqual([2]);
    expect(await ids('state!=ENABLED')).toEqual([2, 3]);
    expect(await ids('state=DISABLED OR state=DESTROY_SCHEDULED')).toEqual([2, 3]);
    expect(await codeOf(kms.listCryptoKeyVersions({ parent: key.name, filter: 'color=red' }))).toBe(
      status.INVALID_ARGUMENT,
    );
    const [prod] = await kms.listCryptoKeys({ parent: ring, filter: 'labels.env=prod' });
    expect(prod.map((k) => k.name)).toEqual([key.name]);
  });
});

describe('keys and versions', () => {
  it('validates rotation_period, next_rotation_time and destroy_scheduled_duration on creation', async () => {
    const next = { seconds: nowSeconds() + 3600 };
    const bad: protos.google.cloud.kms.v1.ICryptoKey[] = [
      { rotationPeriod: { seconds: 86_399 }, nextRotationTime: next },
      { rotationPeriod: { seconds: 876_000 * 3600 + 1 }, nextRotationTime: next },
      { rotationPeriod: { seconds: 86_400 } },
      { destroyScheduledDuration: { seconds: 86_399 } },
      { destroyScheduledDuration: { seconds: 121 * 86_400 } },
      { versionTemplate: { algorithm: 'RSA_SIGN_PSS_2048_SHA256' } },
    ];
    for (const extra of bad) {
      expect(
        await codeOf(
          kms.createCryptoKey({
            parent: ring,
            cryptoKeyId: 'bad',
            cryptoKey: { purpose: 'ENCRYPT_DECRYPT', ...extra },
          }),
        ),
        JSON.stringify(extra),
      ).toBe(status.INVALID_ARGUMENT);
    }
    const key = await newKey({
      destroyScheduledDuration: { seconds: 86_400 },
      versionTemplate: { algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION', protectionLevel: 'HSM' },
    });
    expect(Number((key.destroyScheduledDuration as { seconds: string }).seconds)).toBe(86_400);
    expect((key.versionTemplate as { protectionLevel: string }).protectionLevel).toBe('HSM');
    const defaulted = await newKey();
    expect(Number((defaulted.destroyScheduledDuration as { seconds: string }).seconds)).toBe(30 * 86_400);
  });

  it('updates rotation and labels through update_mask only', async () => {
    const key = await newKey();
    const next = nowSeconds() + 7200;
    const [updated] = await kms.updateCryptoKey({
      cryptoKey: {
        name: key.name,
        rotationPeriod: { seconds: 7 * 86_400 },
        nextRotationTime: { seconds: next },
        labels: { team: 'a' },
      },
      updateMask: { paths: ['rotation_period', 'next_rotation_time'] },
    });
    expect(Number(updated.rotationPeriod!.seconds)).toBe(7 * 86_400);
    expect(Number(updated.nextRotationTime!.seconds)).toBe(next);
    expect(updated.labels).toEqual({}); // labels were not in the mask
    const [labelled] = await kms.updateCryptoKey({
      cryptoKey: { name: key.name, labels: { team: 'a' } },
      updateMask: { paths: ['labels'] },
    });
    expect(labelled.labels).toEqual({ team: 'a' });
    expect(Number(labelled.rotationPeriod!.seconds)).toBe(7 * 86_400);
    const [cleared] = await kms.updateCryptoKey({
      cryptoKey: { name: key.name },
      updateMask: { paths: ['rotation_period', 'next_rotation_time'] },
    });
    expect(cleared.rotationPeriod).toBeFalsy();
    expect(cleared.nextRotationTime).toBeFalsy();
    for (const paths of [[], ['purpose'], ['destroy_scheduled_duration']]) {
      expect(
        await codeOf(kms.updateCryptoKey({ cryptoKey: { name: key.name }, updateMask: { paths } })),
        paths.join(),
      ).toBe(status.INVALID_ARGUMENT);
    }
  });

  it('skip_initial_version_creation leaves no primary until one is chosen', async () => {
    const key = await newKey({}, { skipInitialVersionCreation: true });
    expect(key.primary).toBeFalsy();
    expect(await codeOf(kms.encrypt({ name: key.name, plaintext: Buffer.from('x') }))).toBe(
      status.FAILED_PRECONDITION,
    );
    const [v] = await kms.createCryptoKeyVersion({ parent: key.name, cryptoKeyVersion: {} });
    expect(v.name).toBe(versionName(key.name, 1));
    await kms.updateCryptoKeyPrimaryVersion({ name: key.name, cryptoKeyVersionId: '1' });
    expect((await encrypt(key.name, Buffer.from('x'))).name).toBe(versionName(key.name, 1));
  });

  it('rotates automatically when the simulated clock passes next_rotation_time', async () => {
    const start = nowSeconds();
    const key = await newKey({
      rotationPeriod: { seconds: 86_400 },
      nextRotationTime: { seconds: start + 86_400 },
    });
    const before = await encrypt(key.name, Buffer.from('old'));
    expect(before.name).toBe(versionName(key.name, 1));

    emu.clock.advance(DAY_MS + 60_000);
    let [k] = await kms.getCryptoKey({ name: key.name });
    expect(k.primary!.name).toBe(versionName(key.name, 2));
    expect(Number(k.nextRotationTime!.seconds)).toBe(start + 2 * 86_400);

    emu.clock.advance(3 * DAY_MS);
    [k] = await kms.getCryptoKey({ name: key.name });
    expect(k.primary!.name).toBe(versionName(key.name, 5));
    expect(Number(k.nextRotationTime!.seconds)).toBe(start + 5 * 86_400);
    const [versions] = await kms.listCryptoKeyVersions({ parent: key.name, filter: 'state=ENABLED' });
    expect(versions).toHaveLength(5);

    // Old ciphertexts still decrypt (not with the primary); new ones use the new primary.
    const [dec] = await kms.decrypt({ name: key.name, ciphertext: before.ciphertext });
    expect(Buffer.from(dec.plaintext as Uint8Array).toString()).toBe('old');
    expect(dec.usedPrimary).toBe(false);
    expect((await encrypt(key.name, Buffer.from('new'))).name).toBe(versionName(key.name, 5));
  });

  it('destroy: DESTROY_SCHEDULED for the key duration, then DESTROYED with its material gone', async () => {
    const key = await newKey({ destroyScheduledDuration: { seconds: 2 * 86_400 } });
    const ct = (await encrypt(key.name, Buffer.from('gone'))).ciphertext;
    await kms.createCryptoKeyVersion({ parent: key.name, cryptoKeyVersion: {} });
    await kms.updateCryptoKeyPrimaryVersion({ name: key.name, cryptoKeyVersionId: '2' });
    const t0 = nowSeconds();
    const [scheduled] = await kms.destroyCryptoKeyVersion({ name: versionName(key.name, 1) });
    expect(scheduled.state).toBe('DESTROY_SCHEDULED');
    const destroyAt = Number(scheduled.destroyTime!.seconds);
    expect(destroyAt - t0).toBeGreaterThanOrEqual(2 * 86_400 - 1);
    expect(destroyAt - t0).toBeLessThanOrEqual(2 * 86_400 + 1);
    expect(await codeOf(kms.decrypt({ name: key.name, ciphertext: ct }))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(kms.destroyCryptoKeyVersion({ name: versionName(key.name, 1) }))).toBe(
      status.FAILED_PRECONDITION,
    );

    emu.clock.advance(DAY_MS);
    let [v] = await kms.getCryptoKeyVersion({ name: versionName(key.name, 1) });
    expect(v.state).toBe('DESTROY_SCHEDULED');

    emu.clock.advance(DAY_MS + 5_000);
    [v] = await kms.getCryptoKeyVersion({ name: versionName(key.name, 1) });
    expect(v.state).toBe('DESTROYED');
    expect(Number(v.destroyEventTime!.seconds)).toBe(destroyAt);
    expect(await codeOf(kms.decrypt({ name: key.name, ciphertext: ct }))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(kms.restoreCryptoKeyVersion({ name: versionName(key.name, 1) }))).toBe(
      status.FAILED_PRECONDITION,
    );
    expect(
      await codeOf(
        kms.updateCryptoKeyVersion({
          cryptoKeyVersion: { name: versionName(key.name, 1), state: 'ENABLED' },
          updateMask: { paths: ['state'] },
        }),
      ),
    ).toBe(status.FAILED_PRECONDITION);
  });

  it('restore brings a scheduled version back DISABLED; enabled again, it decrypts', async () => {
    const key = await newKey();
    const ct = (await encrypt(key.name, Buffer.from('back'))).ciphertext;
    await kms.createCryptoKeyVersion({ parent: key.name, cryptoKeyVersion: {} });
    await kms.updateCryptoKeyPrimaryVersion({ name: key.name, cryptoKeyVersionId: '2' });
    await kms.destroyCryptoKeyVersion({ name: versionName(key.name, 1) });
    const [restored] = await kms.restoreCryptoKeyVersion({ name: versionName(key.name, 1) });
    expect(restored.state).toBe('DISABLED');
    expect(restored.destroyTime).toBeFalsy();
    await kms.updateCryptoKeyVersion({
      cryptoKeyVersion: { name: versionName(key.name, 1), state: 'ENABLED' },
      updateMask: { paths: ['state'] },
    });
    const [dec] = await kms.decrypt({ name: key.name, ciphertext: ct });
    expect(Buffer.from(dec.plaintext as Uint8Array).toString()).toBe('back');
    // The destruction never happens.
    emu.clock.advance(31 * DAY_MS);
    const [v] = await kms.getCryptoKeyVersion({ name: versionName(key.name, 1) });
    expect(v.state).toBe('ENABLED');
  });
});

describe('encrypt and decrypt', () => {
  it('names the version used, binds the AAD, and decrypts after the primary moves', async () => {
    const key = await newKey();
    const aad = Buffer.from('{"row":"1"}');
    const e1 = await encrypt(key.name, Buffer.from('one'), aad);
    expect(e1.name).toBe(versionName(key.name, 1));
    expect(e1.protectionLevel).toBe('SOFTWARE');
    await kms.createCryptoKeyVersion({ parent: key.name, cryptoKeyVersion: {} });
    await kms.updateCryptoKeyPrimaryVersion({ name: key.name, cryptoKeyVersionId: '2' });
    const e2 = await encrypt(key.name, Buffer.from('two'), aad);
    expect(e2.name).toBe(versionName(key.name, 2));
    // A named version may be used for encryption too.
    expect((await encrypt(versionName(key.name, 1), Buffer.from('x'))).name).toBe(versionName(key.name, 1));

    const [d1] = await kms.decrypt({
      name: key.name,
      ciphertext: e1.ciphertext,
      additionalAuthenticatedData: aad,
    });
    expect(Buffer.from(d1.plaintext as Uint8Array).toString()).toBe('one');
    expect(d1.usedPrimary).toBe(false);
    const [d2] = await kms.decrypt({
      name: key.name,
      ciphertext: e2.ciphertext,
      additionalAuthenticatedData: aad,
    });
    expect(d2.usedPrimary).toBe(true);
    expect(
      await codeOf(
        kms.decrypt({
          name: key.name,
          ciphertext: e1.ciphertext,
          additionalAuthenticatedData: Buffer.from('x'),
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(kms.decrypt({ name: key.name, ciphertext: e1.ciphertext }))).toBe(
      status.INVALID_ARGUMENT,
    );
    // A ciphertext of another key does not decrypt here.
    const other = await newKey();
    expect(
      await codeOf(
        kms.decrypt({ name: other.name, ciphertext: e1.ciphertext, additionalAuthenticatedData: aad }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
  });

  it('checks request CRC32C fields and reports them verified; response checksums match the data', async () => {
    const key = await newKey();
    const pt = Buffer.from('checksummed');
    const aad = Buffer.from('aad');
    const [enc] = await kms.encrypt({
      name: key.name,
      plaintext: pt,
      plaintextCrc32c: { value: crc32c(pt) },
      additionalAuthenticatedData: aad,
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    });
    expect(enc.verifiedPlaintextCrc32c).toBe(true);
    expect(enc.verifiedAdditionalAuthenticatedDataCrc32c).toBe(true);
    const ct = enc.ciphertext as Uint8Array;
    expect(Number(enc.ciphertextCrc32c!.value)).toBe(crc32c(ct));

    const unverified = await encrypt(key.name, pt);
    expect(unverified.verifiedPlaintextCrc32c).toBe(false);
    expect(unverified.verifiedAdditionalAuthenticatedDataCrc32c).toBe(false);

    const wrong = (crc32c(pt) + 1) >>> 0;
    const e = await rejectionOf(
      kms.encrypt({ name: key.name, plaintext: pt, plaintextCrc32c: { value: wrong } }),
    );
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(e.message).toContain('plaintext_crc32c');
    expect(
      await codeOf(
        kms.encrypt({
          name: key.name,
          plaintext: pt,
          additionalAuthenticatedData: aad,
          additionalAuthenticatedDataCrc32c: { value: 1 },
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);

    const [dec] = await kms.decrypt({
      name: key.name,
      ciphertext: ct,
      ciphertextCrc32c: { value: crc32c(ct) },
      additionalAuthenticatedData: aad,
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    });
    expect(Number(dec.plaintextCrc32c!.value)).toBe(crc32c(pt));
    expect(
      await codeOf(
        kms.decrypt({
          name: key.name,
          ciphertext: ct,
          ciphertextCrc32c: { value: (crc32c(ct) ^ 4) >>> 0 },
          additionalAuthenticatedData: aad,
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
  });

  it('limits HSM keys to 8 KiB of plaintext and AAD together', async () => {
    const key = await newKey({
      versionTemplate: { algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION', protectionLevel: 'HSM' },
    });
    expect((await encrypt(key.name, Buffer.alloc(4096, 1), Buffer.alloc(4096, 2))).protectionLevel).toBe(
      'HSM',
    );
    expect(
      await codeOf(
        kms.encrypt({
          name: key.name,
          plaintext: Buffer.alloc(4097),
          additionalAuthenticatedData: Buffer.alloc(4096),
        }),
      ),
    ).toBe(status.INVALID_ARGUMENT);
  });
});

describe('control API', () => {
  it('moves the clock and scripts faults over HTTP', async () => {
    const base = emu.controlUrl!;
    const key = await newKey();
    const before = emu.clock.nowMs();
    const res = await fetch(`${base}/clock`, { method: 'POST', body: JSON.stringify({ advanceDays: 1 }) });
    expect(res.status).toBe(200);
    expect(emu.clock.nowMs() - before).toBeGreaterThanOrEqual(DAY_MS);
    await fetch(`${base}/faults`, {
      method: 'POST',
      body: JSON.stringify({ failNext: { method: 'GetCryptoKey', code: 'UNAVAILABLE', count: 1 } }),
    });
    expect(await codeOf(kms.getCryptoKey({ name: key.name }, NO_RETRY))).toBe(status.UNAVAILABLE);
    await kms.getCryptoKey({ name: key.name }, NO_RETRY);
    const counts = (await (await fetch(`${base}/faults`)).json()) as { counts: Record<string, number> };
    expect(counts.counts.UNAVAILABLE).toBe(1);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
  });
});
