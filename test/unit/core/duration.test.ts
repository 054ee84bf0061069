import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addDuration, durationDays, parseDuration } from '../../../shared/core/domain/duration.js';

describe('ISO-8601 durations', () => {
  it('parses the common forms', () => {
    expect(durationDays(parseDuration('P90D'))).toBe(90);
    expect(durationDays(parseDuration('P2W'))).toBe(14);
    expect(durationDays(parseDuration('PT12H'))).toBe(0.5);
    expect(parseDuration('P1Y2M3DT4H5M6S')).toMatchObject({
      years: 1,
      months: 2,
      days: 3,
      hours: 4,
      minutes: 5,
      seconds: 6,
    });
  });

  it.each(['', 'P', 'PT', '90D', 'P-1D', 'P1.5D', 'P1DT', 'p90d', 'P90 D'])('rejects %j', (s) => {
    expect(() => parseDuration(s)).toThrow('is not an ISO-8601 duration');
  });

  it('adds calendar months clamping to the month end', () => {
    expect(addDuration(new Date('2026-01-31T00:00:00Z'), parseDuration('P1M')).toISOString()).toBe(
      '2026-02-28T00:00:00.000Z',
    );
    expect(addDuration(new Date('2024-02-29T00:00:00Z'), parseDuration('P1Y')).toISOString()).toBe(
      '2025-02-28T00:00:00.000Z',
    );
  });

  it('day-based durations add exactly that many days', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5000 }),
        fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }),
        (d, at) => {
          expect(addDuration(at, parseDuration(`P${d}D`)).getTime() - at.getTime()).toBe(d * 86_400_000);
        },
      ),
    );
  });
});
