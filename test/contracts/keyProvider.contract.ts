/**
 * The behaviour every KeyProvider adapter must show, whatever sits behind it (the local
 * software KMS, SoftHSM, or an emulator driven through a cloud SDK). Each adapter's
 * integration test calls `keyProviderContract(name, setup)` once.
 *
 * Provider-neutral on purpose: version ids are opaque strings, ciphertexts are opaque bytes,
 * and refused operations may surface as any RekeyError the adapter chooses, as long as
 * failures that no retry can fix are not marked retryable.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManagedKey } from '../../shared/core/domain/key.js';
import { type KeyRef, PROVIDER_TYPES, parseKeyRef } from '../../shared/core/domain/keyRef.js';
import { checkKey } from '../../shared/core/domain/lifecycle.js';
import { IntegrityError, NotFoundError, ProviderError, RekeyError } from '../../shared/core/errors.js';
import type { KeyProvider, WrapContext, Wrapped } from '../../shared/core/ports/KeyProvider.js';

export interface ContractHarness {
  provider: KeyProvider;
  /**
   * Creates a fresh key with one enabled version and returns its canonical ref, the same
   * `ref` that getKey() and listKeys() report for it. `name` is unique per call and made of
   * lowercase letters, digits and dashes.
   */
  createKey(name: string): Promise<KeyRef>;
  cleanup(): Promise<void>;
}

/**
 * Cases a provider may skip, each with the provider fact that rules it out (for example AWS
 * KMS cannot disable a single key material version). A skip without a reason is refused.
 */
export type ContractCase = 'versionState' | 'scheduleDestroy' | 'autoRotation';

export interface ContractOptions {
  skip?: Partial<Record<ContractCase, string>>;
}

const DEK_SIZES = [16, 32];

let counter = 0;
/** Unique, short, valid for every provider's naming rules. */
function keyName(label: string): string {
  counter += 1;
  return `ct-${label}-${randomBytes(3).toString('hex')}${counter}`;
}

/** A ref of the same provider and place as `ref`, naming a key that does not exist. */
export function missingSibling(ref: KeyRef): KeyRef {
  const tag = `missing-${randomBytes(4).toString('hex')}`;
  switch (ref.type) {
    case 'local':
      return parseKeyRef(`local://${tag}`);
    case 'gcp-kms':
      return parseKeyRef(
        `gcp-kms://projects/${ref.project}/locations/${ref.location}/keyRings/${ref.keyRing}/cryptoKeys/${tag}`,
      );
    case 'azure-kv':
      return parseKeyRef(`azure-kv://${ref.host}/keys/${tag}`);
    case 'aws-kms': {
      const id = globalThis.crypto.randomUUID();
      return parseKeyRef(`aws-kms://arn:${ref.partition}:kms:${ref.region}:${ref.account}:key/${id}`);
    }
    case 'pkcs11': {
      const token = encodeURIComponent(ref.attributes.token ?? '');
      const query = Object.entries(ref.query)
        .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
        .join('&');
      return parseKeyRef(`pkcs11:token=${token};object=${tag}${query ? `?${query}` : ''}`);
    }
  }
}

/** Awaits a rejection and returns the error, failing the test if the promise resolved. */
async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the operation to be refused, but it succeeded');
}

/** A failure no retry can fix: a non-retryable ProviderError (or an IntegrityError). */
function expectPermanentCryptoFailure(e: unknown): void {
  if (e instanceof IntegrityError) return;
  expect(e).toBeInstanceOf(ProviderError);
  const pe = e as ProviderError;
  expect(pe.retryable).toBe(false);
  expect(pe.throttled).toBe(false);
}

/** Refused by the provider: any RekeyError, and if it is a ProviderError, not retryable. */
function expectRefused(e: unknown): void {
  expect(e).toBeInstanceOf(RekeyError);
  if (e instanceof ProviderError) expect(e.retryable).toBe(false);
}

function flipByte(ct: Uint8Array, index: number): Uint8Array {
  const copy = Uint8Array.from(ct);
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay).indexOf(Buffer.from(needle)) !== -1;
}

export function keyProviderContract(
  name: string,
  setup: () => Promise<ContractHarness>,
  options: ContractOptions = {},
): void {
  const skip = options.skip ?? {};
  for (const [c, why] of Object.entries(skip)) {
    if (!why || why.trim().length === 0) throw new Error(`contract ${name}: skipping "${c}" needs a reason`);
  }
  const skipped = (c: ContractCase) => Boolean(skip[c]);

  describe(`KeyProvider contract: ${name}`, () => {
    let h: ContractHarness;
    let p: KeyProvider;

    beforeAll(async () => {
      h = await setup();
      p = h.provider;
    });
    afterAll(async () => {
      await h?.cleanup();
    });

    const ctx: WrapContext = { tenant: 'acme', table: 'orders', row: '42' };

    async function freshKey(label: string): Promise<{ ref: KeyRef; key: ManagedKey }> {
      const ref = await h.createKey(keyName(label));
      return { ref, key: await p.getKey(ref) };
    }

    async function wrapFresh(ref: KeyRef, size = 32, c: WrapContext = ctx) {
      const dek = randomBytes(size);
      const wrapped = await p.wrap(ref, dek, c);
      return { dek, wrapped };
    }

    async function expectUnwrapsTo(ref: KeyRef, wrapped: Wrapped, c: WrapContext, dek: Uint8Array) {
      const out = await p.unwrap(ref, wrapped, c);
      expect(Buffer.from(out).equals(Buffer.from(dek))).toBe(true);
    }

    describe('capabilities', () => {
      it('are self-consistent and match the methods the provider offers', () => {
        expect(typeof p.id).toBe('string');
        expect(p.id.length).toBeGreaterThan(0);
        expect(PROVIDER_TYPES).toContain(p.type);
        const caps = p.capabilities();
        expect(caps.destroyDelayDays.min).toBeGreaterThanOrEqual(0);
        expect(caps.destroyDelayDays.max).toBeGreaterThanOrEqual(caps.destroyDelayDays.min);
        if (caps.autoRotation) {
          expect(caps.autoRotation.minDays).toBeGreaterThan(0);
          expect(caps.autoRotation.maxDays).toBeGreaterThanOrEqual(caps.autoRotation.minDays);
        }
        // The port: rewrap is present exactly when it runs inside the provider.
        expect(typeof p.rewrap === 'function').toBe(caps.serverSideRewrap);
        expect(typeof p.lastUsed === 'function').toBe(caps.lastUsed);
        if (caps.maxVersions !== undefined)
          expect(Number.isInteger(caps.maxVersions) && caps.maxVersions > 0).toBe(true);
        if (caps.maxOnDemandRotations !== undefined) {
          expect(Number.isInteger(caps.maxOnDemandRotations) && caps.maxOnDemandRotations > 0).toBe(true);
        }
      });

      it('hands out refs of its own type', async () => {
        const { ref } = await freshKey('type');
        expect(ref.type).toBe(p.type);
      });
    });

    describe('create and describe', () => {
      it('a new key has exactly one version, enabled and primary', async () => {
        const { ref, key } = await freshKey('create');
        expect(key.ref).toBe(ref.uri);
        expect(key.providerId).toBe(p.id);
        expect(key.providerType).toBe(p.type);
        expect(key.enabled).toBe(true);
        expect(key.versions).toHaveLength(1);
        const v = key.versions[0]!;
        expect(v.id).toBe(key.primaryVersion);
        expect(v.state).toBe('enabled');
        expect(Number.isNaN(Date.parse(v.createdAt))).toBe(false);
        expect(Number.isNaN(Date.parse(key.createdAt))).toBe(false);
        expect(() => checkKey(key)).not.toThrow();
      });

      it('getKey on a key that does not exist fails with NotFoundError', async () => {
        const { ref } = await freshKey('exists');
        const missing = missingSibling(ref);
        expect(await rejectionOf(p.getKey(missing))).toBeInstanceOf(NotFoundError);
      });

      it('every operation on a key that does not exist fails with NotFoundError', async () => {
        const { ref, key } = await freshKey('exists2');
        const { wrapped } = await wrapFresh(ref);
        const missing = missingSibling(ref);
        const ops: [string, () => Promise<unknown>][] = [
          ['rotate', () => p.rotate(missing)],
          ['wrap', () => p.wrap(missing, randomBytes(32), ctx)],
          ['unwrap', () => p.unwrap(missing, wrapped, ctx)],
          ['setVersionState', () => p.setVersionState(missing, key.primaryVersion, 'disabled')],
        ];
        for (const [op, run] of ops) {
          const e = await rejectionOf(run());
          expect(e, op).toBeInstanceOf(NotFoundError);
        }
      });
    });

    describe('listKeys', () => {
      it('pages through every key exactly once', async () => {
        const created = new Set<string>();
        for (let i = 0; i < 5; i++) created.add((await h.createKey(keyName('list'))).uri);
        const seen = new Map<string, number>();
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await p.listKeys({ pageSize: 2 }, cursor);
          expect(page.items.length).toBeLessThanOrEqual(2);
          for (const k of page.items) {
            seen.set(k.ref, (seen.get(k.ref) ?? 0) + 1);
            expect(k.providerId).toBe(p.id);
            expect(() => checkKey(k)).not.toThrow();
          }
          cursor = page.cursor;
          pages += 1;
          expect(pages, 'listKeys does not terminate').toBeLessThan(10_000);
        } while (cursor !== null);
        for (const ref of created) expect(seen.get(ref), ref).toBe(1);
        for (const [ref, n] of seen) expect(n, `${ref} listed ${n} times`).toBe(1);
      });

      it('reports the same key as getKey', async () => {
        const { ref, key } = await freshKey('listget');
        let found: ManagedKey | undefined;
        let cursor: string | null = null;
        do {
          const page = await p.listKeys({}, cursor);
          found = page.items.find((k) => k.ref === ref.uri) ?? found;
          cursor = page.cursor;
        } while (cursor !== null && !found);
        expect(found).toBeDefined();
        expect(found!.primaryVersion).toBe(key.primaryVersion);
        expect(found!.versions.map((v) => [v.id, v.state])).toEqual(key.versions.map((v) => [v.id, v.state]));
      });
    });

    describe('wrap and unwrap', () => {
      it('round-trips DEKs under the primary with a context', async () => {
        const { ref, key } = await freshKey('wrap');
        for (const size of DEK_SIZES) {
          const { dek, wrapped } = await wrapFresh(ref, size);
          expect(wrapped.version).toBe(key.primaryVersion);
          expect(containsBytes(wrapped.ciphertext, dek)).toBe(false);
          await expectUnwrapsTo(ref, wrapped, ctx, dek);
        }
      });

      it('round-trips with an empty context', async () => {
        const { ref } = await freshKey('wrapempty');
        const { dek, wrapped } = await wrapFresh(ref, 32, {});
        await expectUnwrapsTo(ref, wrapped, {}, dek);
      });

      it('does not depend on the order of context entries', async () => {
        const { ref } = await freshKey('ctxorder');
        const { dek, wrapped } = await wrapFresh(ref, 32, { a: '1', b: '2', c: '3' });
        await expectUnwrapsTo(ref, wrapped, { c: '3', a: '1', b: '2' }, dek);
      });

      it('wrapping the same DEK twice gives different ciphertexts', async () => {
        const { ref } = await freshKey('nonce');
        const dek = randomBytes(32);
        const a = await p.wrap(ref, dek, ctx);
        const b = await p.wrap(ref, dek, ctx);
        expect(Buffer.from(a.ciphertext).equals(Buffer.from(b.ciphertext))).toBe(false);
      });

      it('unwrap returns a buffer the caller owns', async () => {
        const { ref } = await freshKey('owned');
        const { dek, wrapped } = await wrapFresh(ref);
        const first = await p.unwrap(ref, wrapped, ctx);
        first.fill(0);
        await expectUnwrapsTo(ref, wrapped, ctx, dek);
      });

      it('a wrong context fails with a non-retryable ProviderError', async () => {
        const { ref } = await freshKey('wrongctx');
        const { wrapped } = await wrapFresh(ref);
        const wrong: WrapContext[] = [
          { ...ctx, row: '43' },
          { tenant: 'acme', table: 'orders' },
          { ...ctx, extra: 'x' },
          {},
        ];
        for (const c of wrong) {
          const e = await rejectionOf(p.unwrap(ref, wrapped, c));
          expect(e, JSON.stringify(c)).toBeInstanceOf(ProviderError);
          expect((e as ProviderError).retryable).toBe(false);
        }
      });

      it('a ciphertext wrapped under one key does not unwrap under another', async () => {
        const a = await freshKey('keya');
        const b = await freshKey('keyb');
        const { wrapped } = await wrapFresh(a.ref);
        const e = await rejectionOf(
          p.unwrap(b.ref, { version: b.key.primaryVersion, ciphertext: wrapped.ciphertext }, ctx),
        );
        expectRefused(e);
      });

      it('tampered or truncated ciphertexts fail and never unwrap', async () => {
        const { ref } = await freshKey('tamper');
        const { wrapped } = await wrapFresh(ref);
        const ct = wrapped.ciphertext;
        const variants: [string, Uint8Array][] = [
          ['first byte', flipByte(ct, 0)],
          ['middle byte', flipByte(ct, Math.floor(ct.length / 2))],
          ['last byte', flipByte(ct, ct.length - 1)],
          ['truncated', ct.slice(0, Math.floor(ct.length / 2))],
          ['one byte short', ct.slice(0, ct.length - 1)],
          ['extended', Uint8Array.from([...ct, 0])],
          ['empty', new Uint8Array(0)],
        ];
        for (const [label, bad] of variants) {
          const e = await rejectionOf(p.unwrap(ref, { version: wrapped.version, ciphertext: bad }, ctx));
          expect(e, label).toBeInstanceOf(RekeyError);
          expectPermanentCryptoFailure(e);
        }
      });
    });

    describe('rotate', () => {
      it('makes a new enabled primary; old ciphertexts still unwrap; new wraps use the new version', async () => {
        const { ref, key } = await freshKey('rotate');
        const before = await wrapFresh(ref);
        const v2 = await p.rotate(ref);
        expect(v2.id).not.toBe(key.primaryVersion);
        expect(v2.state).toBe('enabled');
        const after = await p.getKey(ref);
        expect(after.primaryVersion).toBe(v2.id);
        expect(after.versions.map((v) => v.id)).toEqual(expect.arrayContaining([key.primaryVersion, v2.id]));
        expect(after.versions.find((v) => v.id === key.primaryVersion)?.state).toBe('enabled');
        expect(() => checkKey(after)).not.toThrow();

        await expectUnwrapsTo(ref, before.wrapped, ctx, before.dek);
        const next = await wrapFresh(ref);
        expect(next.wrapped.version).toBe(v2.id);
        await expectUnwrapsTo(ref, next.wrapped, ctx, next.dek);
      });

      it('each rotation gives a distinct version id', async () => {
        const { ref, key } = await freshKey('rotate3');
        const ids = new Set([key.primaryVersion]);
        for (let i = 0; i < 3; i++) ids.add((await p.rotate(ref)).id);
        expect(ids.size).toBe(4);
        const after = await p.getKey(ref);
        expect(after.versions).toHaveLength(4);
      });
    });

    describe.skipIf(skipped('versionState'))('version state', () => {
      it('a disabled version cannot unwrap; re-enabled, it can again', async () => {
        const { ref, key } = await freshKey('disable');
        const old = await wrapFresh(ref);
        const v2 = await p.rotate(ref);
        await p.setVersionState(ref, key.primaryVersion, 'disabled');
        const k = await p.getKey(ref);
        expect(k.versions.find((v) => v.id === key.primaryVersion)?.state).toBe('disabled');
        expect(k.primaryVersion).toBe(v2.id);

        expectPermanentCryptoFailure(await rejectionOf(p.unwrap(ref, old.wrapped, ctx)));
        // The primary is unaffected.
        const fresh = await wrapFresh(ref);
        await expectUnwrapsTo(ref, fresh.wrapped, ctx, fresh.dek);

        await p.setVersionState(ref, key.primaryVersion, 'enabled');
        expect((await p.getKey(ref)).versions.find((v) => v.id === key.primaryVersion)?.state).toBe(
          'enabled',
        );
        await expectUnwrapsTo(ref, old.wrapped, ctx, old.dek);
      });

      it('setting the state a version already has is harmless', async () => {
        const { ref, key } = await freshKey('samestate');
        await p.rotate(ref);
        await p.setVersionState(ref, key.primaryVersion, 'disabled');
        await p.setVersionState(ref, key.primaryVersion, 'disabled');
        expect((await p.getKey(ref)).versions.find((v) => v.id === key.primaryVersion)?.state).toBe(
          'disabled',
        );
      });

      it('disabling the primary is refused and the primary keeps working', async () => {
        const { ref, key } = await freshKey('disprimary');
        expectRefused(await rejectionOf(p.setVersionState(ref, key.primaryVersion, 'disabled')));
        const k = await p.getKey(ref);
        expect(k.primaryVersion).toBe(key.primaryVersion);
        expect(k.versions.find((v) => v.id === key.primaryVersion)?.state).toBe('enabled');
        const { dek, wrapped } = await wrapFresh(ref);
        await expectUnwrapsTo(ref, wrapped, ctx, dek);
      });
    });

    describe('rewrap', () => {
      it('moves a ciphertext to the primary; the result unwraps to the same DEK', async (t) => {
        if (!p.capabilities().serverSideRewrap || !p.rewrap) {
          t.skip();
          return;
        }
        const { ref, key } = await freshKey('rewrap');
        const { dek, wrapped } = await wrapFresh(ref);
        const v2 = await p.rotate(ref);
        const moved = await p.rewrap(ref, wrapped, ctx);
        expect(moved.version).toBe(v2.id);
        expect(moved.version).not.toBe(key.primaryVersion);
        await expectUnwrapsTo(ref, moved, ctx, dek);
        // The source is untouched: it still unwraps too.
        await expectUnwrapsTo(ref, wrapped, ctx, dek);
      });

      it('refuses a wrong context', async (t) => {
        if (!p.capabilities().serverSideRewrap || !p.rewrap) {
          t.skip();
          return;
        }
        const { ref } = await freshKey('rewrapctx');
        const { wrapped } = await wrapFresh(ref);
        await p.rotate(ref);
        expectPermanentCryptoFailure(await rejectionOf(p.rewrap(ref, wrapped, { ...ctx, row: '0' })));
      });

      it('rewrapMany answers per item, in order: good items move, a bad one is reported alone', async (t) => {
        if (!p.rewrapMany) {
          t.skip();
          return;
        }
        const { ref } = await freshKey('rewrapmany');
        const a = await wrapFresh(ref);
        const b = await wrapFresh(ref);
        const v2 = await p.rotate(ref);
        const results = await p.rewrapMany(ref, [
          { wrapped: a.wrapped, ctx },
          { wrapped: b.wrapped, ctx: { ...ctx, row: '0' } },
          { wrapped: b.wrapped, ctx },
        ]);
        expect(results.map((r) => r.ok)).toEqual([true, false, true]);
        const [ra, rb, rc] = results;
        if (!ra!.ok || rb!.ok || !rc!.ok) throw new Error('unreachable');
        expect(ra!.wrapped.version).toBe(v2.id);
        await expectUnwrapsTo(ref, ra!.wrapped, ctx, a.dek);
        await expectUnwrapsTo(ref, rc!.wrapped, ctx, b.dek);
        expect(rb!.error.retryable).toBe(false);
        expect(rb!.error.message).not.toContain(Buffer.from(b.dek).toString('hex'));
      });
    });

    describe.skipIf(skipped('scheduleDestroy'))('scheduleDestroy', () => {
      it('schedules a non-primary version within the allowed delay; it no longer unwraps', async () => {
        const { ref, key } = await freshKey('destroy');
        const old = await wrapFresh(ref);
        await p.rotate(ref);
        if (!skipped('versionState')) await p.setVersionState(ref, key.primaryVersion, 'disabled');
        const { min, max } = p.capabilities().destroyDelayDays;
        const days = Math.min(max, Math.max(min, 30));
        const { destroyAt } = await p.scheduleDestroy(ref, key.primaryVersion, days);
        expect(Number.isNaN(Date.parse(destroyAt))).toBe(false);
        const k = await p.getKey(ref);
        const v = k.versions.find((x) => x.id === key.primaryVersion)!;
        expect(v.state).toBe('destroy_scheduled');
        expect(Date.parse(v.destroyAt!)).toBe(Date.parse(destroyAt));
        expect(Date.parse(destroyAt)).toBeGreaterThan(Date.parse(v.createdAt));
        expectPermanentCryptoFailure(await rejectionOf(p.unwrap(ref, old.wrapped, ctx)));
      });

      it('refuses a delay outside destroyDelayDays and changes nothing', async () => {
        const { ref, key } = await freshKey('destroyrange');
        await p.rotate(ref);
        if (!skipped('versionState')) await p.setVersionState(ref, key.primaryVersion, 'disabled');
        const { min, max } = p.capabilities().destroyDelayDays;
        const bad = [max + 1, -1, ...(min > 0 ? [min - 1] : [])];
        for (const days of bad) {
          expectRefused(await rejectionOf(p.scheduleDestroy(ref, key.primaryVersion, days)));
        }
        const v = (await p.getKey(ref)).versions.find((x) => x.id === key.primaryVersion)!;
        expect(v.state).not.toBe('destroy_scheduled');
        expect(v.state).not.toBe('destroyed');
      });

      it('refuses to destroy the primary', async () => {
        const { ref, key } = await freshKey('destroyprimary');
        const { min, max } = p.capabilities().destroyDelayDays;
        const days = Math.min(max, Math.max(min, 30));
        expectRefused(await rejectionOf(p.scheduleDestroy(ref, key.primaryVersion, days)));
        expect((await p.getKey(ref)).versions.find((x) => x.id === key.primaryVersion)?.state).toBe(
          'enabled',
        );
      });
    });

    describe.skipIf(skipped('autoRotation'))('auto rotation', () => {
      it('stores a period within the advertised range and removes it with null', async (t) => {
        const range = p.capabilities().autoRotation;
        if (!range) {
          t.skip();
          return;
        }
        const { ref } = await freshKey('autorot');
        await p.setAutoRotation(ref, range.minDays);
        expect((await p.getKey(ref)).autoRotation?.periodDays).toBe(range.minDays);
        await p.setAutoRotation(ref, range.maxDays);
        expect((await p.getKey(ref)).autoRotation?.periodDays).toBe(range.maxDays);
        await p.setAutoRotation(ref, null);
        expect((await p.getKey(ref)).autoRotation).toBeUndefined();
      });

      it('refuses a period outside the advertised range', async (t) => {
        const range = p.capabilities().autoRotation;
        if (!range) {
          t.skip();
          return;
        }
        const { ref } = await freshKey('autorotbad');
        expectRefused(await rejectionOf(p.setAutoRotation(ref, range.maxDays + 1)));
        expectRefused(await rejectionOf(p.setAutoRotation(ref, Math.max(range.minDays - 1, 0))));
        expect((await p.getKey(ref)).autoRotation).toBeUndefined();
      });
    });

    describe('lastUsed', () => {
      it('reports a use after a wrap', async (t) => {
        if (!p.capabilities().lastUsed || !p.lastUsed) {
          t.skip();
          return;
        }
        const { ref } = await freshKey('lastused');
        await wrapFresh(ref);
        const at = await p.lastUsed(ref);
        expect(at).not.toBeNull();
        expect(Number.isNaN(Date.parse(at!))).toBe(false);
      });
    });
  });
}
