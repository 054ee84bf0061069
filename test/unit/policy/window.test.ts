import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../shared/core/errors.js';
import { inWindow, nextWindowOpen, parseWindow, WINDOW_PATTERN } from '../../../shared/core/policy/window.js';
import { windowArb } from './arbitraries.js';

const d = (iso: string) => new Date(iso);

describe('parseWindow', () => {
  it('parses single days, ranges, lists, daily and offsets', () => {
    expect(parseWindow('Sat 02:00-06:00 UTC')).toEqual({
      text: 'Sat 02:00-06:00 UTC',
      days: [6],
      startMinute: 120,
      endMinute: 360,
      offsetMinutes: 0,
    });
    expect(parseWindow('Mon-Fri 22:00-02:00 UTC+01:00')).toMatchObject({
      days: [1, 2, 3, 4, 5],
      startMinute: 1320,
      endMinute: 120,
      offsetMinutes: 60,
    });
    expect(parseWindow('Sat,Sun 00:00-24:00 UTC-05:30')).toMatchObject({
      days: [0, 6],
      startMinute: 0,
      endMinute: 1440,
      offsetMinutes: -330,
    });
    expect(parseWindow('daily 03:15-03:45 UTC').days).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(parseWindow('Fri-Mon 01:00-02:00 UTC').days).toEqual([0, 1, 5, 6]);
    expect(parseWindow('Mon-Wed,Sat 01:00-02:00 UTC').days).toEqual([1, 2, 3, 6]);
    expect(parseWindow('Sat 01:00-02:00 UTC+14:00').offsetMinutes).toBe(840);
  });

  it.each([
    ['Sat 02:00-06:00', /must be "<days> HH:MM-HH:MM <tz>"/],
    ['Sat 2:00-06:00 UTC', /must be "<days> HH:MM-HH:MM <tz>"/],
    ['Sot 02:00-06:00 UTC', /unknown day "Sot"/],
    ['sat 02:00-06:00 UTC', /unknown day "sat"/],
    ['Mon-Tue-Wed 02:00-06:00 UTC', /"Mon-Tue-Wed" is not a day or a range/],
    ['Sat,,Sun 02:00-06:00 UTC', /unknown day ""/],
    ['Sat 24:00-06:00 UTC', /start 24:00 is not a time/],
    ['Sat 02:60-06:00 UTC', /start 02:60 is not a time/],
    ['Sat 02:00-24:01 UTC', /end 24:01 is not a time/],
    ['Sat 02:00-02:00 UTC', /opens and closes at the same time/],
    ['Sat 02:00-06:00 CET', /time zone "CET" must be UTC/],
    ['Sat 02:00-06:00 UTC+2', /time zone "UTC\+2"/],
    ['Sat 02:00-06:00 UTC+14:01', /beyond UTC-14:00..UTC\+14:00/],
    ['Sat 02:00-06:00 UTC-02:75', /beyond/],
  ])('rejects %s', (text, why) => {
    expect(() => parseWindow(text)).toThrow(ValidationError);
    expect(() => parseWindow(text)).toThrow(why);
  });

  it('has a JSON Schema pattern that accepts every window the parser accepts', () => {
    const re = new RegExp(WINDOW_PATTERN, 'u');
    fc.assert(fc.property(windowArb, (w) => re.test(w.raw) && parseWindow(w.raw).text === w.raw));
    // ...and whatever the pattern refuses, the parser refuses too.
    const soup = fc
      .array(
        fc.constantFrom(
          'Sat',
          'Mon',
          '-',
          ',',
          ' ',
          '02',
          ':',
          '00',
          '24',
          '60',
          'UTC',
          '+',
          '14',
          'daily',
          'x',
        ),
        {
          maxLength: 14,
        },
      )
      .map((a) => a.join(''));
    fc.assert(
      fc.property(soup, (s) => {
        if (re.test(s)) return;
        expect(() => parseWindow(s)).toThrow(ValidationError);
      }),
    );
  });
});

describe('inWindow', () => {
  // 2026-11-28 is a Saturday.
  const sat = parseWindow('Sat 02:00-06:00 UTC');

  it('is true from the opening minute up to, not including, the closing minute', () => {
    expect(inWindow(sat, d('2026-11-28T01:59:59.999Z'))).toBe(false);
    expect(inWindow(sat, d('2026-11-28T02:00:00Z'))).toBe(true);
    expect(inWindow(sat, d('2026-11-28T05:59:59Z'))).toBe(true);
    expect(inWindow(sat, d('2026-11-28T06:00:00Z'))).toBe(false);
    expect(inWindow(sat, d('2026-11-29T03:00:00Z'))).toBe(false);
    expect(inWindow(sat, d('2026-12-05T03:00:00Z'))).toBe(true);
  });

  it('runs past midnight into the next day when the end is before the start', () => {
    const fri = parseWindow('Fri 22:00-02:00 UTC');
    expect(inWindow(fri, d('2026-11-27T21:59:00Z'))).toBe(false);
    expect(inWindow(fri, d('2026-11-27T23:00:00Z'))).toBe(true);
    expect(inWindow(fri, d('2026-11-28T01:30:00Z'))).toBe(true);
    expect(inWindow(fri, d('2026-11-28T02:00:00Z'))).toBe(false);
    // Saturday evening is not a Friday opening.
    expect(inWindow(fri, d('2026-11-28T23:00:00Z'))).toBe(false);
    // Thursday night's early hours belong to Wednesday's opening, which does not exist.
    expect(inWindow(fri, d('2026-11-27T01:00:00Z'))).toBe(false);
  });

  it('applies the offset: the window is in local time of UTC+HH:MM', () => {
    const plus2 = parseWindow('Sat 02:00-06:00 UTC+02:00');
    expect(inWindow(plus2, d('2026-11-28T00:00:00Z'))).toBe(true);
    expect(inWindow(plus2, d('2026-11-27T23:59:00Z'))).toBe(false);
    expect(inWindow(plus2, d('2026-11-28T04:00:00Z'))).toBe(false);
    const minus5 = parseWindow('Sun 22:00-23:00 UTC-05:00');
    expect(inWindow(minus5, d('2026-11-30T03:30:00Z'))).toBe(true);
    expect(inWindow(minus5, d('2026-11-29T22:30:00Z'))).toBe(false);
  });

  it('covers the whole day with 00:00-24:00', () => {
    const all = parseWindow('daily 00:00-24:00 UTC');
    expect(inWindow(all, d('2026-11-29T00:00:00Z'))).toBe(true);
    expect(inWindow(all, d('2026-11-29T23:59:59Z'))).toBe(true);
  });

  it('works before 1970 too', () => {
    expect(inWindow(sat, d('1969-12-27T03:00:00Z'))).toBe(true);
    expect(inWindow(sat, d('1969-12-28T03:00:00Z'))).toBe(false);
  });

  it('refuses an invalid date', () => {
    expect(() => inWindow(sat, new Date(Number.NaN))).toThrow(ValidationError);
  });
});

describe('nextWindowOpen', () => {
  const sat = parseWindow('Sat 02:00-06:00 UTC');

  it('returns the instant itself when inside the window', () => {
    expect(nextWindowOpen(sat, d('2026-11-28T03:17:05Z'))).toEqual(d('2026-11-28T03:17:05Z'));
  });

  it('returns the next opening otherwise', () => {
    expect(nextWindowOpen(sat, d('2026-11-29T10:00:00Z'))).toEqual(d('2026-12-05T02:00:00Z'));
    expect(nextWindowOpen(sat, d('2026-11-28T06:00:00Z'))).toEqual(d('2026-12-05T02:00:00Z'));
    expect(nextWindowOpen(sat, d('2026-11-28T01:59:00Z'))).toEqual(d('2026-11-28T02:00:00Z'));
    const weekdays = parseWindow('Mon-Fri 22:00-02:00 UTC+01:00');
    // Saturday 12:00 UTC: the next opening is Monday 22:00 local = Monday 21:00 UTC.
    expect(nextWindowOpen(weekdays, d('2026-11-28T12:00:00Z'))).toEqual(d('2026-11-30T21:00:00Z'));
    // Saturday 00:30 local is the tail of Friday's window.
    expect(nextWindowOpen(weekdays, d('2026-11-27T23:30:00Z'))).toEqual(d('2026-11-27T23:30:00Z'));
  });

  it('agrees with inWindow: the result is inside and no earlier minute is (property)', () => {
    const MINUTE = 60_000;
    fc.assert(
      fc.property(
        windowArb,
        fc.date({ min: d('1990-01-01T00:00:00Z'), max: d('2090-01-01T00:00:00Z'), noInvalidDate: true }),
        ({ want: w }, t) => {
          const next = nextWindowOpen(w, t);
          expect(inWindow(w, next)).toBe(true);
          expect(next.getTime()).toBeGreaterThanOrEqual(t.getTime());
          expect(next.getTime() - t.getTime()).toBeLessThanOrEqual(7 * 24 * 60 * MINUTE);
          if (next.getTime() === t.getTime()) return;
          expect(inWindow(w, t)).toBe(false);
          // Every minute boundary strictly between t and next is outside the window.
          const first = Math.floor(t.getTime() / MINUTE) * MINUTE + MINUTE;
          for (let m = first; m < next.getTime(); m += MINUTE) {
            if (inWindow(w, new Date(m)))
              throw new Error(`${w.text}: ${new Date(m).toISOString()} is inside`);
          }
          // The window opened exactly at `next`: the minute before it is outside.
          expect(inWindow(w, new Date(next.getTime() - MINUTE))).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});
