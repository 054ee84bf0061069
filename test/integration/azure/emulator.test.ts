import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isRestError, type RestError } from '@azure/core-rest-pipeline';
import { CryptographyClient, type KeyClient } from '@azure/keyvault-keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMULATOR_TOKEN, StaticTokenCredential } from '../../emulators/azure-keyvault/credential.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { MANAGED_HSM_MAX_KEYS, MANAGED_HSM_MAX_VERSIONS } from '../../emulators/azure-keyvault/vault.js';
import { extraCaCertsEnv } from '../../support/azureCert.js';
import { certificates, emulator, HSM, raw, sdkClient, VAULT } from './helpers.js';

let emu: AzureKeyVaultEmulator;
let kv: KeyClient;
let hsm: KeyClient;
let n = 0;
const name = (label: string) => `${label}-${randomBytes(3).toString('hex')}${++n}`;

beforeAll(async () => {
  emu = await emulator();
  kv = sdkClient(emu, VAULT);
  hsm = sdkClient(emu, HSM);
});
afterAll(async () => {
  await emu?.close();
  certificates().cleanup();
});

async function restError(p: Promise<unknown>): Promise<RestError> {
  try {
    await p;
  } catch (e) {
    if (isRestError(e)) return e;
    throw e;
  }
  throw new Error('expected the request to fail');
}

function cryptoClient(kid: string, credential = new StaticTokenCredential()) {
  return new CryptographyClient(kid, credential, {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: emu.ca },
    retryOptions: { maxRetries: 0 },
  });
}

describe('authentication', () => {
  it('answers an unauthenticated request with 401 and the Key Vault bearer challenge', async () => {
    const r = await raw(emu, VAULT, 'GET', '/keys?api-version=7.6', { token: null });
    expect(r.status).toBe(401);
    expect(r.body?.error?.code).toBe('Unauthorized');
    expect(r.headers['www-authenticate']).toMatch(
      /^Bearer authorization="https:\/\/login\.microsoftonline\.com\/[0-9a-f-]+", resource="https:\/\/vault\.azure\.net"$/,
    );
    const h = await raw(emu, HSM, 'GET', '/keys?api-version=7.6', { token: null });
    expect(h.headers['www-authenticate']).toContain('resource="https://managedhsm.azure.net"');
  });

  it('the SDK answers the challenge with a token for the resource it names', async () => {
    const cred = new StaticTokenCredential();
    const client = sdkClient(emu, VAULT, cred);
    const key = await client.createKey(name('auth'), 'RSA');
    expect(key.properties.version).toMatch(/^[0-9a-f]{32}$/);
    expect(cred.requests[0]?.scopes).toEqual(['https://vault.azure.net/.default']);
    // The kid names the host the client used.
    expect(key.id).toBe(`${emu.endpoints[VAULT]}/keys/${key.name}/${key.properties.version}`);
    const hcred = new StaticTokenCredential();
    await sdkClient(emu, HSM, hcred).createKey(name('auth'), 'oct-HSM');
    expect(hcred.requests[0]?.scopes).toEqual(['https://managedhsm.azure.net/.default']);
  });

  it('refuses a wrong token with 401', async () => {
    const client = sdkClient(emu, VAULT, new StaticTokenCredential('not-the-token'));
    const e = await restError(client.getKey('whatever'));
    expect(e.statusCode).toBe(401);
    expect(e.code).toBe('Unauthorized');
    const r = await raw(emu, VAULT, 'GET', '/keys?api-version=7.6', { token: 'nope' });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toContain('Bearer authorization=');
    expect(EMULATOR_TOKEN).toBe(emu.tokens[0]);
  });
});

describe('api-version', () => {
  it('is required and must be a known version', async () => {
    const missing = await raw(emu, VAULT, 'GET', '/keys');
    expect(missing.status).toBe(400);
    expect(missing.body?.error?.code).toBe('BadParameter');
    const unknown = await raw(emu, VAULT, 'GET', '/keys?api-version=1999-01-01');
    expect(unknown.status).toBe(400);
    expect(unknown.body?.error?.code).toBe('BadParameter');
    expect(unknown.body?.error?.message).toContain('1999-01-01');
    // The SDK writes the parameter as api%2Dversion; it is the same parameter.
    const encoded = await raw(emu, VAULT, 'GET', '/keys?api%2Dversion=7.6');
    expect(encoded.status).toBe(200);
  });

  it('an older supported version works, and rotation needs 7.3 or later', async () => {
    const old = sdkClient(emu, VAULT, undefined, { serviceVersion: '7.2' });
    const k = await old.createKey(name('api72'), 'RSA');
    const e = await restError(old.rotateKey(k.name));
    expect(e.statusCode).toBe(400);
    expect(e.code).toBe('BadParameter');
  });
});

describe('keys', () => {
  it('creates each key type with its size, operations, attributes and tags', async () => {
    const rsa = await kv.createKey(name('rsa'), 'RSA', {
      keySize: 3072,
      keyOps: ['wrapKey', 'unwrapKey'],
      tags: { team: 'payments' },
      notBefore: new Date('2020-01-01T00:00:00Z'),
    });
    expect(rsa.keyType).toBe('RSA');
    expect(rsa.key?.n?.length).toBe(384);
    expect(rsa.keyOperations).toEqual(['wrapKey', 'unwrapKey']);
    expect(rsa.properties.tags).toEqual({ team: 'payments' });
    expect(rsa.properties.notBefore?.toISOString()).toBe('2020-01-01T00:00:00.000Z');
    expect((await kv.createKey(name('rsahsm'), 'RSA-HSM')).keyType).toBe('RSA-HSM');
    expect((await kv.createKey(name('ec'), 'EC', { curve: 'P-384' })).key?.crv).toBe('P-384');
    const oct = await hsm.createKey(name('oct'), 'oct-HSM', { keySize: 256 });
    expect(oct.keyType).toBe('oct-HSM');
    expect(oct.key?.k).toBeUndefined();
  });

  it('refuses key types the vault kind does not offer, and bad sizes', async () => {
    expect((await restError(kv.createKey(name('oct'), 'oct-HSM'))).code).toBe('BadParameter');
    expect((await restError(hsm.createKey(name('soft'), 'RSA'))).code).toBe('BadParameter');
    expect((await restError(kv.createKey(name('size'), 'RSA', { keySize: 1024 }))).code).toBe('BadParameter');
    const bad = await raw(emu, VAULT, 'POST', '/keys/bad_name!/create?api-version=7.6', {
      body: { kty: 'RSA' },
    });
    expect(bad.body?.error?.code).toBe('BadParameter');
  });

  it('gets the latest version at /keys/{name} and /keys/{name}/, and a given version', async () => {
    const k = await kv.createKey(name('get'), 'RSA');
    const v2 = await kv.rotateKey(k.name);
    for (const path of [`/keys/${k.name}`, `/keys/${k.name}/`]) {
      const r = await raw(emu, VAULT, 'GET', `${path}?api-version=7.6`);
      expect(r.status).toBe(200);
      expect((r.body?.key as { kid?: string } | undefined)?.kid).toBe(v2.id);
    }
    const first = await kv.getKey(k.name, { version: k.properties.version! });
    expect(first.id).toBe(k.id);
  });

  it('key not found is 404 KeyNotFound, for a key and for a version', async () => {
    const e = await restError(kv.getKey(name('missing')));
    expect(e.statusCode).toBe(404);
    expect(e.code).toBe('KeyNotFound');
    const k = await kv.createKey(name('nover'), 'RSA');
    const v = await restError(kv.getKey(k.name, { version: '0'.repeat(32) }));
    expect(v.code).toBe('KeyNotFound');
  });

  it('updates attributes and tags of one version only', async () => {
    const k = await kv.createKey(name('upd'), 'RSA', { tags: { a: '1' } });
    const v2 = await kv.rotateKey(k.name);
    const exp = new Date('2031-01-01T00:00:00Z');
    await kv.updateKeyProperties(k.name, k.properties.version!, {
      enabled: false,
      tags: { a: '2' },
      expiresOn: exp,
    });
    const old = await kv.getKey(k.name, { version: k.properties.version! });
    expect(old.properties.enabled).toBe(false);
    expect(old.properties.tags).toEqual({ a: '2' });
    expect(old.properties.expiresOn?.toISOString()).toBe(exp.toISOString());
    const latest = await kv.getKey(k.name);
    expect(latest.properties.version).toBe(v2.properties.version);
    expect(latest.properties.enabled).toBe(true);
  });
});

describe('paging', () => {
  it('lists keys and versions in pages joined by nextLink', async () => {
    const fresh = await emulator();
    try {
      const names = Array.from({ length: 7 }, (_, i) => `page-${i}`);
      const client = sdkClient(fresh, VAULT);
      for (const nm of names) await client.createKey(nm, 'EC');
      const seen: string[] = [];
      let path: string | null = '/keys?api-version=7.6&maxresults=3';
      let pages = 0;
      while (path) {
        const r = await raw(fresh, VAULT, 'GET', path);
        expect(r.status).toBe(200);
        const value = r.body?.value as { kid: string }[];
        expect(value.length).toBeLessThanOrEqual(3);
        seen.push(...value.map((v) => v.kid.split('/').pop()!));
        const next = r.body?.nextLink as string | null;
        if (next) expect(next.startsWith(`${fresh.endpoints[VAULT]}/keys?`)).toBe(true);
        path = next ? new URL(next).pathname + new URL(next).search : null;
        pages += 1;
      }
      expect(pages).toBe(3);
      expect(seen.sort()).toEqual(names);

      const sdkPages: number[] = [];
      for await (const page of client.listPropertiesOfKeys().byPage({ maxPageSize: 2 }))
        sdkPages.push(page.length);
      expect(sdkPages).toEqual([2, 2, 2, 1]);

      for (let i = 0; i < 4; i++) await client.rotateKey('page-0');
      const versions: string[] = [];
      for await (const page of client.listPropertiesOfKeyVersions('page-0').byPage({ maxPageSize: 2 })) {
        expect(page.length).toBeLessThanOrEqual(2);
        versions.push(...page.map((p) => p.version!));
      }
      expect(new Set(versions).size).toBe(5);

      const tooMany = await raw(fresh, VAULT, 'GET', '/keys?api-version=7.6&maxresults=26');
      expect(tooMany.body?.error?.code).toBe('BadParameter');
    } finally {
      await fresh.close();
    }
  });
});

describe('rotation policies', () => {
  it('enforce the minimums: 7 days after create or before expiry, expiry of 28 days', async () => {
    const k = await kv.createKey(name('pol'), 'RSA');
    const bad: Parameters<KeyClient['updateKeyRotationPolicy']>[1][] = [
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P6D' }] },
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'PT12H' }] },
      { expiresIn: 'P27D', lifetimeActions: [] },
      { expiresIn: 'P60D', lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P6D' }] },
      { expiresIn: 'P60D', lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P55D' }] },
      { lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P10D' }] },
    ];
    for (const policy of bad) {
      const e = await restError(kv.updateKeyRotationPolicy(k.name, policy));
      expect(e.statusCode, JSON.stringify(policy)).toBe(400);
      expect(e.code).toBe('BadParameter');
    }
    const ok = await kv.updateKeyRotationPolicy(k.name, {
      expiresIn: 'P28D',
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P7D' },
        { action: 'Notify', timeBeforeExpiry: 'P7D' },
      ],
    });
    expect(ok.expiresIn).toBe('P28D');
    const read = await kv.getKeyRotationPolicy(k.name);
    expect(read.lifetimeActions?.map((a) => [a.action, a.timeAfterCreate ?? a.timeBeforeExpiry])).toEqual([
      ['Rotate', 'P7D'],
      ['Notify', 'P7D'],
    ]);
  });

  it('without a policy, the default is to notify 30 days before expiry', async () => {
    const k = await kv.createKey(name('defpol'), 'RSA');
    const p = await kv.getKeyRotationPolicy(k.name);
    expect(p.lifetimeActions).toEqual([
      { action: 'Notify', timeBeforeExpiry: 'P30D', timeAfterCreate: undefined },
    ]);
  });

  it('the simulated clock rotates keys when timeAfterCreate passes and sends Event Grid events', async () => {
    const fresh = await emulator();
    try {
      const client = sdkClient(fresh, VAULT);
      const k = await client.createKey('auto', 'RSA');
      await client.updateKeyRotationPolicy('auto', {
        expiresIn: 'P60D',
        lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }],
      });
      expect(fresh.events.ofType('Microsoft.KeyVault.KeyNewVersionCreated')).toHaveLength(1);
      fresh.clock.advanceDays(29);
      expect(fresh.vaults.get(VAULT)!.versionCount('auto')).toBe(1);
      fresh.clock.advanceDays(36); // day 65: rotations fell due on day 30 and day 60
      const versions: { version: string; created: Date; expires?: Date }[] = [];
      for await (const p of client.listPropertiesOfKeyVersions('auto')) {
        versions.push({
          version: p.version!,
          created: p.createdOn!,
          ...(p.expiresOn ? { expires: p.expiresOn } : {}),
        });
      }
      expect(versions).toHaveLength(3);
      const created = fresh.events.ofType('Microsoft.KeyVault.KeyNewVersionCreated');
      expect(created).toHaveLength(3);
      const latest = await client.getKey('auto');
      expect(latest.properties.version).not.toBe(k.properties.version);
      // Rotated versions expire expiresIn after their creation.
      expect(latest.properties.expiresOn!.getTime() - latest.properties.createdOn!.getTime()).toBe(
        60 * 86_400_000,
      );
      const e = created[2]!;
      expect(e).toMatchObject({
        subject: 'auto',
        eventType: 'Microsoft.KeyVault.KeyNewVersionCreated',
        dataVersion: '1',
        metadataVersion: '1',
        data: {
          VaultName: 'rekey-prod',
          ObjectType: 'Key',
          ObjectName: 'auto',
          Version: latest.properties.version,
        },
      });
      expect(e.data.Id).toBe(`https://${VAULT}/keys/auto/${latest.properties.version}`);
      expect(e.topic).toMatch(/\/providers\/Microsoft\.KeyVault\/vaults\/rekey-prod$/);
      expect(e.data.EXP).toBe(Math.floor(latest.properties.expiresOn!.getTime() / 1000));
    } finally {
      await fresh.close();
    }
  });

  it('a Rotate action with timeBeforeExpiry rotates that long before the version expires', async () => {
    const fresh = await emulator();
    try {
      const client = sdkClient(fresh, VAULT);
      await client.createKey('tbe', 'EC');
      await client.updateKeyRotationPolicy('tbe', {
        expiresIn: 'P30D',
        lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P7D' }],
      });
      // The policy's expiry applies to versions created from now on.
      const v2 = await client.rotateKey('tbe');
      expect(v2.properties.expiresOn!.getTime() - v2.properties.createdOn!.getTime()).toBe(30 * 86_400_000);
      fresh.clock.advanceDays(22);
      expect(fresh.vaults.get(VAULT)!.versionCount('tbe')).toBe(2);
      fresh.clock.advanceDays(1.5);
      expect(fresh.vaults.get(VAULT)!.versionCount('tbe')).toBe(3);
    } finally {
      await fresh.close();
    }
  });

  it('sends KeyNearExpiry and KeyExpired once per version, and nothing for a Managed HSM', async () => {
    const fresh = await emulator();
    try {
      const client = sdkClient(fresh, VAULT);
      const exp = new Date(fresh.clock.nowMs() + 40 * 86_400_000);
      await client.createKey('expiring', 'RSA', { expiresOn: exp });
      fresh.clock.advanceDays(11);
      expect(fresh.events.ofType('Microsoft.KeyVault.KeyNearExpiry')).toHaveLength(1);
      fresh.clock.advanceDays(1);
      expect(fresh.events.ofType('Microsoft.KeyVault.KeyNearExpiry')).toHaveLength(1);
      expect(fresh.events.ofType('Microsoft.KeyVault.KeyExpired')).toHaveLength(0);
      fresh.clock.advanceDays(30);
      expect(fresh.events.ofType('Microsoft.KeyVault.KeyExpired')).toHaveLength(1);

      const before = fresh.events.events.length;
      const h = sdkClient(fresh, HSM);
      await h.createKey('hsm-key', 'oct-HSM', { expiresOn: new Date(fresh.clock.nowMs() + 35 * 86_400_000) });
      await h.updateKeyRotationPolicy('hsm-key', {
        lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P7D' }],
      });
      await h.rotateKey('hsm-key');
      fresh.clock.advanceDays(40);
      expect(fresh.vaults.get(HSM)!.versionCount('hsm-key')).toBeGreaterThan(2);
      expect(fresh.events.events.length).toBe(before);
    } finally {
      await fresh.close();
    }
  });
});

describe('soft delete', () => {
  it('deletes softly; deleted keys list and get; recover restores; purge removes for good', async () => {
    const nm = name('del');
    await kv.createKey(nm, 'RSA');
    const poller = await kv.beginDeleteKey(nm, { intervalInMs: 10 });
    const deleted = await poller.pollUntilDone();
    expect(deleted.properties.recoveryId).toBe(`${emu.endpoints[VAULT]}/deletedkeys/${nm}`);
    expect(deleted.properties.scheduledPurgeDate!.getTime()).toBeGreaterThan(
      deleted.properties.deletedOn!.getTime(),
    );
    expect((await restError(kv.getKey(nm))).code).toBe('KeyNotFound');
    expect((await kv.getDeletedKey(nm)).name).toBe(nm);
    const listed: string[] = [];
    for await (const d of kv.listDeletedKeys()) listed.push(d.name);
    expect(listed).toContain(nm);
    // The name stays taken while the key is recoverable.
    expect((await restError(kv.createKey(nm, 'RSA'))).statusCode).toBe(409);

    const recover = await kv.beginRecoverDeletedKey(nm, { intervalInMs: 10 });
    await recover.pollUntilDone();
    expect((await kv.getKey(nm)).name).toBe(nm);

    await (await kv.beginDeleteKey(nm, { intervalInMs: 10 })).pollUntilDone();
    await kv.purgeDeletedKey(nm);
    expect((await restError(kv.getDeletedKey(nm))).statusCode).toBe(404);
    expect((await kv.createKey(nm, 'RSA')).name).toBe(nm);
  });

  it('purges a deleted key once its retention has passed on the clock', async () => {
    const fresh = await emulator({ softDeleteRetentionDays: 7 });
    try {
      const client = sdkClient(fresh, VAULT);
      await client.createKey('gone', 'EC');
      await (await client.beginDeleteKey('gone', { intervalInMs: 10 })).pollUntilDone();
      fresh.clock.advanceDays(8);
      expect((await restError(client.getDeletedKey('gone'))).statusCode).toBe(404);
    } finally {
      await fresh.close();
    }
  });
});

describe('cryptography', () => {
  it('wrapKey/unwrapKey and encrypt/decrypt with RSA-OAEP and RSA-OAEP-256', async () => {
    const k = await kv.createKey(name('rsacrypto'), 'RSA');
    const c = cryptoClient(k.id!);
    const dek = randomBytes(32);
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256'] as const) {
      const w = await c.wrapKey(alg, dek);
      expect(w.keyID).toBe(k.id);
      expect(Buffer.from((await c.unwrapKey(alg, w.result)).result).equals(dek)).toBe(true);
      const enc = await c.encrypt({ algorithm: alg, plaintext: dek });
      expect(
        Buffer.from((await c.decrypt({ algorithm: alg, ciphertext: enc.result })).result).equals(dek),
      ).toBe(true);
    }
    // A ciphertext that does not decrypt is a 400, not a server fault.
    const e = await restError(c.unwrapKey('RSA-OAEP-256', randomBytes(256)));
    expect(e.statusCode).toBe(400);
  });

  it('wrapKey/unwrapKey with A256KW and encrypt/decrypt with A256GCM on an oct-HSM key', async () => {
    const k = await hsm.createKey(name('octcrypto'), 'oct-HSM', { keySize: 256 });
    const c = cryptoClient(k.id!);
    const dek = randomBytes(32);
    const w = await c.wrapKey('A256KW', dek);
    expect(w.result.length).toBe(40);
    expect(Buffer.from((await c.unwrapKey('A256KW', w.result)).result).equals(dek)).toBe(true);
    const tampered = Uint8Array.from(w.result);
    tampered[5] = (tampered[5] ?? 0) ^ 1;
    expect((await restError(c.unwrapKey('A256KW', tampered))).code).toBe('BadParameter');
    expect((await restError(c.wrapKey('RSA-OAEP-256', dek))).code).toBe('BadParameter');
    const aad = Buffer.from('context');
    const enc = await c.encrypt({ algorithm: 'A256GCM', plaintext: dek, additionalAuthenticatedData: aad });
    const dec = await c.decrypt({
      algorithm: 'A256GCM',
      ciphertext: enc.result,
      iv: enc.iv!,
      authenticationTag: enc.authenticationTag!,
      additionalAuthenticatedData: aad,
    });
    expect(Buffer.from(dec.result).equals(dek)).toBe(true);
  });

  it('a disabled version refuses cryptography with 403 Forbidden', async () => {
    const k = await kv.createKey(name('disabled'), 'RSA');
    const c = cryptoClient(k.id!);
    const w = await c.wrapKey('RSA-OAEP-256', randomBytes(32));
    await kv.rotateKey(k.name);
    await kv.updateKeyProperties(k.name, k.properties.version!, { enabled: false });
    const e = await restError(cryptoClient(k.id!).unwrapKey('RSA-OAEP-256', w.result));
    expect(e.statusCode).toBe(403);
    expect(e.code).toBe('Forbidden');
    expect(e.message).toContain('disabled');
  });

  it('operations not in key_ops are refused', async () => {
    const k = await kv.createKey(name('ops'), 'RSA', { keyOps: ['sign', 'verify'] });
    const r = await raw(
      emu,
      VAULT,
      'POST',
      `/keys/${k.name}/${k.properties.version}/unwrapkey?api-version=7.6`,
      {
        body: { alg: 'RSA-OAEP-256', value: randomBytes(256).toString('base64url') },
      },
    );
    expect(r.status).toBe(403);
  });
});

describe('Managed HSM', () => {
  it(`keeps at most ${MANAGED_HSM_MAX_VERSIONS} versions of a key`, async () => {
    const k = await hsm.createKey(name('limit'), 'oct-HSM');
    for (let i = 1; i < MANAGED_HSM_MAX_VERSIONS; i++) await hsm.rotateKey(k.name);
    expect(emu.vaults.get(HSM)!.versionCount(k.name)).toBe(MANAGED_HSM_MAX_VERSIONS);
    const e = await restError(hsm.rotateKey(k.name));
    expect(e.statusCode).toBe(400);
    expect(e.code).toBe('BadParameter');
    expect(emu.vaults.get(HSM)!.versionCount(k.name)).toBe(MANAGED_HSM_MAX_VERSIONS);
    // A vault has no such limit.
    const v = await kv.createKey(name('nolimit'), 'EC');
    for (let i = 0; i < MANAGED_HSM_MAX_VERSIONS; i++) await kv.rotateKey(v.name);
    expect(emu.vaults.get(VAULT)!.versionCount(v.name)).toBe(MANAGED_HSM_MAX_VERSIONS + 1);
  });
});

describe('Managed HSM key count', () => {
  it(`holds at most ${MANAGED_HSM_MAX_KEYS} keys`, async () => {
    const fresh = await emulator();
    try {
      const vault = fresh.vaults.get(HSM)!;
      // Filled in-process: 5,000 HTTP round trips would only slow the suite down.
      for (let i = 0; i < MANAGED_HSM_MAX_KEYS; i++)
        vault.createKey('https://x', `k${i}`, { kty: 'oct-HSM' });
      const e = await restError(sdkClient(fresh, HSM).createKey('one-more', 'oct-HSM'));
      expect(e.code).toBe('BadParameter');
      // A new version of an existing key is still fine.
      expect((await sdkClient(fresh, HSM).createKey('k0', 'oct-HSM')).name).toBe('k0');
    } finally {
      await fresh.close();
    }
  });
});

describe('faults', () => {
  it('a 429 carries Retry-After, and the SDK retries after it', async () => {
    const fresh = await emulator();
    try {
      const k = await sdkClient(fresh, VAULT).createKey('retry', 'EC');
      fresh.faults.failNext('getKey', 429, 'Throttled', 1);
      const r = await raw(fresh, VAULT, 'GET', '/keys/retry?api-version=7.6');
      expect(r.status).toBe(429);
      expect(r.headers['retry-after']).toBe('1');
      expect(r.body?.error?.code).toBe('Throttled');

      fresh.faults.failNext('getKey', 429, 'Throttled', 1);
      const retrying = sdkClient(fresh, VAULT, undefined, { retryOptions: { maxRetries: 2 } });
      const got = await retrying.getKey('retry');
      expect(got.id).toBe(k.id);
      expect(fresh.faults.counts['scripted:Throttled']).toBe(2);

      // Without retries the 429 reaches the caller.
      fresh.faults.failNext('getKey', 429, 'Throttled', 1);
      expect((await restError(sdkClient(fresh, VAULT).getKey('retry'))).statusCode).toBe(429);
    } finally {
      await fresh.close();
    }
  });

  it('enforces the per-vault 10-second quota by key type', async () => {
    const fresh = await emulator({ faults: { quota: true, quotaPer10s: { createSoftware: 3, hsm: 4 } } });
    try {
      const client = sdkClient(fresh, VAULT);
      for (let i = 0; i < 3; i++) await client.createKey(`q${i}`, 'EC');
      const e = await restError(client.createKey('q3', 'EC'));
      expect(e.statusCode).toBe(429);
      expect(e.code).toBe('Throttled');
      expect(fresh.faults.counts.quota).toBe(1);
      // Other vaults and other classes have their own budget.
      const h = sdkClient(fresh, HSM);
      const k = await h.createKey('hq', 'oct-HSM');
      const c = new CryptographyClient(k.id!, new StaticTokenCredential(), {
        disableChallengeResourceVerification: true,
        tlsOptions: { ca: fresh.ca },
        retryOptions: { maxRetries: 0 },
      });
      const dek = randomBytes(32);
      let throttled = 0;
      for (let i = 0; i < 6; i++) {
        try {
          await c.wrapKey('A256KW', dek);
        } catch (err) {
          if (isRestError(err) && err.statusCode === 429) throttled += 1;
          else throw err;
        }
      }
      // The client's own getKey and three wraps fit in 4; the rest are refused.
      expect(throttled).toBe(3);
    } finally {
      await fresh.close();
    }
  });

  it('503s and latency can be injected', async () => {
    const fresh = await emulator({ faults: { unavailableProbability: 1, latencyMs: 5 } });
    try {
      const e = await restError(sdkClient(fresh, VAULT).getKey('x'));
      expect(e.statusCode).toBe(503);
      expect(fresh.faults.counts.unavailable).toBe(1);
    } finally {
      await fresh.close();
    }
  });
});

describe('hosts', () => {
  it('refuses a host the emulator does not serve', async () => {
    const r = await raw(emu, VAULT, 'GET', '/keys?api-version=7.6', { hostHeader: 'nope.vault.azure.net' });
    expect(r.status).toBe(404);
    expect(r.body?.error?.code).toBe('VaultNotFound');
  });

  it('routes by a known vault host name too (for clients that resolve it to 127.0.0.1)', async () => {
    const r = await raw(emu, VAULT, 'GET', '/keys?api-version=7.6&maxresults=1', { hostHeader: HSM });
    expect(r.status).toBe(200);
    const kid = (r.body?.value as { kid: string }[] | undefined)?.[0]?.kid;
    expect(kid?.startsWith(`https://${HSM}/keys/`)).toBe(true);
  });
});

describe('trust', () => {
  it('a separate process trusts the emulator through NODE_EXTRA_CA_CERTS, added to what was there', async () => {
    const certs = certificates();
    const other = join(certs.dir, 'other-ca.pem');
    writeFileSync(other, certs.ca); // stands in for a CA bundle the environment already trusts
    const bundle = extraCaCertsEnv(certs, { NODE_EXTRA_CA_CERTS: other });
    expect(bundle).not.toBe(other);
    expect(readFileSync(bundle, 'utf8').split('BEGIN CERTIFICATE').length - 1).toBe(2);
    expect(extraCaCertsEnv(certs, {})).toBe(certs.caPath);
    const url = `${emu.endpoints[VAULT]}/keys?api-version=7.6`;
    const script = `require('node:https').get(${JSON.stringify(url)}, (r) => { console.log(r.statusCode); r.resume(); }).on('error', (e) => { console.log(e.code); });`;
    const run = promisify(execFile);
    const trusted = await run(process.execPath, ['-e', script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: bundle },
    });
    expect(trusted.stdout.trim()).toBe('401');
    const untrusted = await run(process.execPath, ['-e', script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: '' },
    });
    expect(untrusted.stdout.trim()).not.toBe('401');
  });
});

describe('control API', () => {
  it('moves the clock, reads events and sets faults over HTTP, without a token', async () => {
    const fresh = await emulator();
    try {
      await sdkClient(fresh, VAULT).createKey('ctl', 'EC');
      const before = await raw(fresh, VAULT, 'GET', '/_emulator/clock', { token: null });
      const moved = await raw(fresh, VAULT, 'POST', '/_emulator/clock/advance', {
        token: null,
        body: { days: 2 },
      });
      expect(
        Date.parse(moved.body?.now as string) - Date.parse(before.body?.now as string),
      ).toBeGreaterThanOrEqual(2 * 86_400_000);
      const events = await raw(fresh, VAULT, 'GET', '/_emulator/events', { token: null });
      expect((events.body?.events as { subject: string }[] | undefined)?.map((e) => e.subject)).toEqual([
        'ctl',
      ]);
      const bad = await raw(fresh, VAULT, 'POST', '/_emulator/faults', {
        token: null,
        body: { throttleProbability: 2 },
      });
      expect(bad.status).toBe(400);
      await raw(fresh, VAULT, 'POST', '/_emulator/faults', { token: null, body: { throttleProbability: 1 } });
      expect((await restError(sdkClient(fresh, VAULT).getKey('ctl'))).statusCode).toBe(429);
      await raw(fresh, VAULT, 'POST', '/_emulator/faults/reset', { token: null });
      expect((await sdkClient(fresh, VAULT).getKey('ctl')).name).toBe('ctl');
    } finally {
      await fresh.close();
    }
  });
});
