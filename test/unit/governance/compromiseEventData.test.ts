/**
 * `data` of a key.compromised event is checked without a schema library; it accepts and refuses
 * exactly what the schema it replaced did (kept here, written with zod, as the oracle).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { COMPROMISE_EVENT_TYPE, parseCompromiseEvent } from '../../../shared/core/domain/compromiseEvent.js';
import { ValidationError } from '../../../shared/core/errors.js';

const nonEmpty = (max: number) => z.string().min(1).max(max);
const oracle = z.strictObject({
  keyRef: nonEmpty(2048),
  version: nonEmpty(128).optional(),
  reason: nonEmpty(1000),
  reportedBy: nonEmpty(256),
});

const event = (data: unknown) => ({
  specversion: '1.0',
  type: COMPROMISE_EVENT_TYPE,
  source: 'https://siem.example.com',
  id: 'e-1',
  time: '2026-11-28T11:59:30Z',
  data,
});

describe('key.compromised data', () => {
  it('accepts and refuses what the former schema did', () => {
    const other = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.integer(),
      fc.boolean(),
      fc.constant(''),
    );
    const text = (max: number) =>
      fc.oneof(
        { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
        fc.constant('x'.repeat(max)),
        fc.constant('x'.repeat(max + 1)),
        other,
      );
    const data = fc.oneof(
      {
        weight: 9,
        arbitrary: fc.record(
          {
            keyRef: fc.oneof({ weight: 4, arbitrary: fc.constant('local://orders') }, text(2048)),
            version: text(128),
            reason: text(1000),
            reportedBy: text(256),
            extra: fc.constant('x'),
          },
          { requiredKeys: [] },
        ),
      },
      fc.constant(null),
      fc.constant([]),
      fc.constant('text'),
    );
    let accepted = 0;
    fc.assert(
      fc.property(data, (d) => {
        const o = oracle.safeParse(d);
        // The key ref is parsed after the fields; only field checks are compared here.
        const expected = o.success;
        let got = true;
        try {
          parseCompromiseEvent(event(d));
        } catch (e) {
          if (!(e instanceof ValidationError)) throw e;
          got = /data\.keyRef is not a key ref/.test(e.message) ? expected : false;
        }
        if (got) accepted++;
        expect(got).toBe(expected);
      }),
      { numRuns: 5000 },
    );
    expect(accepted).toBeGreaterThan(100);
  });

  it('names the field and what is wrong with it', () => {
    const ok = { keyRef: 'local://orders', reason: 'leak', reportedBy: 'siem' };
    const msg = (d: unknown) => {
      try {
        parseCompromiseEvent(event(d));
        return 'accepted';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(msg({ ...ok, reason: 'r'.repeat(1001) })).toBe(
      'CloudEvent: data.reason must be at most 1000 characters',
    );
    expect(msg({ ...ok, reportedBy: 7 })).toBe('CloudEvent: data.reportedBy must be a string (got number)');
    expect(msg({ ...ok, version: null })).toBe('CloudEvent: data.version must be a string (got null)');
    expect(msg(ok)).toBe('accepted');
  });
});
