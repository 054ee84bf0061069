/**
 * The re-wrap message check: every field refused by name, and the same accept/refuse answers as
 * the schema it replaced (kept here as the oracle, written with zod as it was).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ValidationError } from '../../../shared/core/errors.js';
import { parseShardMessage } from '../../../shared/core/usecases/shardMessage.js';

const oracle = z
  .object({
    kind: z.literal('rewrap-shard'),
    jobId: z.string().min(1).max(512),
    providerId: z.string().min(1).max(128),
    verify: z.union([
      z.literal('full'),
      z.literal('none'),
      z.object({ sample: z.number().gt(0).lte(1) }).strict(),
    ]),
    batchSize: z.number().int().min(1).max(10_000),
    ratePerSecond: z.number().positive().optional(),
  })
  .strict();

const good = {
  kind: 'rewrap-shard',
  jobId: 'plan:0:orders#s1',
  providerId: 'aws-prod',
  verify: { sample: 0.01 },
  batchSize: 100,
  ratePerSecond: 50,
};

const refusal = (body: unknown): string => {
  try {
    parseShardMessage(body);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as Error).message;
  }
  throw new Error('accepted');
};

describe('parseShardMessage', () => {
  it('accepts a well-formed message, as an object or as JSON text', () => {
    expect(parseShardMessage(good)).toEqual(good);
    expect(parseShardMessage(JSON.stringify({ ...good, verify: 'full' }))).toEqual({
      ...good,
      verify: 'full',
    });
    const { ratePerSecond: _, ...noRate } = good;
    expect(parseShardMessage(noRate)).toEqual(noRate);
  });

  it('names the field that is wrong', () => {
    expect(refusal('{not json')).toBe('re-wrap message: body is not JSON');
    expect(refusal([good])).toMatch(/^re-wrap message: \(message\): expected an object, got a list/);
    expect(refusal({ ...good, kind: 'other' })).toMatch(/^re-wrap message: kind: /);
    expect(refusal({ kind: 'rewrap-shard', jobId: 'x' })).toMatch(/^re-wrap message: providerId: /);
    expect(refusal({ ...good, jobId: '' })).toMatch(/^re-wrap message: jobId: /);
    expect(refusal({ ...good, jobId: 'j'.repeat(513) })).toMatch(/jobId: .*a string of 513 characters/);
    expect(refusal({ ...good, verify: { sample: 0 } })).toMatch(/^re-wrap message: verify\.sample: /);
    expect(refusal({ ...good, verify: { sample: 0.5, all: true } })).toMatch(/verify: unknown field "all"/);
    expect(refusal({ ...good, verify: 'sample' })).toMatch(/^re-wrap message: verify: /);
    expect(refusal({ ...good, batchSize: 0 })).toMatch(/^re-wrap message: batchSize: /);
    expect(refusal({ ...good, batchSize: 1.5 })).toMatch(/batchSize: /);
    expect(refusal({ ...good, ratePerSecond: -1 })).toMatch(/ratePerSecond: /);
    expect(refusal({ ...good, extra: 1 })).toMatch(/unknown field "extra"/);
  });

  it('accepts and refuses exactly what the former schema did', () => {
    const anyValue = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.boolean(),
      fc.string({ maxLength: 3 }),
      fc.double(),
      fc.integer({ min: -5, max: 20_000 }),
    );
    const field = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: valid }, anyValue);
    const message = fc.record(
      {
        kind: field(fc.constant('rewrap-shard')),
        jobId: field(fc.oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.constant('x'.repeat(513)))),
        providerId: field(fc.string({ minLength: 0, maxLength: 130 })),
        verify: field(
          fc.oneof(
            fc.constantFrom('full', 'none'),
            fc.record({ sample: fc.double({ min: -0.5, max: 1.5, noNaN: false }) }),
            fc.record({ sample: fc.constant(0.5), other: fc.constant(1) }),
          ),
        ),
        batchSize: field(fc.oneof(fc.integer({ min: -1, max: 10_001 }), fc.double({ min: 0, max: 20 }))),
        ratePerSecond: field(
          fc.oneof(fc.double({ min: -1, max: 1000 }), fc.constant(Number.POSITIVE_INFINITY)),
        ),
        extra: fc.constant(1),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(message, (m) => {
        const expected = oracle.safeParse(m).success;
        let got = true;
        try {
          parseShardMessage(m);
        } catch (e) {
          if (!(e instanceof ValidationError)) throw e;
          got = false;
        }
        expect(got).toBe(expected);
      }),
      { numRuns: 3000 },
    );
  });
});
