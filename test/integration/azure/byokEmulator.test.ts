/**
 * BYOK on the Key Vault emulator, through the unmodified KeyClient and plain HTTPS: key
 * exchange keys (RSA-HSM, key_ops ['import']), imports of key transfer blobs
 * (CKM_RSA_AES_KEY_WRAP) as oct-HSM into a Managed HSM and RSA-HSM / EC-HSM into a vault,
 * new versions under an existing name, and the 400s for every bad blob, none of which
 * creates anything.
 */
import {
  constants,
  createCipheriv,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { isRestError, type RestError } from '@azure/core-rest-pipeline';
import { CryptographyClient, type KeyClient, type KeyVaultKey } from '@azure/keyvault-keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticTokenCredential } from '../../emulators/azure-keyvault/credential.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { rsaAesKeyWrap } from '../../support/byokWrap.js';
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

function cryptoClient(kid: string) {
  return new CryptographyClient(kid, new StaticTokenCredential(), {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: emu.ca },
    retryOptions: { maxRetries: 0 },
  });
}

async function newKek(
  client: KeyClient,
  opts: { expiresOn?: Date; keySize?: number } = {},
): Promise<KeyVaultKey> {
  return client.createKey(name('kek'), 'RSA-HSM', {
    keySize: opts.keySize ?? 2048,
    keyOps: ['import'],
    ...(opts.expiresOn ? { expiresOn: opts.expiresOn } : {}),
  });
}

/** The KEK's public key, as a BYOK tool reads it from GET /keys/{kek}. */
function kekPublic(kek: KeyVaultKey): KeyObject {
  return createPublicKey({
    key: {
      kty: 'RSA',
      n: Buffer.from(kek.key!.n!).toString('base64url'),
      e: Buffer.from(kek.key!.e!).toString('base64url'),
    },
    format: 'jwk',
  });
}

function blob(kid: string, ciphertext: Buffer, header: Record<string, unknown> = {}): Uint8Array {
  return Buffer.from(
    JSON.stringify({
      schema_version: '1.0.0',
      header: { kid, alg: 'dir', enc: 'CKM_RSA_AES_KEY_WRAP', ...header },
      ciphertext: ciphertext.toString('base64url'),
      generator: 'rekey tests',
    }),
  );
}

function importOct(client: KeyClient, keyName: string, t: Uint8Array) {
  return client.importKey(
    keyName,
    { kty: 'oct-HSM', t, keyOps: ['wrapKey', 'unwrapKey'] },
    { hardwareProtected: true },
  );
}

/** AES key wrap (RFC 3394), what A256KW computes: deterministic, so equal outputs mean equal keys. */
function aesKw(key: Buffer, data: Buffer): Buffer {
  const c = createCipheriv('id-aes256-wrap', key, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  return Buffer.concat([c.update(data), c.final()]);
}

describe('key exchange keys', () => {
  it('are RSA-HSM keys whose only operation is import; GET gives their public key; they wrap nothing', async () => {
    const kek = await newKek(kv, { keySize: 3072 });
    expect(kek.keyType).toBe('RSA-HSM');
    expect(kek.keyOperations).toEqual(['import']);
    const got = await kv.getKey(kek.name);
    expect(got.key?.n?.length).toBe(384);
    expect(kekPublic(got).asymmetricKeyDetails?.modulusLength).toBe(3072);
    const path = new URL(kek.id!).pathname;
    const e = await raw(emu, VAULT, 'POST', `${path}/wrapkey?api-version=7.6`, {
      body: { alg: 'RSA-OAEP', value: randomBytes(32).toString('base64url') },
    });
    expect(e.status).toBe(403);
    for (const [kty, ops] of [
      ['RSA', ['import']],
      ['RSA-HSM', ['import', 'unwrapKey']],
      ['EC-HSM', ['import']],
    ] as const) {
      const bad = await restError(kv.createKey(name('kek'), kty, { keyOps: [...ops] }));
      expect(bad.statusCode).toBe(400);
      expect(bad.code).toBe('BadParameter');
    }
  });
});

describe('import of key transfer blobs', () => {
  it('imports AES-256 into a Managed HSM as oct-HSM: it wraps exactly as the same key does locally', async () => {
    const kek = await newKek(hsm);
    const material = randomBytes(32);
    const keyName = name('aes');
    const key = await importOct(hsm, keyName, blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), material)));
    expect(key.keyType).toBe('oct-HSM');
    expect(key.id).toMatch(new RegExp(`/keys/${keyName}/[0-9a-f]{32}$`));
    const dek = randomBytes(32);
    const c = cryptoClient(key.id!);
    const wrapped = await c.wrapKey('A256KW', dek);
    expect(Buffer.from(wrapped.result).equals(aesKw(material, dek))).toBe(true);
    const unwrapped = await c.unwrapKey('A256KW', aesKw(material, dek));
    expect(Buffer.from(unwrapped.result).equals(dek)).toBe(true);

    // The same name again: a new version, the latest.
    const second = await importOct(
      hsm,
      keyName,
      blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), randomBytes(32))),
    );
    expect(second.properties.version).not.toBe(key.properties.version);
    expect((await hsm.getKey(keyName)).properties.version).toBe(second.properties.version);
    const versions: string[] = [];
    for await (const v of hsm.listPropertiesOfKeyVersions(keyName)) versions.push(v.version!);
    expect(versions).toHaveLength(2);
  });

  it('takes the kid with or without a version, as the request host or the vault host spells it', async () => {
    const kek = await newKek(hsm);
    const wrapped = () => rsaAesKeyWrap(kekPublic(kek), randomBytes(32));
    const base = kek.id!.slice(0, kek.id!.lastIndexOf('/'));
    await importOct(hsm, name('kid'), blob(base, wrapped()));
    const real = kek.id!.replace(/^https:\/\/[^/]+/, `https://${HSM}`);
    await importOct(hsm, name('kid'), blob(real, wrapped()));
  });

  it('imports RSA-HSM (PKCS#8) into a vault: the imported private key decrypts what its public key encrypts', async () => {
    const kek = await newKek(kv);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
    const key = await kv.importKey(
      name('rsa'),
      { kty: 'RSA-HSM', t: blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), pkcs8)) },
      { hardwareProtected: true },
    );
    expect(key.keyType).toBe('RSA-HSM');
    expect(Buffer.from(key.key!.n!).toString('base64url')).toBe(publicKey.export({ format: 'jwk' }).n);
    const secret = randomBytes(32);
    const ct = publicEncrypt(
      { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
      secret,
    );
    const out = await cryptoClient(key.id!).unwrapKey('RSA-OAEP', ct);
    expect(Buffer.from(out.result).equals(secret)).toBe(true);
  });

  it('imports EC-HSM (PKCS#8) into a vault with its curve and public point', async () => {
    const kek = await newKek(kv);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const key = await kv.importKey(
      name('ec'),
      {
        kty: 'EC-HSM',
        t: blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), privateKey.export({ type: 'pkcs8', format: 'der' }))),
      },
      { hardwareProtected: true },
    );
    expect(key.key?.crv).toBe('P-384');
    expect(Buffer.from(key.key!.x!).toString('base64url')).toBe(publicKey.export({ format: 'jwk' }).x);
  });
});

describe('bad transfer blobs: 400 BadParameter, nothing created', () => {
  it('refuses AES (oct-HSM) in a vault: AES keys live in a Managed HSM only', async () => {
    const kek = await newKek(kv);
    const e = await restError(
      importOct(kv, name('aes'), blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), randomBytes(32)))),
    );
    expect(e.statusCode).toBe(400);
    expect(e.message).toContain("'oct-HSM' is not supported by Key Vault");
  });

  it('names what is wrong with the blob, the KEK or the target', async () => {
    const kek = await newKek(hsm);
    const pub = kekPublic(kek);
    const good = () => rsaAesKeyWrap(pub, randomBytes(32));
    const other = await newKek(hsm);
    const notKek = await hsm.createKey(name('plain'), 'oct-HSM');
    const vaultKek = await newKek(kv);
    const disabled = await newKek(hsm);
    await hsm.updateKeyProperties(disabled.name, disabled.properties.version!, { enabled: false });
    const tampered = good();
    tampered[tampered.length - 5]! ^= 0x40;
    const cases: [string, Uint8Array, RegExp][] = [
      ['tampered ciphertext', blob(kek.id!, tampered), /could not be unwrapped with key exchange key/],
      [
        'wrapped for another KEK',
        blob(kek.id!, rsaAesKeyWrap(kekPublic(other), randomBytes(32))),
        /could not be unwrapped/,
      ],
      [
        'wrong OAEP hash',
        blob(kek.id!, rsaAesKeyWrap(pub, randomBytes(32), 'sha256')),
        /could not be unwrapped/,
      ],
      ['truncated ciphertext', blob(kek.id!, good().subarray(0, 283)), /invalid length/],
      [
        'unknown KEK',
        blob(kek.id!.replace(kek.name, 'no-such-kek'), good()),
        /was not found in this key vault/,
      ],
      ['a key that is not a KEK', blob(notKek.id!, good()), /is not a key exchange key/],
      ['a KEK of another vault', blob(vaultKek.id!, good()), /does not name a key of this Managed HSM/],
      [
        'a disabled KEK',
        blob(disabled.id!, rsaAesKeyWrap(kekPublic(disabled), randomBytes(32))),
        /is disabled/,
      ],
      [
        'enc other than CKM_RSA_AES_KEY_WRAP',
        blob(kek.id!, good(), { enc: 'RSA_AES_KEY_WRAP_256' }),
        /'enc'/,
      ],
      ['alg other than dir', blob(kek.id!, good(), { alg: 'RSA-OAEP' }), /'alg' must be 'dir'/],
      ['not JSON', Buffer.from('not a blob'), /not a key transfer blob/],
      ['an AES key of 20 bytes', blob(kek.id!, rsaAesKeyWrap(pub, randomBytes(20))), /128, 192 or 256 bits/],
    ];
    for (const [what, t, message] of cases) {
      const keyName = name('bad');
      const e = await restError(importOct(hsm, keyName, t)).catch((x: Error) => {
        throw new Error(`${what}: ${x.message}`);
      });
      expect(e.statusCode, what).toBe(400);
      expect(e.code, what).toBe('BadParameter');
      expect(e.message, what).toMatch(message);
      expect((await restError(hsm.getKey(keyName))).statusCode, what).toBe(404);
    }
  });

  it('refuses an expired KEK, and adds no version to an existing key', async () => {
    const kek = await newKek(hsm, { expiresOn: new Date(emu.clock.nowMs() + 3_600_000) });
    const keyName = name('exp');
    await importOct(hsm, keyName, blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), randomBytes(32))));
    const late = blob(kek.id!, rsaAesKeyWrap(kekPublic(kek), randomBytes(32)));
    emu.clock.advance(2 * 3_600_000);
    const e = await restError(importOct(hsm, keyName, late));
    expect(e.statusCode).toBe(400);
    expect(e.message).toMatch(/expired at .*create a new one/);
    expect(emu.vaults.get(HSM)!.versionCount(keyName)).toBe(1);
  });

  it('imports no plain JSON web key (the emulator models BYOK only) and needs an HSM key type', async () => {
    const r = await raw(emu, HSM, 'PUT', `/keys/${name('plain')}?api-version=7.6`, {
      body: { key: { kty: 'oct-HSM', k: randomBytes(32).toString('base64url') } },
    });
    expect(r.status).toBe(400);
    expect(r.body?.error?.message).toContain('key_hsm');
    const kek = await newKek(kv);
    const soft = await raw(emu, VAULT, 'PUT', `/keys/${name('soft')}?api-version=7.6`, {
      body: {
        key: { kty: 'RSA', key_hsm: Buffer.from(blob(kek.id!, Buffer.alloc(0))).toString('base64url') },
      },
    });
    expect(soft.status).toBe(400);
    expect(soft.body?.error?.message).toContain('RSA-HSM, EC-HSM or oct-HSM');
  });
});
