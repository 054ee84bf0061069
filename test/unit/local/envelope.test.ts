import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../shared/core/errors.js';
import {
  canonicalContext,
  checkValueMatches,
  makeCheckValue,
  openMaterial,
  parseWrappedDek,
  sealMaterial,
  unwrapDek,
  wrapDek,
} from '../../../shared/providers/local/envelope.js';

const ctxArb = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 12 }), { maxKeys: 5 });

describe('canonicalContext', () => {
  it('sorts keys, including integer-like ones JSON.stringify would reorder', () => {
    expect(canonicalContext({ b: '1', a: '2', '10': 'x', '2': 'y' })).toBe(
      '{"10":"x","2":"y","a":"2","b":"1"}',
    );
    expect(canonicalContext({})).toBe('{}');
  });

  it('is the same for any insertion order and parses back to the same entries', () => {
    fc.assert(
      fc.property(ctxArb, (ctx) => {
        const reversed = Object.fromEntries(Object.entries(ctx).reverse());
        const c = canonicalContext(ctx);
        expect(canonicalContext(reversed)).toBe(c);
        expect(JSON.parse(c)).toEqual(ctx);
      }),
    );
  });

  it('refuses non-string values', () => {
    expect(() => canonicalContext({ a: 1 as unknown as string })).toThrow(ValidationError);
    expect(() => canonicalContext(null as unknown as Record<string, string>)).toThrow(ValidationError);
  });
});

describe('DEK wrapping', () => {
  const kek = randomBytes(32);

  it('lays out tag, length-prefixed version, IV, GCM tag and ciphertext', () => {
    const dek = randomBytes(32);
    const ct = wrapDek(kek, 'k', '12', dek, {});
    expect(ct[0]).toBe(0x01);
    expect(ct[1]).toBe(2);
    expect(ct.toString('ascii', 2, 4)).toBe('12');
    expect(ct).toHaveLength(1 + 1 + 2 + 12 + 16 + 32);
    const parsed = parseWrappedDek(ct)!;
    expect(parsed.version).toBe('12');
    expect(unwrapDek(kek, 'k', parsed, {})!.equals(dek)).toBe(true);
  });

  it('round-trips any DEK and context; any flipped bit or other binding fails', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        ctxArb,
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (dek, ctx, pos, bit) => {
          const ct = wrapDek(kek, 'key-a', '3', dek, ctx);
          expect(
            Buffer.from(unwrapDek(kek, 'key-a', parseWrappedDek(ct)!, ctx)!).equals(Buffer.from(dek)),
          ).toBe(true);
          const bad = Buffer.from(ct);
          bad[pos % bad.length] = bad[pos % bad.length]! ^ (1 << bit);
          const parsed = parseWrappedDek(bad);
          expect(parsed === null || unwrapDek(kek, 'key-a', parsed, ctx) === null).toBe(true);
          const p = parseWrappedDek(ct)!;
          expect(unwrapDek(kek, 'key-b', p, ctx)).toBeNull();
          expect(unwrapDek(kek, 'key-a', p, { ...ctx, extra: 'x' })).toBeNull();
          expect(unwrapDek(randomBytes(32), 'key-a', p, ctx)).toBeNull();
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a frozen context binds exactly as its plain copy, per key and version', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 48 }), ctxArb, ctxArb, (dek, a, b) => {
        const frozen = Object.freeze({ ...a });
        // The same frozen object met again (its AAD remembered) under other names and versions.
        for (const [name, version] of [
          ['key-a', '1'],
          ['key-a', '2'],
          ['key-b', '1'],
          ['key-a', '1'],
        ] as const) {
          const ct = wrapDek(kek, name, version, dek, frozen);
          const p = parseWrappedDek(ct)!;
          expect(Buffer.from(unwrapDek(kek, name, p, { ...a })!).equals(Buffer.from(dek))).toBe(true);
          expect(Buffer.from(unwrapDek(kek, name, p, frozen)!).equals(Buffer.from(dek))).toBe(true);
          const other = name === 'key-a' ? 'key-b' : 'key-a';
          expect(
            unwrapDek(kek, other, parseWrappedDek(wrapDek(kek, other, version, dek, frozen))!, a),
          ).not.toBeNull();
          if (canonicalContext(a) !== canonicalContext(b)) {
            expect(unwrapDek(kek, name, p, Object.freeze({ ...b }))).toBeNull();
          }
        }
      }),
      { numRuns: 100 },
    );
    expect(() => wrapDek(kek, 'key-a', '1', randomBytes(32), Object.freeze({ n: 1 } as never))).toThrow(
      ValidationError,
    );
  });

  it('rejects malformed layouts without throwing', () => {
    for (const bad of [
      Buffer.alloc(0),
      Buffer.from([1]),
      Buffer.from([2, 1, 0x31]),
      Buffer.from([1, 0]),
      Buffer.from([1, 200, 0x31]),
      Buffer.concat([Buffer.from([1, 1, 0x31]), Buffer.alloc(28)]),
    ]) {
      expect(parseWrappedDek(bad)).toBeNull();
    }
  });
});

describe('material sealing and the master key check', () => {
  it('binds sealed material to key name and version', () => {
    const master = randomBytes(32);
    const material = randomBytes(32);
    const sealed = sealMaterial(master, 'k', '1', material);
    expect(sealed.indexOf(material)).toBe(-1);
    expect(openMaterial(master, 'k', '1', sealed)!.equals(material)).toBe(true);
    expect(openMaterial(master, 'k', '2', sealed)).toBeNull();
    expect(openMaterial(master, 'j', '1', sealed)).toBeNull();
    expect(openMaterial(randomBytes(32), 'k', '1', sealed)).toBeNull();
  });

  it('the check value matches only its master key', () => {
    const master = randomBytes(32);
    const check = makeCheckValue(master);
    expect(checkValueMatches(master, check)).toBe(true);
    expect(checkValueMatches(randomBytes(32), check)).toBe(false);
    expect(checkValueMatches(master, check.subarray(0, 10))).toBe(false);
  });
});
