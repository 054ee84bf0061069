/**
 * BYOK from a real SoftHSM2 token into Cloud KMS (the emulator, through the official client):
 * the importKey use case with the PKCS#11 material source, byte-for-byte proof that Cloud KMS
 * holds the HSM's material, DEKs moved onto a second import, re-import into a destroyed
 * version, rotation of an imported key by a plan, and bad input that adds no version.
 */
import { constants, createPublicKey, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../shared/core/audit/auditLog.js';
import { type GcpKmsRef, type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { NotFoundError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { KeyMaterialSource, KeyProvider } from '../../../shared/core/ports/KeyProvider.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import { importKey, materialLabel } from '../../../shared/core/usecases/byok.js';
import type { RekeyContext } from '../../../shared/core/usecases/context.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { GcpKmsProvider } from '../../../shared/providers/gcp/GcpKmsProvider.js';
import {
  type ByokSource,
  createByokSource,
  generateByokKey,
} from '../../../shared/providers/pkcs11/export.js';
import { Pkcs11Provider } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import type { GcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { type SoftHsm, startSoftHsm } from '../../support/softhsm.js';
import { DAY_MS, emulator, LOCATION, PROJECT, rawClient, rejectionOf } from '../gcp/helpers.js';

const START = '2026-03-01T00:00:00.000Z';
const RING = `projects/${PROJECT}/locations/${LOCATION}/keyRings/byok`;

let hsm: SoftHsm;
let token: Pkcs11Provider;
let source: ByokSource;
let emu: GcpKmsEmulator;
let gcp: GcpKmsProvider;
let state: SqliteStateStore;
let clock: ManualClock;
let ctx: RekeyContext;
let n = 0;

const yaml = (policies = '') => `version: 1
providers:
  gcp-test: { type: gcp-kms, projects: [${PROJECT}], locations: [${LOCATION}], keyRings: [byok] }
  hsm: { type: pkcs11, module: /usr/lib/softhsm/libsofthsm2.so, token: byok, pin: env:HSM_PIN }
${policies}`;

beforeAll(async () => {
  hsm = await startSoftHsm({ label: 'byok' });
  token = await Pkcs11Provider.open({ id: 'hsm', module: hsm.module, token: hsm.label, pin: hsm.pin });
  source = createByokSource(token);
  emu = await emulator({ startTime: START });
});
afterAll(async () => {
  await token?.close();
  await hsm?.cleanup();
  await emu?.close();
});
beforeEach(() => {
  clock = new ManualClock(emu.clock.now().toISOString());
  gcp = new GcpKmsProvider({
    id: 'gcp-test',
    projects: [PROJECT],
    locations: [LOCATION],
    keyRings: ['byok'],
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    insecure: true,
    libraryRetries: false,
    clock: emu.clock,
  });
  state = SqliteStateStore.open(':memory:');
  ctx = {
    config: loadConfig(yaml(), 't.yaml'),
    providers: new Map<string, KeyProvider>([['gcp-test', gcp]]),
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
  await gcp.close();
  await state.close?.();
});

const target = (label: string) => parseKeyRef(`gcp-kms://${RING}/cryptoKeys/${label}-${++n}`) as GcpKmsRef;

/** The HSM's material, wrapped under an RSA key the test holds: the only way it leaves the token. */
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

function sameMaterial(r: GcpKmsRef, version: string, inHsm: Buffer): boolean {
  const inKms = emu.kms.materialOf(`${r.name}/cryptoKeyVersions/${version}`);
  const same = inKms?.equals(inHsm) === true;
  inKms?.fill(0);
  inHsm.fill(0);
  return same;
}

describe('import from the HSM', () => {
  it('the default scheme is rsa-aes-kwp-sha1; an import-only key gets version 1 holding exactly the HSM material', async () => {
    const r = target('orders');
    const material = await generateByokKey(token, { label: `gcp-orders-${n}` });
    const result = await importKey(ctx, { source, sourceRef: material, target: gcp, targetRef: r });
    expect(result).toMatchObject({
      algorithm: 'rsa-aes-kwp-sha1',
      targetRef: r.uri,
      sourceRef: material.uri,
      version: { id: '1', state: 'enabled' },
      expiresAt: null,
    });
    expect(sameMaterial(r, '1', await materialInHsm(material))).toBe(true);
    const key = await gcp.getKey(r);
    expect(key).toMatchObject({ primaryVersion: '1', imported: true, gcp: { importOnly: true } });
    const dek = randomBytes(32);
    const w = await gcp.wrap(r, dek, { t: '1' });
    expect(Buffer.from(await gcp.unwrap(r, w, { t: '1' })).equals(dek)).toBe(true);
    const audit = await state.auditRead(0, 1000);
    expect(audit.map((a) => a.action)).toContain('key.imported');
    expect(JSON.stringify(audit)).not.toContain(dek.toString('base64'));
  });

  it('rsa-oaep-sha1 is refused before anything is asked of Cloud KMS or the HSM', async () => {
    const r = target('oaep');
    const material = await generateByokKey(token, { label: `gcp-oaep-${n}` });
    const before = { ...emu.requestCounts };
    const e = await rejectionOf(
      importKey(ctx, { source, sourceRef: material, target: gcp, targetRef: r, algorithm: 'rsa-oaep-sha1' }),
    );
    expect(e).toBeInstanceOf(ValidationError);
    expect(emu.requestCounts).toEqual(before);
  });

  it('a second import is the primary; DEKs under the first move onto it', async () => {
    const r = target('second');
    const first = await importKey(ctx, {
      source,
      sourceRef: await generateByokKey(token, { label: `gcp-second-a-${n}` }),
      target: gcp,
      targetRef: r,
    });
    const dek = randomBytes(32);
    const old = await gcp.wrap(r, dek, {});
    const secondSrc = await generateByokKey(token, { label: `gcp-second-b-${n}` });
    const second = await importKey(ctx, { source, sourceRef: secondSrc, target: gcp, targetRef: r });
    expect([first.version.id, second.version.id]).toEqual(['1', '2']);
    expect(sameMaterial(r, '2', await materialInHsm(secondSrc))).toBe(true);
    const plain = await gcp.unwrap(r, old, {});
    const moved = await gcp.wrap(r, plain, {});
    plain.fill(0);
    expect(moved.version).toBe('2');
    expect(Buffer.from(await gcp.unwrap(r, moved, {})).equals(dek)).toBe(true);
  });

  it('re-import brings a destroyed version back only with the same HSM material', async () => {
    const r = target('reimport');
    const material = await generateByokKey(token, { label: `gcp-re-${n}` });
    await importKey(ctx, { source, sourceRef: material, target: gcp, targetRef: r });
    const dek = randomBytes(32);
    const old = await gcp.wrap(r, dek, {});
    await importKey(ctx, {
      source,
      sourceRef: await generateByokKey(token, { label: `gcp-re-next-${n}` }),
      target: gcp,
      targetRef: r,
    });
    await gcp.scheduleDestroy(r, '1', 30);
    emu.clock.advance(31 * DAY_MS);
    clock.set(emu.clock.now().toISOString());
    expect((await gcp.getKey(r)).versions.find((v) => v.id === '1')?.state).toBe('destroyed');

    const other = await generateByokKey(token, { label: `gcp-re-other-${n}` });
    const wrong = await rejectionOf(
      importKey(ctx, { source, sourceRef: other, target: gcp, targetRef: r, reimport: true }),
    );
    expect((wrong as unknown as ProviderError).providerCode).toBe('IMPORT_FAILED');
    expect(wrong.message).toContain('does not match');

    const back = await importKey(ctx, {
      source,
      sourceRef: material,
      target: gcp,
      targetRef: r,
      reimport: true,
    });
    expect(back.version.id).toBe('1');
    expect((await gcp.getKey(r)).primaryVersion).toBe('2');
    expect(Buffer.from(await gcp.unwrap(r, old, {})).equals(dek)).toBe(true);
  });
});

describe('rotation of an imported key', () => {
  it('a policy with a byok source rotates an import-only key by importing new HSM material', async () => {
    const r = target('rotated');
    const first = await importKey(ctx, {
      source,
      sourceRef: await generateByokKey(token, { label: `gcp-rot-${n}` }),
      target: gcp,
      targetRef: r,
    });
    emu.clock.advance(45 * DAY_MS);
    const at = emu.clock.now();
    clock.set(at.toISOString());
    ctx.config = loadConfig(
      yaml(`policies:
  - name: imported
    match: { provider: [gcp-test] }
    rotate: { every: P30D }
    byok: { source: hsm }
`),
      't.yaml',
    );
    const { plan } = await makePlan(ctx);
    const mine = plan.actions.filter((a) => a.keyRef === r.uri);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      type: 'rotate',
      expectPrimary: first.version.id,
      byok: { source: 'hsm' },
    });
    const report = await applyPlan(ctx, plan);
    expect(report.status).toBe('completed');
    const key = await gcp.getKey(r);
    expect(key.primaryVersion).toBe('2');
    const label = materialLabel(key.name, at);
    expect(sameMaterial(r, '2', await materialInHsm(parseKeyRef(`pkcs11:token=byok;object=${label}`)))).toBe(
      true,
    );
  });
});

describe('bad input adds no version', () => {
  /** A source slower than the import job lives. */
  function slowSource(days: number): KeyMaterialSource {
    return {
      exportWrapped: async (ref, pub, alg) => {
        emu.clock.advance(days * DAY_MS);
        return source.exportWrapped(ref, pub, alg);
      },
    };
  }

  it('an expired import job: refused, audited, no version', async () => {
    const r = target('late');
    const material = await generateByokKey(token, { label: `gcp-late-${n}` });
    const e = await rejectionOf(
      importKey(ctx, { source: slowSource(3.1), sourceRef: material, target: gcp, targetRef: r }),
    );
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.message).toMatch(/expired/);
    const [versions] = await listVersions(r);
    expect(versions).toEqual([]);
    const last = (await state.auditRead(0, 1000)).at(-1)!;
    expect(last).toMatchObject({ action: 'key.import_failed', details: { step: 'importMaterial' } });
  });

  it('material wrapped for another import job ends IMPORT_FAILED: no usable version, primary unchanged', async () => {
    const r = target('job');
    const material = await generateByokKey(token, { label: `gcp-job-${n}` });
    await importKey(ctx, { source, sourceRef: material, target: gcp, targetRef: r });
    const params = await gcp.prepareImport(r, 'rsa-aes-kwp-sha1');
    // Another job of the same ring and method: same sizes, another wrapping key.
    const c = rawClient(emu);
    let foreignPem: string;
    try {
      const [job] = await c.createImportJob({
        parent: RING,
        importJobId: `foreign-${n}`,
        importJob: { importMethod: 'RSA_OAEP_3072_SHA1_AES_256', protectionLevel: 'SOFTWARE' },
      });
      for (;;) {
        const [j] = await c.getImportJob({ name: job.name! });
        if (j.state === 'ACTIVE') {
          foreignPem = j.publicKey!.pem!;
          break;
        }
        await new Promise((res) => setTimeout(res, 25));
      }
    } finally {
      await c.close();
    }
    const foreign = createPublicKey(foreignPem).export({ type: 'spki', format: 'der' });
    const wrapped = await source.exportWrapped(material, foreign, 'rsa-aes-kwp-sha1');
    const e = await rejectionOf(gcp.importMaterial(r, params, wrapped, {}));
    expect(e).toBeInstanceOf(ProviderError);
    expect((e as unknown as ProviderError).providerCode).toBe('IMPORT_FAILED');
    const key = await gcp.getKey(r);
    expect(key.versions.map((v) => v.id)).toEqual(['1']);
    expect(key.primaryVersion).toBe('1');
  });

  it('a tampered blob ends IMPORT_FAILED; a missing source key fails at export', async () => {
    const r = target('tampered');
    const material = await generateByokKey(token, { label: `gcp-tamper-${n}` });
    const params = await gcp.prepareImport(r, 'rsa-aes-kwp-sha1');
    const wrapped = await source.exportWrapped(material, params.wrappingPublicKey, 'rsa-aes-kwp-sha1');
    wrapped[wrapped.length - 3]! ^= 0x40;
    const e = await rejectionOf(gcp.importMaterial(r, params, wrapped, {}));
    expect((e as unknown as ProviderError).providerCode).toBe('IMPORT_FAILED');
    expect((await gcp.getKey(r)).versions).toEqual([]);
    const missing = await rejectionOf(
      importKey(ctx, {
        source,
        sourceRef: parseKeyRef('pkcs11:token=byok;object=no-such-key'),
        target: gcp,
        targetRef: r,
      }),
    );
    expect(missing).toBeInstanceOf(NotFoundError);
    expect((await gcp.getKey(r)).versions).toEqual([]);
  });
});

async function listVersions(r: GcpKmsRef) {
  const c = rawClient(emu);
  try {
    return await c.listCryptoKeyVersions({ parent: r.name });
  } finally {
    await c.close();
  }
}
