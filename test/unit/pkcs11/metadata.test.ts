/**
 * The PKCS#11 metadata check: the same accept/refuse answers and the same result as the schema
 * it replaced (kept here as the oracle, written with zod as it was), on well-formed metadata
 * and on metadata damaged field by field.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { IntegrityError } from '../../../shared/core/errors.js';
import { decodeMeta, encodeMeta, type FamilyMeta } from '../../../shared/providers/pkcs11/format.js';

const versionSchema = z.object({
  id: z.string().regex(/^[1-9]\d{0,8}$/),
  state: z.enum(['enabled', 'disabled', 'destroy_scheduled', 'destroyed']),
  createdAt: z.string(),
  destroyAt: z.string().optional(),
  compromised: z.boolean().optional(),
});
const oracle = z.object({
  format: z.literal('rekey.pkcs11/1'),
  gen: z.number().int().nonnegative(),
  name: z.string(),
  createdAt: z.string(),
  primary: z.string(),
  tags: z.record(z.string(), z.string()),
  versions: z.array(versionSchema).min(1),
});

const good: FamilyMeta = {
  format: 'rekey.pkcs11/1',
  gen: 3,
  name: 'orders-kek',
  createdAt: '2026-01-01T00:00:00.000Z',
  primary: '2',
  tags: { team: 'payments' },
  versions: [
    { id: '1', state: 'disabled', createdAt: '2026-01-01T00:00:00.000Z', compromised: true },
    { id: '2', state: 'enabled', createdAt: '2026-02-01T00:00:00.000Z' },
    { id: '3', state: 'destroy_scheduled', createdAt: '2026-03-01T00:00:00.000Z', destroyAt: '2026-04-01' },
  ],
};

const decode = (name: string, value: unknown): FamilyMeta | 'refused' => {
  try {
    return decodeMeta(name, Buffer.from(JSON.stringify(value), 'utf8'));
  } catch (e) {
    expect(e).toBeInstanceOf(IntegrityError);
    return 'refused';
  }
};
const byOracle = (name: string, value: unknown): FamilyMeta | 'refused' => {
  const r = oracle.safeParse(JSON.parse(JSON.stringify(value)));
  return r.success && r.data.name === name ? (r.data as FamilyMeta) : 'refused';
};

/** A field's value: usually a fitting one, sometimes anything JSON can hold. */
const maybe = <T>(ok: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 12, arbitrary: ok }, { weight: 1, arbitrary: fc.jsonValue() });
const versionArb = fc.record(
  {
    id: maybe(
      fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: 1, max: 999_999_999 }).map(String) },
        { weight: 1, arbitrary: fc.constantFrom('0', '01', '1234567890', '') },
      ),
    ),
    state: maybe(fc.constantFrom('enabled', 'disabled', 'destroy_scheduled', 'destroyed', 'Enabled')),
    createdAt: maybe(fc.string()),
    destroyAt: maybe(fc.string()),
    compromised: maybe(fc.boolean()),
    extra: fc.jsonValue(),
  },
  { requiredKeys: ['id', 'state', 'createdAt'] },
);
const metaArb = fc.record(
  {
    format: maybe(fc.constantFrom('rekey.pkcs11/1', 'rekey.pkcs11/1', 'rekey.pkcs11/1', 'rekey.pkcs11/2')),
    gen: maybe(
      fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: -3, max: 1e6 }) },
        { weight: 1, arbitrary: fc.double() },
        { weight: 1, arbitrary: fc.constant(2 ** 60) },
      ),
    ),
    name: maybe(fc.constantFrom('orders-kek', 'orders-kek', 'orders-kek', 'other')),
    createdAt: maybe(fc.string()),
    primary: maybe(fc.string()),
    // A "__proto__" tag is the one place the two differ (see below), so the oracle is not asked.
    tags: maybe(
      fc.dictionary(
        fc.string().filter((k) => k !== '__proto__'),
        maybe(fc.string()),
      ),
    ),
    versions: maybe(
      fc.oneof(
        { weight: 6, arbitrary: fc.array(versionArb, { minLength: 1, maxLength: 3 }) },
        { weight: 1, arbitrary: fc.constant([]) },
      ),
    ),
    extra: fc.jsonValue(),
  },
  { requiredKeys: ['format', 'gen', 'name', 'createdAt', 'primary', 'tags', 'versions'] },
);

describe('PKCS#11 metadata', () => {
  it('reads back what it writes, and refuses another key name, non-JSON and damaged fields', () => {
    expect(decodeMeta('orders-kek', encodeMeta(good))).toEqual(good);
    expect(decode('other', good)).toBe('refused');
    expect(() => decodeMeta('orders-kek', Buffer.from('{'))).toThrow(/is not JSON/);
    for (const damaged of [
      { ...good, gen: -1 },
      { ...good, gen: 1.5 },
      { ...good, versions: [] },
      { ...good, tags: { a: 1 } },
      { ...good, tags: ['x'] },
      { ...good, versions: [{ ...good.versions[0], id: '01' }] },
      { ...good, versions: [{ ...good.versions[0], state: 'gone' }] },
      [good],
      null,
    ]) {
      expect(decode('orders-kek', damaged)).toBe('refused');
    }
  });

  it('keeps a "__proto__" tag as a plain entry, where the schema library dropped it', () => {
    const raw = Buffer.from(JSON.stringify({ ...good, tags: JSON.parse('{"__proto__":"x","a":"b"}') }));
    const m = decodeMeta('orders-kek', raw);
    expect(Object.getPrototypeOf(m.tags)).toBe(Object.prototype);
    expect(Object.entries(m.tags)).toEqual([
      ['__proto__', 'x'],
      ['a', 'b'],
    ]);
  });

  it('answers as the schema it replaced', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        metaArb,
        fc.constantFrom('orders-kek', 'orders-kek', 'orders-kek', 'other'),
        (meta, name) => {
          const mine = decode(name, meta);
          expect(mine).toEqual(byOracle(name, meta));
          if (mine !== 'refused') accepted += 1;
        },
      ),
      { numRuns: 3000 },
    );
    // Both answers get exercised: the generator is not all damage.
    expect(accepted).toBeGreaterThan(30);
  });
});
