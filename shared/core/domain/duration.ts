import { ValidationError } from '../errors.js';

/** An ISO-8601 duration (PnYnMnWnDTnHnMnS). Years and months are calendar units. */
export interface Duration {
  text: string;
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

const ISO_DURATION =
  /^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

export function parseDuration(text: string): Duration {
  const m = typeof text === 'string' ? ISO_DURATION.exec(text) : null;
  if (!m) {
    throw new ValidationError(`"${text}" is not an ISO-8601 duration (examples: P90D, P1Y, PT12H, P2W)`);
  }
  const n = (i: number) => (m[i] === undefined ? 0 : Number(m[i]));
  return {
    text,
    years: n(1),
    months: n(2),
    weeks: n(3),
    days: n(4),
    hours: n(5),
    minutes: n(6),
    seconds: n(7),
  };
}

export function isDuration(text: string): boolean {
  return ISO_DURATION.test(text);
}

/** Adds a duration to an instant using UTC calendar arithmetic (P1M from Jan 31 is Feb 28/29). */
export function addDuration(at: Date, d: Duration): Date {
  const out = new Date(at.getTime());
  if (d.years || d.months) {
    const day = out.getUTCDate();
    out.setUTCDate(1);
    out.setUTCMonth(out.getUTCMonth() + d.years * 12 + d.months);
    const lastDay = new Date(Date.UTC(out.getUTCFullYear(), out.getUTCMonth() + 1, 0)).getUTCDate();
    out.setUTCDate(Math.min(day, lastDay));
  }
  const ms = ((((d.weeks * 7 + d.days) * 24 + d.hours) * 60 + d.minutes) * 60 + d.seconds) * 1000;
  return new Date(out.getTime() + ms);
}

/** Approximate length in days, for comparing with provider limits (a year = 365 d, a month = 30 d). */
export function durationDays(d: Duration): number {
  return (
    d.years * 365 + d.months * 30 + d.weeks * 7 + d.days + d.hours / 24 + d.minutes / 1440 + d.seconds / 86400
  );
}

export function isZero(d: Duration): boolean {
  return durationDays(d) === 0;
}
