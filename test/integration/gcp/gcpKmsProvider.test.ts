/**
 * GcpKmsProvider beyond the shared contract: inventory across places, the Cloud KMS facts the
 * port has to respect (fixed destroy delay, automatic rotation, billed versions), and bad
 * input and faults: malformed refs, wrong location, corrupted responses, retired versions,
 * quota exhaustion.
 */
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type GcpKmsRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { checkKey } from '../../../shared/core/domain/lifecycle.js';
import {
  IntegrityError,
  InvariantViolation,
  NotFoundError,
  ProviderError,
  ValidationError,
} from '../../../shared/core/errors.js';
import {
  GcpKmsProvider,
  type GcpKmsProviderOptions,
  gcpEndpointOptions,
} from '../../../shared/providers/gcp/GcpKmsProvider.js';
import type { GcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { DAY_MS, emulator, LOCATION, PROJECT, rejectionOf } from './helpers.js';

let emu: GcpKmsEmulator;
let p: GcpKmsProvider;
const extra: GcpKmsProvider[] = [];
const ctx = { tenant: 'acme', row: '7' };
let n = 0;
/** The rejection as the ProviderError the assertions before it established. */
const pe = (e: unknown) => e as ProviderError;

function provider(opts: Partial<GcpKmsProviderOptions> = {}): GcpKmsProvider {
  const made = new GcpKmsProvider({
    id: 'gcp-t',
    projects: [PROJECT],
    locations: [LOCATION],
    keyRings: ['main'],
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    insecure: true,
    libraryRetries: false,
    clock: emu.clock,
    ...opts,
  });
  extra.push(made);
  return made;
}

async function key(tags?: Record<string, string>, via: GcpKmsProvider = p): Promise<GcpKmsRef> {
  n += 1;
  return parseKeyRef((await via.createKey({ name: `pk-${n}`, ...(tags ? { tags } : {}) })).ref) as GcpKmsRef;
}

beforeAll(async () => {
  emu = await emulator();
});
beforeEach(async () => {
  // A request an earlier test left waiting on injected latency must not eat this test's faults.
  await emu.settled();
  emu.faults.reset();
  p = provider();
});
afterAll(async () => {
  for (const x of extra) await x.close();
  await emu?.close();
});

describe('inventory', () => {
  it('lists keys across projects, locations and discovered rings, with labels, protection and billing facts', async () => {
    const hsm = provider({
      projects: ['inventory-a'],
      locations: ['us-east1'],
      keyRings: ['r1'],
      createProtection: 'hsm',
    });
    const soft = provider({ projects: ['inventory-b'], locations: ['global'], keyRings: ['r2'] });
    const h = await key({ team: 'pay' }, hsm);
    await hsm.rotate(h);
    const s = await key(undefined, soft);
    await soft.setAutoRotation(s, 90);
    // Discovery: no keyRings configured; an empty location in between.
    const all = provider({
      projects: ['inventory-a', 'inventory-b'],
      locations: ['us-east1', 'asia-east1', 'global'],
      keyRings: undefined,
    });
    const seen = new Map<string, Awaited<ReturnType<GcpKmsProvider['getKey']>>>();
    let cursor: string | null = null;
    do {
      const page = await all.listKeys({ pageSize: 1 }, cursor);
      for (const k of page.items) seen.set(k.ref, k);
      cursor = page.cursor;
    } while (cursor);
    expect([...seen.keys()].sort()).toEqual([h.uri, s.uri].sort());
    const hk = seen.get(h.uri)!;
    expect(hk.tags).toEqual({ team: 'pay' });
    expect(hk.protection).toBe('hsm');
    expect(hk.algorithm).toBe('AES_256');
    expect(hk.versions.map((v) => v.id)).toEqual(['1', '2']);
    expect(hk.primaryVersion).toBe('2');
    expect(hk.gcp.billableVersions).toBe(2);
    expect(hk.gcp.monthlyListCostUsd).toBe(2);
    expect(hk.gcp.destroyScheduledDays).toBe(30);
    expect(() => checkKey(hk)).not.toThrow();
    const sk = seen.get(s.uri)!;
    expect(sk.protection).toBe('software');
    expect(sk.autoRotation?.periodDays).toBe(90);
    expect(Date.parse(sk.autoRotation!.nextRotationAt!) - emu.clock.nowMs()).toBeGreaterThan(89 * DAY_MS);
    expect(sk.gcp.monthlyListCostUsd).toBe(0.06);

    const prefixed = await all.listKeys({ namePrefix: 'no-such-prefix' }, null);
    expect(prefixed.items).toEqual([]);
    await expect(all.listKeys({}, 'not-a-cursor')).rejects.toBeInstanceOf(ValidationError);
  });

  it('reflects automatic rotations that happened on the service', async () => {
    const ref = await key();
    const wrapped = await p.wrap(ref, randomBytes(32), ctx);
    await p.setAutoRotation(ref, 1);
    emu.clock.advance(2 * DAY_MS + 60_000);
    const k = await p.getKey(ref);
    expect(k.versions.map((v) => v.id)).toEqual(['1', '2', '3']);
    expect(k.primaryVersion).toBe('3');
    expect(k.gcp.billableVersions).toBe(3);
    // The provider learns the new primary instead of calling the old ciphertext suspicious.
    const fresh = provider();
    expect((await fresh.unwrap(ref, wrapped, ctx)).length).toBe(32);
    expect((await fresh.wrap(ref, randomBytes(16), ctx)).version).toBe('3');
  });
});

describe('destroy delay fixed per key', () => {
  it('accepts only the delay the key was created with', async () => {
    const seven = provider({ destroyScheduledDays: 7 });
    const ref = await key(undefined, seven);
    await seven.rotate(ref);
    const e = await rejectionOf(seven.scheduleDestroy(ref, '1', 30));
    expect(e).toBeInstanceOf(ProviderError);
    expect(pe(e).providerCode).toBe('FixedDestroyDelay');
    expect(pe(e).retryable).toBe(false);
    expect(e.message).toContain('7 days');
    const t0 = emu.clock.nowMs();
    const { destroyAt } = await seven.scheduleDestroy(ref, '1', 7);
    expect(Math.abs(Date.parse(destroyAt) - t0 - 7 * DAY_MS)).toBeLessThan(5_000);
    // Scheduling again is harmless and reports the same instant.
    expect((await seven.scheduleDestroy(ref, '1', 7)).destroyAt).toBe(destroyAt);
    expect(
      () =>
        new GcpKmsProvider({
          id: 'x',
          projects: [PROJECT],
          locations: [LOCATION],
          destroyScheduledDays: 121,
        }),
    ).toThrow(ValidationError);
  });

  it('restoreVersion cancels a scheduled destruction; once the delay passes the version is destroyed', async () => {
    const ref = await key();
    const old = await p.wrap(ref, randomBytes(32), ctx);
    await p.rotate(ref);
    await p.scheduleDestroy(ref, '1', 30);
    await p.restoreVersion(ref, '1');
    expect((await p.getKey(ref)).versions[0]!.state).toBe('disabled');
    await p.setVersionState(ref, '1', 'enabled');
    expect((await p.unwrap(ref, old, ctx)).length).toBe(32);

    await p.setVersionState(ref, '1', 'disabled');
    await p.scheduleDestroy(ref, '1', 30);
    emu.clock.advance(30 * DAY_MS + 60_000);
    const k = await p.getKey(ref);
    expect(k.versions[0]!.state).toBe('destroyed');
    expect(k.gcp.billableVersions).toBe(1);
    const e = await rejectionOf(p.unwrap(ref, old, ctx));
    expect(e).toBeInstanceOf(ProviderError);
    expect(pe(e).providerCode).toBe('FAILED_PRECONDITION');
    expect(pe(e).retryable).toBe(false);
  });
});

describe('bad input', () => {
  it('refuses malformed refs and refs of another provider before calling the service', async () => {
    for (const bad of [
      'gcp-kms://projects/p/locations/l/keyRings/r',
      'gcp-kms://projects/UPPER/locations/global/keyRings/r/cryptoKeys/k',
      'gcp-kms://projects/rekey-test/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1',
    ]) {
      expect(() => parseKeyRef(bad), bad).toThrow(ValidationError);
    }
    const local = parseKeyRef('local://k');
    expect(await rejectionOf(p.getKey(local))).toBeInstanceOf(ValidationError);
    expect(await rejectionOf(p.wrap(local, randomBytes(32), ctx))).toBeInstanceOf(ValidationError);
    const before = emu.requestCounts.GetCryptoKey ?? 0;
    const ref = await key();
    expect(await rejectionOf(p.wrap(ref, new Uint8Array(0), ctx))).toBeInstanceOf(ValidationError);
    expect(await rejectionOf(p.setAutoRotation(ref, 0.5))).toBeInstanceOf(ValidationError);
    expect(await rejectionOf(p.scheduleDestroy(ref, '1', 0))).toBeInstanceOf(ValidationError);
    expect(emu.requestCounts.GetCryptoKey ?? 0).toBe(before);
    expect(() => new GcpKmsProvider({ id: 'x', projects: [], locations: [LOCATION] })).toThrow(
      ValidationError,
    );
    expect(() => new GcpKmsProvider({ id: 'x', projects: ['Bad Project'], locations: [LOCATION] })).toThrow(
      ValidationError,
    );
  });

  it('a key in a location Cloud KMS does not serve is not found', async () => {
    const ref = parseKeyRef(`gcp-kms://projects/${PROJECT}/locations/moon-base1/keyRings/main/cryptoKeys/k`);
    const e = await rejectionOf(p.getKey(ref));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toContain('moon-base1');
    const wrongPlace = provider({ locations: ['moon-base1'] });
    expect(await rejectionOf(wrongPlace.listKeys({}, null))).toBeInstanceOf(NotFoundError);
  });

  it('refuses to disable or destroy the primary, and an unknown version', async () => {
    const ref = await key();
    expect(await rejectionOf(p.setVersionState(ref, '1', 'disabled'))).toBeInstanceOf(InvariantViolation);
    expect(await rejectionOf(p.scheduleDestroy(ref, '1', 30))).toBeInstanceOf(InvariantViolation);
    expect(await rejectionOf(p.setVersionState(ref, '9', 'enabled'))).toBeInstanceOf(NotFoundError);
  });

  it('a disabled version cannot unwrap: FAILED_PRECONDITION, not retryable', async () => {
    const ref = await key();
    const old = await p.wrap(ref, randomBytes(32), ctx);
    await p.rotate(ref);
    await p.setVersionState(ref, old.version, 'disabled');
    const e = await rejectionOf(p.unwrap(ref, old, ctx));
    expect(e).toBeInstanceOf(ProviderError);
    expect(pe(e).providerCode).toBe('FAILED_PRECONDITION');
    expect(pe(e).retryable).toBe(false);
  });

  it('a ciphertext recorded under the wrong version is an integrity failure', async () => {
    const ref = await key();
    const w = await p.wrap(ref, randomBytes(32), ctx);
    const v2 = await p.rotate(ref);
    // Decrypts fine, but GCP says a non-primary version did it while the record claims the primary.
    const e = await rejectionOf(p.unwrap(ref, { version: v2.id, ciphertext: w.ciphertext }, ctx));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain(`version ${v2.id}`);
  });
});

describe('corrupted responses', () => {
  for (const corrupt of ['checksum', 'data', 'unverified'] as const) {
    it(`wrap detects a corrupted Encrypt response (${corrupt}) as a retryable integrity failure`, async () => {
      const ref = await key();
      emu.faults.set({ corrupt, corruptCount: 1 });
      const e = await rejectionOf(p.wrap(ref, randomBytes(32), ctx));
      expect(e).toBeInstanceOf(ProviderError);
      expect(pe(e).providerCode).toBe('IntegrityCheckFailed');
      expect(pe(e).retryable).toBe(true);
      expect(emu.faults.counts.corrupt).toBe(1);
      // The retry the error invites succeeds.
      const dek = randomBytes(32);
      const w = await p.wrap(ref, dek, ctx);
      expect(Buffer.from(await p.unwrap(ref, w, ctx)).equals(dek)).toBe(true);
    });
  }

  for (const corrupt of ['checksum', 'data'] as const) {
    it(`unwrap detects a corrupted Decrypt response (${corrupt}) and returns nothing`, async () => {
      const ref = await key();
      const dek = randomBytes(32);
      const w = await p.wrap(ref, dek, ctx);
      emu.faults.set({ corrupt, corruptCount: 1 });
      const e = await rejectionOf(p.unwrap(ref, w, ctx));
      expect(e).toBeInstanceOf(ProviderError);
      expect(pe(e).providerCode).toBe('IntegrityCheckFailed');
      expect(pe(e).retryable).toBe(true);
      expect(e.message).not.toContain(dek.toString('hex'));
      expect(Buffer.from(await p.unwrap(ref, w, ctx)).equals(dek)).toBe(true);
    });
  }
});

describe('faults', () => {
  it('quota exhaustion is RESOURCE_EXHAUSTED, retryable and throttled', async () => {
    const ref = await key();
    emu.faults.set({ cryptoRequestsPerMinute: 2 });
    await p.wrap(ref, randomBytes(32), ctx);
    await p.wrap(ref, randomBytes(32), ctx);
    const e = await rejectionOf(p.wrap(ref, randomBytes(32), ctx));
    expect(e).toBeInstanceOf(ProviderError);
    expect(pe(e).providerCode).toBe('RESOURCE_EXHAUSTED');
    expect(pe(e).retryable).toBe(true);
    expect(pe(e).throttled).toBe(true);
    // Another location has its own quota.
    const elsewhere = provider({ locations: ['us-east1'] });
    await elsewhere.wrap(await key(undefined, elsewhere), randomBytes(32), ctx);
  });

  it('UNAVAILABLE, DEADLINE_EXCEEDED and INTERNAL are retryable; PERMISSION_DENIED is not', async () => {
    const ref = await key();
    const cases: [status, boolean][] = [
      [status.UNAVAILABLE, true],
      [status.INTERNAL, true],
      [status.DEADLINE_EXCEEDED, true],
      [status.PERMISSION_DENIED, false],
      [status.INVALID_ARGUMENT, false],
    ];
    for (const [code, retryable] of cases) {
      emu.faults.failNext('Encrypt', code);
      const e = await rejectionOf(p.wrap(ref, randomBytes(32), ctx));
      expect(e, status[code]).toBeInstanceOf(ProviderError);
      expect(pe(e).providerCode).toBe(status[code]);
      expect(pe(e).retryable, status[code]).toBe(retryable);
      expect(pe(e).throttled).toBe(false);
    }
    const slow = provider({ timeoutMs: 50 });
    emu.faults.set({ latencyMs: 300 });
    const e = await rejectionOf(slow.getKey(ref));
    expect(pe(e).providerCode).toBe('DEADLINE_EXCEEDED');
    expect(pe(e).retryable).toBe(true);
  });

  it('with library retries on, a transient UNAVAILABLE is retried by the client library', async () => {
    const ref = await key();
    const retrying = provider({ libraryRetries: true });
    emu.faults.failNext('GetCryptoKey', status.UNAVAILABLE, 1);
    expect((await retrying.getKey(ref)).ref).toBe(ref.uri);
    expect(emu.faults.counts.UNAVAILABLE).toBe(1);
  });

  it('a rotation whose promotion fails names the new version and is not retryable', async () => {
    const ref = await key();
    emu.faults.failNext('UpdateCryptoKeyPrimaryVersion', status.PERMISSION_DENIED);
    const e = await rejectionOf(p.rotate(ref));
    expect(e).toBeInstanceOf(ProviderError);
    expect(pe(e).providerCode).toBe('RotationIncomplete');
    expect(pe(e).retryable).toBe(false);
    expect(e.message).toContain('version 2');
    const k = await p.getKey(ref);
    expect(k.primaryVersion).toBe('1');
    expect(k.versions).toHaveLength(2);
  });
});

describe('configuration', () => {
  it('reads a host:port endpoint; only loopback hosts go without TLS', async () => {
    expect(gcpEndpointOptions('127.0.0.1:8085')).toEqual({
      apiEndpoint: '127.0.0.1',
      port: 8085,
      insecure: true,
    });
    expect(gcpEndpointOptions('localhost:1')).toEqual({ apiEndpoint: 'localhost', port: 1, insecure: true });
    expect(gcpEndpointOptions('[::1]:9000')).toEqual({ apiEndpoint: '::1', port: 9000, insecure: true });
    expect(gcpEndpointOptions('kms.internal.example:443')).toEqual({
      apiEndpoint: 'kms.internal.example',
      port: 443,
      insecure: false,
    });
    for (const bad of ['127.0.0.1', 'host:0', 'host:70000', 'http://host:1', '']) {
      expect(() => gcpEndpointOptions(bad), bad).toThrow(ValidationError);
    }
    // The options reach the emulator.
    const viaConfig = provider({ ...gcpEndpointOptions(`127.0.0.1:${emu.endpoint.port}`) });
    expect((await key(undefined, viaConfig)).type).toBe('gcp-kms');
  });
});
