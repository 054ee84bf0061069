import { ValidationError } from '../errors.js';

export const HOUR_MS = 3_600_000;

export interface Period {
  /** YYYY-MM */
  id: string;
  start: number;
  end: number;
  hours: number;
  startIso: string;
  endIso: string;
}

/** A calendar month in UTC: [first instant, first instant of the next month). */
export function parsePeriod(id: string): Period {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(id);
  if (!m) throw new ValidationError(`period "${id}" is not a month as YYYY-MM`);
  const y = Number(m[1]);
  const mo = Number(m[2]) - 1;
  const start = Date.UTC(y, mo, 1);
  const end = Date.UTC(y, mo + 1, 1);
  return {
    id,
    start,
    end,
    hours: (end - start) / HOUR_MS,
    startIso: new Date(start).toISOString(),
    endIso: new Date(end).toISOString(),
  };
}

export function nextPeriod(id: string, n = 1): string {
  const p = parsePeriod(id);
  const d = new Date(p.start);
  d.setUTCMonth(d.getUTCMonth() + n);
  return d.toISOString().slice(0, 7);
}

export function periodOf(iso: string): string {
  return iso.slice(0, 7);
}

export type Interval = [number, number];

export function ms(iso: string, what: string): number {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new ValidationError(`${what}: "${iso}" is not an ISO-8601 timestamp`);
  return t;
}

/** Total hours of the intervals that fall inside [from, to). */
export function overlapHours(intervals: Interval[], from: number, to: number): number {
  let total = 0;
  for (const [a, b] of intervals) {
    const s = Math.max(a, from);
    const e = Math.min(b, to);
    if (e > s) total += e - s;
  }
  return total / HOUR_MS;
}
