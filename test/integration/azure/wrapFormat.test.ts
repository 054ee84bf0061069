import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntegrityError, ValidationError } from '../../../shared/core/errors.js';
import { decodePayload, encodePayload, MAX_DEK_BYTES } from '../../../shared/providers/azure/wrapFormat.js';

const context = fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 24 }), { maxKeys: 6 });
const dek = fc.uint8Array({ minLength: 1, maxLength: MAX_DEK_BYTES });

describe('the wrapped payload that binds the wrap context', () => {
  it('round-trips any DEK and context, in any key order, padded for AES key wrap', () => {
    fc.assert(
      fc.property(dek, context, (d, ctx) => {
        const payload = encodePayload(d, ctx);
        expect(payload.length % 8).toBe(0);
        const reordered = Object.fromEntries(Object.entries(ctx).reverse());
        const out = decodePayload(payload, reordered, 'test');
        expect(out.ok && Buffer.from(out.dek).equals(Buffer.from(d))).toBe(true);
        // decodePayload zeroes what it was given.
        expect(payload.every((b) => b === 0)).toBe(true);
      }),
    );
  });

  it('reports any other context as a mismatch', () => {
    fc.assert(
      fc.property(dek, context, context, (d, a, b) => {
        const same = JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
        fc.pre(!same);
        expect(decodePayload(encodePayload(d, a), b, 'test').ok).toBe(false);
      }),
    );
  });

  it('two encodings of one DEK differ (random salt)', () => {
    const d = new Uint8Array(32).fill(7);
    expect(encodePayload(d, {}).equals(encodePayload(d, {}))).toBe(false);
  });

  it('refuses malformed payloads and out-of-range DEKs', () => {
    const good = encodePayload(new Uint8Array(32).fill(1), { a: 'b' });
    const variants: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from(good.subarray(0, good.length - 8)),
      Buffer.concat([good, Buffer.alloc(8)]),
      Buffer.from([0x02, ...good.subarray(1)]),
      Buffer.from([...good.subarray(0, good.length - 1), 1]),
    ];
    for (const v of variants) expect(() => decodePayload(v, { a: 'b' }, 'test')).toThrow(IntegrityError);
    expect(() => encodePayload(new Uint8Array(0), {})).toThrow(ValidationError);
    expect(() => encodePayload(new Uint8Array(MAX_DEK_BYTES + 1), {})).toThrow(ValidationError);
    expect(() => encodePayload(new Uint8Array(8), { a: 1 as unknown as string })).toThrow(ValidationError);
  });
});
