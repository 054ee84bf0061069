import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AzureKvRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { NotFoundError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import {
  type AzureKeyVaultProvider,
  MANAGED_HSM_MAX_VERSIONS,
  VAULT_MAX_VERSIONS,
} from '../../../shared/providers/azure/AzureKeyVaultProvider.js';
import { parseKeyVaultEvent, parseKeyVaultEvents } from '../../../shared/providers/azure/events.js';
import { StaticTokenCredential } from '../../emulators/azure-keyvault/credential.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { certificates, emulator, HSM, provider, sdkClient, VAULT } from './helpers.js';

let emu: AzureKeyVaultEmulator;
let p: AzureKeyVaultProvider;
let n = 0;
const name = (label: string) => `${label}-${randomBytes(3).toString('hex')}${++n}`;
const ctx = { tenant: 'acme' };

beforeAll(async () => {
  emu = await emulator();
  p = provider(emu);
});
afterAll(async () => {
  await p?.close();
  await emu?.close();
  certificates().cleanup();
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure');
}

describe('inventory', () => {
  it('describes vault and Managed HSM keys with their real host, protection and algorithm', async () => {
    const rsa = await p.createKey({ name: name('inv'), tags: { team: 'payments' } });
    expect(rsa.ref).toMatch(new RegExp(`^azure-kv://${VAULT.replace(/\./g, '\\.')}/keys/inv-`));
    const got = await p.getKey(parseKeyRef(rsa.ref));
    expect(got).toMatchObject({
      providerType: 'azure-kv',
      providerId: 'azure-test',
      protection: 'software',
      algorithm: 'RSA_2048',
      tags: { team: 'payments' },
      enabled: true,
      azure: { host: VAULT, kind: 'vault', keyType: 'RSA' },
    });
    expect(got.primaryVersion).toMatch(/^[0-9a-f]{32}$/);

    const aes = await p.createKey({ name: name('inv'), vault: HSM });
    expect(await p.getKey(parseKeyRef(aes.ref))).toMatchObject({
      protection: 'hsm',
      algorithm: 'AES_256',
      azure: { kind: 'managedhsm', keyType: 'oct-HSM' },
    });

    const premium = provider(emu, { vaultKeyProtection: 'hsm' });
    const hsmRsa = await premium.createKey({ name: name('inv'), algorithm: 'RSA_3072' });
    expect(await premium.getKey(parseKeyRef(hsmRsa.ref))).toMatchObject({
      protection: 'hsm',
      algorithm: 'RSA_3072',
      azure: { keyType: 'RSA-HSM' },
    });
  });

  it('lists keys of every configured vault, page by page, with a name prefix', async () => {
    const fresh = await emulator();
    try {
      const q = provider(fresh);
      for (let i = 0; i < 3; i++) await q.createKey({ name: `a-${i}` });
      for (let i = 0; i < 2; i++) await q.createKey({ name: `b-${i}`, vault: HSM });
      await q.createKey({ name: 'other', vault: HSM });
      await q.createKey({ name: 'cert-backed' });
      fresh.vaults.get(VAULT)!.markManaged('cert-backed');
      const refs: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await q.listKeys({ pageSize: 2 }, cursor);
        expect(page.items.length).toBeLessThanOrEqual(2);
        refs.push(...page.items.map((k) => k.ref));
        cursor = page.cursor;
      } while (cursor);
      expect(refs.sort()).toEqual(
        [
          `azure-kv://${VAULT}/keys/a-0`,
          `azure-kv://${VAULT}/keys/a-1`,
          `azure-kv://${VAULT}/keys/a-2`,
          `azure-kv://${HSM}/keys/b-0`,
          `azure-kv://${HSM}/keys/b-1`,
          `azure-kv://${HSM}/keys/other`,
        ].sort(),
      );
      const prefixed: string[] = [];
      cursor = null;
      do {
        const page = await q.listKeys({ namePrefix: 'b-' }, cursor);
        prefixed.push(...page.items.map((k) => k.name));
        cursor = page.cursor;
      } while (cursor);
      expect(prefixed.sort()).toEqual(['b-0', 'b-1']);
      expect(await rejection(q.listKeys({}, 'not-a-cursor'))).toBeInstanceOf(ValidationError);
      // A forged cursor cannot send the SDK (and its bearer token) to another host.
      const forged = Buffer.from(JSON.stringify({ v: 0, t: 'https://attacker.example/keys?x=1' })).toString(
        'base64url',
      );
      expect(await rejection(q.listKeys({}, forged))).toBeInstanceOf(ValidationError);
    } finally {
      await fresh.close();
    }
  });

  it('advertises the version limits: 500 for vaults (backup), 100 for Managed HSM', () => {
    expect(
      provider(emu, { vaults: [VAULT], endpoints: { [VAULT]: emu.endpoints[VAULT]! } }).capabilities(),
    ).toMatchObject({
      maxVersions: VAULT_MAX_VERSIONS,
      serverSideRewrap: false,
      autoRotation: { minDays: 7, maxDays: 36_500 },
    });
    expect(p.capabilities().maxVersions).toBe(MANAGED_HSM_MAX_VERSIONS);
  });
});

describe('rotation', () => {
  it('sets a Rotate policy, keeps the other actions and the expiry, and the vault rotates on schedule', async () => {
    const fresh = await emulator();
    try {
      const q = provider(fresh);
      const key = await q.createKey({ name: 'auto' });
      const ref = parseKeyRef(key.ref);
      await sdkClient(fresh, VAULT).updateKeyRotationPolicy('auto', {
        expiresIn: 'P90D',
        lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P10D' }],
      });
      await q.setAutoRotation(ref, 30);
      const k = await q.getKey(ref);
      expect(k.autoRotation?.periodDays).toBe(30);
      expect(Date.parse(k.autoRotation!.nextRotationAt!)).toBe(
        Date.parse(k.versions[0]!.createdAt) + 30 * 86_400_000,
      );
      expect(k.azure.rotationPolicy).toMatchObject({ expiresIn: 'P90D' });
      expect(k.azure.rotationPolicy?.lifetimeActions).toEqual(
        expect.arrayContaining([expect.objectContaining({ action: 'Notify', timeBeforeExpiry: 'P10D' })]),
      );

      fresh.clock.advanceDays(31);
      const after = await q.getKey(ref);
      expect(after.versions).toHaveLength(2);
      expect(after.primaryVersion).not.toBe(key.primaryVersion);
      expect(
        fresh.events.ofType('Microsoft.KeyVault.KeyNewVersionCreated').map((e) => e.data.Version),
      ).toContain(after.primaryVersion);

      await q.setAutoRotation(ref, null);
      const off = await q.getKey(ref);
      expect(off.autoRotation).toBeUndefined();
      expect(off.azure.rotationPolicy?.lifetimeActions.map((a) => a.action)).toEqual(['Notify']);

      // Azure's own rule (rotate at least 7 days before expiry) surfaces as a non-retryable error.
      const e = await rejection(q.setAutoRotation(ref, 85));
      expect(e).toBeInstanceOf(ProviderError);
      expect((e as ProviderError).providerCode).toBe('BadParameter');
      expect((e as ProviderError).retryable).toBe(false);
    } finally {
      await fresh.close();
    }
  });

  it('refuses to schedule the destruction of a version: Key Vault cannot delete versions', async () => {
    const k = await p.createKey({ name: name('destroy') });
    const v2 = await p.rotate(parseKeyRef(k.ref));
    expect(v2.id).toMatch(/^[0-9a-f]{32}$/);
    const e = await rejection(p.scheduleDestroy(parseKeyRef(k.ref), k.primaryVersion, 30));
    expect(e).toBeInstanceOf(ProviderError);
    expect((e as ProviderError).providerCode).toBe('UnsupportedOperation');
    expect((e as ProviderError).retryable).toBe(false);
  });
});

describe('bad input', () => {
  it('refuses what Azure cannot create, and backdating', async () => {
    expect(await rejection(p.createKey({ name: name('x'), algorithm: 'AES_256' }))).toBeInstanceOf(
      ValidationError,
    );
    expect(await rejection(p.createKey({ name: name('x'), algorithm: 'HMAC_256' }))).toBeInstanceOf(
      ValidationError,
    );
    expect(
      await rejection(p.createKey({ name: name('x'), createdAt: '2020-01-01T00:00:00Z' })),
    ).toBeInstanceOf(ValidationError);
  });

  it('refuses a ref for a vault host the provider is not configured with', async () => {
    const ref = parseKeyRef('azure-kv://someone-else.vault.azure.net/keys/k');
    for (const op of [() => p.getKey(ref), () => p.wrap(ref, randomBytes(32), ctx), () => p.rotate(ref)]) {
      const e = await rejection(op());
      expect(e).toBeInstanceOf(ValidationError);
      expect((e as Error).message).toContain('someone-else.vault.azure.net');
    }
  });

  it('a missing key is NotFoundError; a bad version id or oversized DEK is ValidationError', async () => {
    const missing = parseKeyRef(`azure-kv://${VAULT}/keys/${name('missing')}`);
    expect(await rejection(p.getKey(missing))).toBeInstanceOf(NotFoundError);
    const k = await p.createKey({ name: name('bad') });
    const ref = parseKeyRef(k.ref);
    expect(await rejection(p.wrap(ref, randomBytes(129), ctx))).toBeInstanceOf(ValidationError);
    expect(await rejection(p.wrap(ref, new Uint8Array(0), ctx))).toBeInstanceOf(ValidationError);
    const w = await p.wrap(ref, randomBytes(32), ctx);
    expect(await rejection(p.unwrap(ref, { ...w, version: '../../x' }, ctx))).toBeInstanceOf(ValidationError);
    const wrong = await rejection(p.unwrap(ref, w, { tenant: 'other' }));
    expect((wrong as ProviderError).providerCode).toBe('WrapContextMismatch');
  });

  it('a wrong token is a non-retryable ProviderError (401)', async () => {
    const q = provider(emu, { credential: new StaticTokenCredential('wrong') });
    const e = await rejection(q.getKey(parseKeyRef(`azure-kv://${VAULT}/keys/any`)));
    expect(e).toBeInstanceOf(ProviderError);
    expect((e as ProviderError).retryable).toBe(false);
    expect((e as ProviderError).message).toContain('401');
  });

  it('a disabled version refuses to unwrap with a non-retryable Forbidden', async () => {
    const k = await p.createKey({ name: name('dis') });
    const ref = parseKeyRef(k.ref);
    const w = await p.wrap(ref, randomBytes(32), ctx);
    await p.rotate(ref);
    await p.setVersionState(ref, k.primaryVersion, 'disabled');
    const e = await rejection(p.unwrap(ref, w, ctx));
    expect((e as ProviderError).providerCode).toBe('Forbidden');
    expect((e as ProviderError).retryable).toBe(false);
  });
});

describe('throttling and faults', () => {
  it('a 429 storm surfaces as retryable, throttled ProviderErrors; 503 as retryable', async () => {
    const fresh = await emulator({ faults: { quota: true, quotaPer10s: { software: 6 } } });
    try {
      const q = provider(fresh);
      const k = await q.createKey({ name: 'storm' });
      const ref = parseKeyRef(k.ref) as AzureKvRef;
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, () => q.wrap(ref, randomBytes(32), ctx)),
      );
      const refused = outcomes
        .filter((o) => o.status === 'rejected')
        .map((o) => (o as PromiseRejectedResult).reason);
      expect(refused.length).toBeGreaterThan(0);
      for (const e of refused) {
        expect(e).toBeInstanceOf(ProviderError);
        expect(e).toMatchObject({ providerCode: 'Throttled', retryable: true, throttled: true });
      }
      expect(fresh.faults.counts.quota).toBe(refused.length);

      fresh.faults.set({ quota: false });
      fresh.faults.failNext('getKey', 503, 'ServiceUnavailable', 1);
      const e = await rejection(q.getKey(ref));
      expect(e).toMatchObject({ providerCode: 'ServiceUnavailable', retryable: true, throttled: false });
    } finally {
      await fresh.close();
    }
  });

  it('with retries configured, the SDK waits out a 429 and the call succeeds', async () => {
    const fresh = await emulator({ faults: { retryAfterMs: 20 } });
    try {
      const q = provider(fresh, { retry: { maxRetries: 3 } });
      const k = await q.createKey({ name: 'patient' });
      fresh.faults.failNext('wrapKey', 429, 'Throttled', 2);
      const w = await q.wrap(parseKeyRef(k.ref), randomBytes(32), ctx);
      expect(w.version).toBe(k.primaryVersion);
      expect(fresh.faults.counts['scripted:Throttled']).toBe(2);
    } finally {
      await fresh.close();
    }
  });
});

describe('events', () => {
  it('parses the events the vault publishes into neutral key events with the provider ref', async () => {
    const fresh = await emulator();
    try {
      const q = provider(fresh);
      const k = await q.createKey({ name: 'evented' });
      const v2 = await q.rotate(parseKeyRef(k.ref));
      const parsed = parseKeyVaultEvents(fresh.events.events);
      expect(parsed.map((e) => [e.keyRef, e.kind, e.version])).toEqual([
        [k.ref, 'version_created', k.primaryVersion],
        [k.ref, 'version_created', v2.id],
      ]);
      expect(parsed[0]!.eventId).toBe(fresh.events.events[0]!.id);
      expect(Number.isNaN(Date.parse(parsed[0]!.at))).toBe(false);
      await sdkClient(fresh, VAULT).updateKeyProperties('evented', v2.id, {
        expiresOn: new Date(fresh.clock.nowMs() + 5 * 86_400_000),
      });
      fresh.clock.advanceDays(6);
      expect(parseKeyVaultEvents(fresh.events.events).map((e) => e.kind)).toEqual([
        'version_created',
        'version_created',
        'near_expiry',
        'expired',
      ]);
    } finally {
      await fresh.close();
    }
  });

  it('refuses malformed events and unknown types, naming the field', () => {
    const good = {
      id: 'e1',
      topic: '/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/rekey-prod',
      subject: 'k1',
      eventType: 'Microsoft.KeyVault.KeyNewVersionCreated',
      eventTime: '2026-01-01T00:00:00Z',
      data: {
        Id: `https://${VAULT}/keys/k1/0123456789abcdef0123456789abcdef`,
        VaultName: 'rekey-prod',
        ObjectType: 'Key',
        ObjectName: 'k1',
        Version: '0123456789abcdef0123456789abcdef',
        NBF: null,
        EXP: null,
      },
      dataVersion: '1',
      metadataVersion: '1',
    };
    expect(parseKeyVaultEvent(good)).toMatchObject({
      keyRef: `azure-kv://${VAULT}/keys/k1`,
      kind: 'version_created',
    });
    const bad: [string, unknown][] = [
      ['eventType', { ...good, eventType: 'Microsoft.KeyVault.SecretNewVersionCreated' }],
      ['eventType', { ...good, eventType: undefined }],
      ['eventTime', { ...good, eventTime: 'yesterday' }],
      ['data', { ...good, data: 'x' }],
      ['data.ObjectType', { ...good, data: { ...good.data, ObjectType: 'Secret' } }],
      ['data.Id', { ...good, data: { ...good.data, Id: 'not a url' } }],
      ['data.Id', { ...good, data: { ...good.data, Id: 'https://evil.example.com/keys/k1/v' } }],
      ['data.ObjectName', { ...good, data: { ...good.data, ObjectName: 'k2' } }],
      ['data.Version', { ...good, data: { ...good.data, Version: 'ffffffffffffffffffffffffffffffff' } }],
      ['data.EXP', { ...good, data: { ...good.data, EXP: 'soon' } }],
      ['id', { ...good, id: '' }],
      ['event', null],
    ];
    for (const [field, input] of bad) {
      let err: unknown;
      try {
        parseKeyVaultEvent(input);
      } catch (e) {
        err = e;
      }
      expect(err, field).toBeInstanceOf(ValidationError);
      expect((err as Error).message, field).toContain(field);
    }
    expect(() => parseKeyVaultEvents([good, { ...good, eventType: 'x' }])).toThrow(/\[1\]: eventType/);
    const cloudEvent = {
      specversion: '1.0',
      id: good.id,
      source: good.topic,
      subject: good.subject,
      type: good.eventType,
      time: good.eventTime,
      data: good.data,
    };
    expect(parseKeyVaultEvent(cloudEvent)).toEqual(parseKeyVaultEvent(good));
    expect(() => parseKeyVaultEvent({ ...cloudEvent, specversion: '0.3' })).toThrow(/specversion/);
    expect(() => parseKeyVaultEvent({ ...cloudEvent, type: undefined })).toThrow(/eventType/);
  });
});
