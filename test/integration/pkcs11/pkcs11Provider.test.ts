import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KeyRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ConfigError, NotFoundError, ProviderError, RekeyError } from '../../../shared/core/errors.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { WrapContext } from '../../../shared/core/ports/KeyProvider.js';
import { Pkcs11Provider } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { type SoftHsm, startSoftHsm } from '../../support/softhsm.js';

const DAY = 86_400_000;
const ctx: WrapContext = { tenant: 'acme', table: 'orders', row: '7' };

let hsm: SoftHsm;
let provider: Pkcs11Provider;
const clock = new ManualClock('2026-01-01T00:00:00Z');
let n = 0;

/** A second handle on the module, in this process: it sees the provider's session objects. */
function rawHandle(): { p: pkcs11js.PKCS11; s: Buffer; slot: Buffer; done(): void } {
  const p = new pkcs11js.PKCS11();
  p.load(hsm.module);
  try {
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (!String((e as Error).message).includes('CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw e;
  }
  const slot = p.C_GetSlotList(true).find((sl) => p.C_GetTokenInfo(sl).label.trim() === hsm.label)!;
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  return { p, s, slot, done: () => p.C_CloseSession(s) };
}

/**
 * Session (non-token) objects currently alive in this process: DEKs (generic secrets) and
 * derived keys or version key copies (AES), or only those of `keyType`.
 */
function sessionObjects(keyType?: number): number {
  const r = rawHandle();
  try {
    r.p.C_FindObjectsInit(r.s, [
      { type: pkcs11js.CKA_TOKEN, value: false },
      ...(keyType === undefined ? [] : [{ type: pkcs11js.CKA_KEY_TYPE, value: keyType }]),
    ]);
    const found = r.p.C_FindObjects(r.s, 1000);
    r.p.C_FindObjectsFinal(r.s);
    return found.length;
  } finally {
    r.done();
  }
}

function tokenSnapshot(): string[] {
  const keys = hsm.listObjects('secrkey').map((o) => `key ${o.label} ${o.id} ${o.usage.join('+')}`);
  const data = hsm.listObjects('data').map((o) => `data ${o.label}`);
  return [...keys, ...data].sort();
}

async function newKey(label: string): Promise<KeyRef> {
  n += 1;
  const key = await provider.createKey({ name: `it-${label}-${n}` });
  return parseKeyRef(key.ref);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

beforeAll(async () => {
  hsm = await startSoftHsm({ label: 'it-main', pin: '246810' });
  hsm.addToken('it-other', '135790');
  provider = await Pkcs11Provider.open({
    id: 'hsm',
    module: hsm.module,
    token: hsm.label,
    pin: hsm.pin,
    clock,
  });
});

afterAll(async () => {
  await provider?.close();
  await hsm?.cleanup();
});

describe('token objects', () => {
  it('version keys are sensitive, never extractable and only derive; no DEK or session object outlives an operation', async () => {
    const ref = await newKey('objects');
    const name = ref.type === 'pkcs11' ? ref.attributes.object! : '';
    const deks = Array.from({ length: 5 }, () => randomBytes(32));
    const wrapped = await Promise.all(deks.map((d) => provider.wrap(ref, d, ctx)));
    await provider.rotate(ref);
    const moved = await Promise.all(wrapped.map((w) => provider.rewrap(ref, w, ctx)));
    const many = await provider.rewrapMany(
      ref,
      wrapped.map((w) => ({ wrapped: w, ctx })),
    );
    expect(many.every((r) => r.ok)).toBe(true);
    for (let i = 0; i < deks.length; i++) {
      const out = await provider.unwrap(ref, moved[i]!, ctx);
      expect(Buffer.from(out).equals(deks[i]!)).toBe(true);
    }
    // rewrapMany keeps its derived keys and version key copies for the next batch; no DEK survives.
    expect(sessionObjects(pkcs11js.CKK_GENERIC_SECRET)).toBe(0);
    expect(sessionObjects()).toBeGreaterThan(0);
    provider.flushKeyCache();
    expect(sessionObjects()).toBe(0);

    const objs = hsm.listObjects('secrkey').filter((o) => o.label === name);
    expect(objs).toHaveLength(2);
    for (const o of objs) {
      expect(o.kind).toContain('AES length 32');
      expect(o.access).toEqual(
        expect.arrayContaining(['sensitive', 'always sensitive', 'never extractable']),
      );
      expect(o.usage).toEqual(['derive']);
    }
    // Every secret key on the token is a version of a managed key: no DEK became a token object.
    const page = await provider.listKeys({ pageSize: 1000 }, null);
    const versions = page.items.reduce(
      (a, k) => a + k.versions.filter((v) => v.state !== 'destroyed').length,
      0,
    );
    expect(hsm.listObjects('secrkey')).toHaveLength(versions);
    expect(hsm.listObjects('data')).toHaveLength(page.items.length);
  });

  it('disabling a version clears its usage flag on the token; enabling restores it', async () => {
    const ref = await newKey('flags');
    const name = ref.type === 'pkcs11' ? ref.attributes.object! : '';
    await provider.rotate(ref);
    await provider.setVersionState(ref, '1', 'disabled');
    const usage = () =>
      Object.fromEntries(
        hsm
          .listObjects('secrkey')
          .filter((o) => o.label === name)
          .map((o) => [o.id, o.usage]),
      );
    const v1 = Buffer.concat([Buffer.from(name), Buffer.from([0]), Buffer.from('1')]).toString('hex');
    expect(usage()[v1]).not.toContain('derive');
    await provider.setVersionState(ref, '1', 'enabled');
    expect(usage()[v1]).toEqual(['derive']);
  });

  it('scheduled destruction destroys the key object on first access after destroyAt', async () => {
    const ref = await newKey('destroy');
    const name = ref.type === 'pkcs11' ? ref.attributes.object! : '';
    const old = await provider.wrap(ref, randomBytes(32), ctx);
    await provider.rotate(ref);
    await provider.setVersionState(ref, '1', 'disabled');
    const { destroyAt } = await provider.scheduleDestroy(ref, '1', 7);
    expect(Date.parse(destroyAt) - clock.now().getTime()).toBe(7 * DAY);
    clock.advance(6 * DAY);
    expect((await provider.getKey(ref)).versions[0]!.state).toBe('destroy_scheduled');
    expect(hsm.listObjects('secrkey').filter((o) => o.label === name)).toHaveLength(2);

    clock.advance(2 * DAY);
    const key = await provider.getKey(ref);
    expect(key.versions[0]).toMatchObject({ id: '1', state: 'destroyed' });
    expect(hsm.listObjects('secrkey').filter((o) => o.label === name)).toHaveLength(1);
    expect(await rejection(provider.unwrap(ref, old, ctx))).toBeInstanceOf(NotFoundError);
    // Metadata is rewritten, not duplicated.
    expect(hsm.listObjects('data').filter((o) => o.label === name)).toHaveLength(1);
  });
});

describe('recovery from interrupted writes', () => {
  it('readers take the newest metadata generation; the next write removes the older one', async () => {
    const ref = await newKey('gen');
    const name = ref.type === 'pkcs11' ? ref.attributes.object! : '';
    const current = await provider.getKey(ref);
    // A write that created generation 1 and stopped before destroying generation 0.
    const r = rawHandle();
    try {
      const meta = {
        format: 'rekey.pkcs11/1',
        gen: 1,
        name,
        createdAt: current.createdAt,
        primary: '1',
        tags: { team: 'payments' },
        versions: current.versions,
      };
      r.p.C_CreateObject(r.s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_APPLICATION, value: 'rekey' },
        { type: pkcs11js.CKA_LABEL, value: name },
        { type: pkcs11js.CKA_VALUE, value: Buffer.from(JSON.stringify(meta)) },
      ]);
    } finally {
      r.done();
    }
    expect(hsm.listObjects('data').filter((o) => o.label === name)).toHaveLength(2);
    expect((await provider.getKey(ref)).tags).toEqual({ team: 'payments' });
    await provider.rotate(ref);
    expect(hsm.listObjects('data').filter((o) => o.label === name)).toHaveLength(1);
    const after = await provider.getKey(ref);
    expect(after.tags).toEqual({ team: 'payments' });
    expect(after.versions.map((v) => v.id)).toEqual(['1', '2']);
  });

  it('a key object left by an interrupted rotation is replaced, not reused', async () => {
    const ref = await newKey('orphan');
    const name = ref.type === 'pkcs11' ? ref.attributes.object! : '';
    const r = rawHandle();
    try {
      // What a rotation leaves when it stops between C_GenerateKey and the metadata write.
      r.p.C_GenerateKey(r.s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_LABEL, value: name },
        {
          type: pkcs11js.CKA_ID,
          value: Buffer.concat([Buffer.from(name), Buffer.from([0]), Buffer.from('2')]),
        },
        { type: pkcs11js.CKA_DERIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      ]);
    } finally {
      r.done();
    }
    expect(hsm.listObjects('secrkey').filter((o) => o.label === name)).toHaveLength(2);
    const v2 = await provider.rotate(ref);
    expect(v2.id).toBe('2');
    const objs = hsm.listObjects('secrkey').filter((o) => o.label === name);
    expect(objs).toHaveLength(2);
    // The extractable orphan is gone: every version key is one rekey generated.
    for (const o of objs) expect(o.access).toContain('never extractable');
  });
});

describe('failures are clear and change nothing on the token', () => {
  it('wrong PIN, missing or unloadable module, unknown token, unsupported mechanism', async () => {
    const ref = await newKey('before');
    await provider.wrap(ref, randomBytes(32), ctx);
    const before = tokenSnapshot();
    const base = { id: 'hsm-bad', module: hsm.module, token: 'it-other', pin: '135790' };

    // The other token has never been logged in by this process, so the PIN is really checked.
    const wrongPin = await rejection(Pkcs11Provider.open({ ...base, pin: '999111' }));
    expect(wrongPin).toBeInstanceOf(ProviderError);
    expect((wrongPin as ProviderError).providerCode).toBe('CKR_PIN_INCORRECT');
    expect((wrongPin as ProviderError).retryable).toBe(false);
    expect((wrongPin as Error).message).toContain('it-other');
    expect((wrongPin as Error).message).not.toContain('999111');

    const missing = await rejection(Pkcs11Provider.open({ ...base, module: '/nonexistent/libnothing.so' }));
    expect(missing).toBeInstanceOf(ConfigError);
    expect((missing as Error).message).toContain('/nonexistent/libnothing.so');

    const unloadable = await rejection(Pkcs11Provider.open({ ...base, module: hsm.conf }));
    expect(unloadable).toBeInstanceOf(ConfigError);
    expect((unloadable as Error).message).toContain('could not be loaded');

    const noToken = await rejection(Pkcs11Provider.open({ ...base, token: 'no-such-token' }));
    expect(noToken).toBeInstanceOf(ConfigError);
    expect((noToken as Error).message).toContain('no-such-token');
    expect((noToken as Error).message).toContain('"it-main"');

    // PKCS#11 3.0 name of RFC 5649 wrap: SoftHSM 2.6 does not offer it.
    const mech = await rejection(Pkcs11Provider.open({ ...base, wrapMechanism: 'kwp' }));
    expect(mech).toBeInstanceOf(ProviderError);
    expect((mech as ProviderError).providerCode).toBe('CKR_MECHANISM_INVALID');
    expect((mech as Error).message).toContain('CKM_AES_KEY_WRAP_KWP');

    for (const e of [wrongPin, missing, unloadable, noToken, mech]) {
      expect((e as Error).message).not.toContain('135790');
      expect((e as Error).message).not.toContain(hsm.pin);
    }
    expect(tokenSnapshot()).toEqual(before);
    // The main provider still works after the failed opens on the same module.
    const dek = randomBytes(16);
    const w = await provider.wrap(ref, dek, ctx);
    expect(Buffer.from(await provider.unwrap(ref, w, ctx)).equals(dek)).toBe(true);
  });

  it('a tampered wrapped DEK fails permanently, in unwrap and in rewrap, and leaves no object behind', async () => {
    const ref = await newKey('tamper');
    const w = await provider.wrap(ref, randomBytes(32), ctx);
    await provider.rotate(ref);
    const before = tokenSnapshot();
    const bad = Uint8Array.from(w.ciphertext);
    bad[9] = (bad[9] ?? 0) ^ 0x80;
    for (const op of [
      () => provider.unwrap(ref, { version: w.version, ciphertext: bad }, ctx),
      () => provider.rewrap(ref, { version: w.version, ciphertext: bad }, ctx),
      () => provider.rewrap(ref, w, { ...ctx, row: '8' }),
    ]) {
      const e = await rejection(op());
      expect(e).toBeInstanceOf(ProviderError);
      expect((e as ProviderError).retryable).toBe(false);
      expect((e as Error).message).toContain('does not authenticate');
    }
    expect(sessionObjects()).toBe(0);
    expect(tokenSnapshot()).toEqual(before);
  });

  it('refs for another token or without object= are refused before any token call', async () => {
    const e1 = await rejection(provider.getKey(parseKeyRef('pkcs11:token=elsewhere;object=k')));
    expect(e1).toBeInstanceOf(RekeyError);
    expect((e1 as Error).message).toContain('elsewhere');
    const e2 = await rejection(provider.getKey(parseKeyRef(`pkcs11:token=${hsm.label};id=%01`)));
    expect((e2 as Error).message).toContain('object=');
  });
});

describe('sessions', () => {
  it('logs in again after the token was logged out under it', async () => {
    const ref = await newKey('relogin');
    const dek = randomBytes(32);
    const w = await provider.wrap(ref, dek, ctx);
    const r = rawHandle();
    try {
      // Login state is per application and token: this logs out every session of the process.
      r.p.C_Logout(r.s);
      expect(r.p.C_GetSessionInfo(r.s).state).toBe(2); // CKS_RW_PUBLIC_SESSION
      expect((await provider.getKey(ref)).primaryVersion).toBe('1');
      expect(r.p.C_GetSessionInfo(r.s).state).toBe(3); // CKS_RW_USER_FUNCTIONS

      r.p.C_Logout(r.s);
      expect(Buffer.from(await provider.unwrap(ref, w, ctx)).equals(dek)).toBe(true);
      r.p.C_Logout(r.s);
      const again = await provider.rewrapMany(ref, [{ wrapped: w, ctx }]);
      expect(again[0]!.ok).toBe(true);
    } finally {
      r.done();
    }
  });

  it('two providers on one token: cached state is re-read on an unknown version, disable is enforced by the token', async () => {
    const other = await Pkcs11Provider.open({
      id: 'hsm-2',
      module: hsm.module,
      token: hsm.label,
      pin: hsm.pin,
      refreshIntervalMs: 600_000,
    });
    const ref = await newKey('shared');
    const dek1 = randomBytes(32);
    const dek2 = randomBytes(32);
    try {
      const w1 = await other.wrap(ref, dek1, ctx); // `other` now caches version 1 as the primary
      const v2 = await provider.rotate(ref);
      const w2 = await provider.wrap(ref, dek2, ctx);
      expect(w2.version).toBe(v2.id);
      expect(Buffer.from(await other.unwrap(ref, w2, ctx)).equals(dek2)).toBe(true);
      expect((await other.wrap(ref, dek1, ctx)).version).toBe(v2.id);

      await provider.setVersionState(ref, '1', 'disabled');
      const e = await rejection(other.unwrap(ref, w1, ctx));
      expect(e).toBeInstanceOf(ProviderError);
      expect((e as ProviderError).providerCode).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
    } finally {
      await other.close();
    }
    // Closing one provider neither logs out nor finalizes under the other.
    const w = await provider.wrap(ref, dek1, ctx);
    expect(Buffer.from(await provider.unwrap(ref, w, ctx)).equals(dek1)).toBe(true);
  });

  it('runs many concurrent operations through the pool', async () => {
    const ref = await newKey('concurrent');
    const deks = Array.from({ length: 50 }, () => randomBytes(32));
    const wrapped = await Promise.all(deks.map((d) => provider.wrap(ref, d, ctx)));
    const out = await Promise.all(wrapped.map((w) => provider.unwrap(ref, w, ctx)));
    expect(out.map((o, i) => Buffer.from(o).equals(deks[i]!))).toEqual(deks.map(() => true));
  });
});

describe('rewrapMany', () => {
  it('reports bad items and moves the others', async () => {
    const ref = await newKey('many');
    const deks = Array.from({ length: 6 }, () => randomBytes(32));
    const items = await Promise.all(
      deks.map(async (d) => ({ wrapped: await provider.wrap(ref, d, ctx), ctx })),
    );
    const tampered = Uint8Array.from(items[1]!.wrapped.ciphertext);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    items[1] = { wrapped: { version: '1', ciphertext: tampered }, ctx };
    items[3] = { wrapped: items[3]!.wrapped, ctx: { ...ctx, row: 'other' } };
    items[4] = { wrapped: { version: '9', ciphertext: items[4]!.wrapped.ciphertext }, ctx };
    const v2 = await provider.rotate(ref);

    const results = await provider.rewrapMany(ref, items);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, false, false, true]);
    const r1 = results[1]!;
    const r4 = results[4]!;
    if (r1.ok || r4.ok) throw new Error('unreachable');
    expect(r1.error).toMatchObject({ code: 'PROVIDER', retryable: false });
    expect(r1.error.message).toContain('item 1');
    expect(r4.error).toMatchObject({ code: 'NOT_FOUND' });
    for (const i of [0, 2, 5]) {
      const r = results[i]!;
      if (!r.ok) throw new Error(`item ${i} failed: ${r.error.message}`);
      expect(r.wrapped.version).toBe(v2.id);
      expect(Buffer.from(await provider.unwrap(ref, r.wrapped, ctx)).equals(deks[i]!)).toBe(true);
    }
    expect(sessionObjects(pkcs11js.CKK_GENERIC_SECRET)).toBe(0);
    provider.flushKeyCache();
    expect(sessionObjects()).toBe(0);
  });

  it('binds a frozen context (as a store hands out) exactly as its plain copy', async () => {
    const ref = await newKey('frozen');
    const a = Object.freeze({ ...ctx });
    const b = Object.freeze({ ...ctx, row: '8' });
    const deks = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const items = [
      { wrapped: await provider.wrap(ref, deks[0]!, ctx), ctx: a },
      { wrapped: await provider.wrap(ref, deks[1]!, ctx), ctx: b },
      { wrapped: await provider.wrap(ref, deks[2]!, { ...ctx, row: '8' }), ctx: b },
    ];
    await provider.rotate(ref);
    // Twice: the second batch meets the same frozen objects again.
    for (let round = 0; round < 2; round++) {
      const res = await provider.rewrapMany(ref, items);
      expect(res.map((r) => r.ok)).toEqual([true, false, true]);
      const r0 = res[0]!;
      const r2 = res[2]!;
      if (!r0.ok || !r2.ok) throw new Error('unreachable');
      expect(Buffer.from(await provider.unwrap(ref, r0.wrapped, { ...ctx })).equals(deks[0]!)).toBe(true);
      expect(Buffer.from(await provider.unwrap(ref, r2.wrapped, { ...ctx, row: '8' })).equals(deks[2]!)).toBe(
        true,
      );
      await expect(provider.unwrap(ref, r2.wrapped, a)).rejects.toBeInstanceOf(RekeyError);
    }
  });

  it('can target an older enabled version and refuses a disabled one per item', async () => {
    const ref = await newKey('target');
    const dek = randomBytes(24);
    const w1 = await provider.wrap(ref, dek, ctx);
    await provider.rotate(ref);
    const w2 = await provider.wrap(ref, dek, ctx);
    const up = await provider.rewrap(ref, w1, ctx);
    const back = await provider.rewrapMany(ref, [{ wrapped: up, ctx }], '1');
    if (!back[0]!.ok) throw new Error(back[0]!.error.message);
    expect(back[0]!.wrapped.version).toBe('1');
    // Rewrap is deterministic for one payload: back under version 1 it is the original ciphertext.
    expect(Buffer.from(back[0]!.wrapped.ciphertext).equals(Buffer.from(w1.ciphertext))).toBe(true);

    await provider.setVersionState(ref, '1', 'disabled');
    const res = await provider.rewrapMany(ref, [
      { wrapped: w1, ctx },
      { wrapped: w2, ctx },
    ]);
    expect(res[0]!.ok).toBe(false);
    if (!res[0]!.ok) expect(res[0]!.error.providerCode).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
    expect(res[1]!.ok).toBe(true);
    // A disabled target is a problem of the whole batch, not of its items.
    const whole = await rejection(provider.rewrapMany(ref, [{ wrapped: w2, ctx }], '1'));
    expect(whole).toBeInstanceOf(ProviderError);
    expect((whole as ProviderError).providerCode).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
  });

  it('keeps derived keys between batches, bounded, and drops them when the token refuses their version', async () => {
    const ref = await newKey('cache');
    const contexts = Array.from({ length: 6 }, (_, i) => ({ tenant: `t${i}` }));
    const deks = contexts.map(() => randomBytes(32));
    const items = await Promise.all(
      deks.map(async (d, i) => ({ wrapped: await provider.wrap(ref, d, contexts[i]!), ctx: contexts[i]! })),
    );
    await provider.rotate(ref);
    provider.flushKeyCache();
    const first = await provider.rewrapMany(ref, items, '2');
    expect(first.every((r) => r.ok)).toBe(true);
    // 6 contexts x 2 versions derived keys + 2 version key copies, no DEK.
    expect(sessionObjects(pkcs11js.CKK_AES)).toBe(14);
    expect(sessionObjects(pkcs11js.CKK_GENERIC_SECRET)).toBe(0);
    const second = await provider.rewrapMany(ref, items, '2');
    expect(second.map((r) => r.ok && Buffer.from(r.wrapped.ciphertext).toString('hex'))).toEqual(
      first.map((r) => r.ok && Buffer.from(r.wrapped.ciphertext).toString('hex')),
    );
    expect(sessionObjects(pkcs11js.CKK_AES)).toBe(14);

    // Another provider (as another process would) disables version 1: no cached key serves it.
    const other = await Pkcs11Provider.open({
      id: 'hsm-3',
      module: hsm.module,
      token: hsm.label,
      pin: hsm.pin,
    });
    try {
      await other.setVersionState(ref, '1', 'disabled');
      const refused = await provider.rewrapMany(ref, items, '2');
      for (const r of refused) {
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.error.providerCode).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
      }
      // Version 1's copy and its 6 derived keys are gone; version 2's stay.
      expect(sessionObjects(pkcs11js.CKK_AES)).toBe(7);
      await other.setVersionState(ref, '1', 'enabled');
      const back = await provider.rewrapMany(ref, items, '2');
      expect(back.every((r) => r.ok)).toBe(true);

      // A disabled target fails the whole batch even while this provider's metadata says enabled.
      const moved = back.map((r, i) => ({
        wrapped: r.ok ? r.wrapped : items[i]!.wrapped,
        ctx: items[i]!.ctx,
      }));
      const toOne = await provider.rewrapMany(ref, moved, '1');
      expect(toOne.every((r) => r.ok)).toBe(true);
      await other.setVersionState(ref, '1', 'disabled');
      const whole = await rejection(provider.rewrapMany(ref, moved, '1'));
      expect((whole as ProviderError).providerCode).toBe('CKR_KEY_FUNCTION_NOT_PERMITTED');
    } finally {
      await other.close();
    }
    provider.flushKeyCache();

    // Bounded: with room for 4 derived keys, 6 contexts still all move and at most 4 stay.
    const small = await Pkcs11Provider.open({
      id: 'hsm-4',
      module: hsm.module,
      token: hsm.label,
      pin: hsm.pin,
      derivedKeyCacheSize: 4,
    });
    try {
      await small.setVersionState(ref, '1', 'enabled');
      const res = await small.rewrapMany(ref, items, '2');
      expect(res.every((r) => r.ok)).toBe(true);
      expect(sessionObjects(pkcs11js.CKK_AES)).toBe(4 + 2);
      for (let i = 0; i < res.length; i++) {
        const r = res[i]!;
        if (!r.ok) throw new Error(r.error.message);
        expect(Buffer.from(await small.unwrap(ref, r.wrapped, contexts[i]!)).equals(deks[i]!)).toBe(true);
      }
    } finally {
      await small.close();
    }
    expect(sessionObjects()).toBe(0);
  });

  it('a logout under the cache (private session objects destroyed) costs a re-login, not failed items', async () => {
    const ref = await newKey('cache-logout');
    const dek = randomBytes(32);
    const w = await provider.wrap(ref, dek, ctx);
    await provider.rotate(ref);
    expect((await provider.rewrapMany(ref, [{ wrapped: w, ctx }], '2'))[0]!.ok).toBe(true);
    const r = rawHandle();
    try {
      r.p.C_Logout(r.s);
    } finally {
      r.done();
    }
    const again = await provider.rewrapMany(ref, [{ wrapped: w, ctx }], '2');
    if (!again[0]!.ok) throw new Error(again[0]!.error.message);
    expect(Buffer.from(await provider.unwrap(ref, again[0]!.wrapped, ctx)).equals(dek)).toBe(true);
  });
});
