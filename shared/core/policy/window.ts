import { ValidationError } from '../errors.js';
import type { RotationWindow } from './types.js';

/**
 * Rotation windows: `<days> HH:MM-HH:MM <tz>`, e.g. `Sat 02:00-06:00 UTC`, `Mon-Fri 22:00-02:00 UTC+01:00`,
 * `Sat,Sun 00:00-24:00 UTC`, `daily 03:00-04:00 UTC-05:00`. Days name the day a window opens on; a
 * window whose end is before its start runs past midnight into the next day. Offsets are fixed
 * (no DST): a window means the same instants all year, which is what change calendars expect.
 */

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const DAY = `(?:${DAY_NAMES.join('|')})`;
const DAY_ITEM = `${DAY}(?:-${DAY})?`;
const HHMM = '(?:[01]\\d|2[0-3]):[0-5]\\d';

export const WINDOW_PATTERN = `^(?:daily|${DAY_ITEM}(?:,${DAY_ITEM})*) ${HHMM}-(?:${HHMM}|24:00) UTC(?:[+-](?:0\\d|1[0-4]):[0-5]\\d)?$`;

const SHAPE = /^(\S+) (\d\d):(\d\d)-(\d\d):(\d\d) (\S+)$/;
const TZ = /^UTC(?:([+-])(\d\d):(\d\d))?$/;
const MAX_OFFSET = 14 * 60;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

function dayIndex(text: string, name: string): number {
  const i = DAY_NAMES.indexOf(name as (typeof DAY_NAMES)[number]);
  if (i === -1) {
    throw new ValidationError(
      `window "${text}": unknown day "${name}" (use ${DAY_NAMES.join(', ')} or daily)`,
    );
  }
  return i;
}

function parseDays(text: string, spec: string): number[] {
  if (spec === 'daily') return [0, 1, 2, 3, 4, 5, 6];
  const days = new Set<number>();
  for (const item of spec.split(',')) {
    const [from, to, extra] = item.split('-');
    if (extra !== undefined || from === undefined) {
      throw new ValidationError(`window "${text}": "${item}" is not a day or a range like Mon-Fri`);
    }
    const a = dayIndex(text, from);
    if (to === undefined) {
      days.add(a);
      continue;
    }
    // Ranges may wrap around the week end: Fri-Mon is Fri, Sat, Sun, Mon.
    const b = dayIndex(text, to);
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return [...days].sort((x, y) => x - y);
}

export function parseWindow(text: string): RotationWindow {
  const m = SHAPE.exec(text);
  if (!m) {
    throw new ValidationError(
      `window "${text}" must be "<days> HH:MM-HH:MM <tz>", e.g. "Sat 02:00-06:00 UTC" or "Mon-Fri 22:00-02:00 UTC+01:00"`,
    );
  }
  const [, daySpec, sh, sm, eh, em, tz] = m;
  const days = parseDays(text, daySpec!);
  const startMinute = Number(sh) * 60 + Number(sm);
  const endMinute = Number(eh) * 60 + Number(em);
  if (Number(sh) > 23 || Number(sm) > 59)
    throw new ValidationError(`window "${text}": start ${sh}:${sm} is not a time`);
  if (Number(em) > 59 || endMinute > 24 * 60)
    throw new ValidationError(`window "${text}": end ${eh}:${em} is not a time`);
  if (startMinute === endMinute) {
    throw new ValidationError(
      `window "${text}" opens and closes at the same time; for all day write 00:00-24:00`,
    );
  }
  const t = TZ.exec(tz!);
  if (!t)
    throw new ValidationError(`window "${text}": time zone "${tz}" must be UTC, UTC+HH:MM or UTC-HH:MM`);
  let offsetMinutes = 0;
  if (t[1]) {
    const mins = Number(t[2]) * 60 + Number(t[3]);
    if (Number(t[3]) > 59 || mins > MAX_OFFSET) {
      throw new ValidationError(`window "${text}": offset ${tz} is beyond UTC-14:00..UTC+14:00`);
    }
    offsetMinutes = t[1] === '-' ? -mins : mins;
  }
  return { text, days, startMinute, endMinute, offsetMinutes };
}

/** Local day number (days since 1970-01-01 in the window's clock) and minute of that day. */
function localClock(w: RotationWindow, at: Date): { day: number; minute: number } {
  const local = at.getTime() + w.offsetMinutes * MINUTE_MS;
  const day = Math.floor(local / DAY_MS);
  return { day, minute: Math.floor((local - day * DAY_MS) / MINUTE_MS) };
}

/** 1970-01-01 was a Thursday. */
function weekday(day: number): number {
  return (((day + 4) % 7) + 7) % 7;
}

function checkDate(at: Date): void {
  if (!(at instanceof Date) || Number.isNaN(at.getTime()))
    throw new ValidationError('window check needs a valid date');
}

export function inWindow(w: RotationWindow, at: Date): boolean {
  checkDate(at);
  const { day, minute } = localClock(w, at);
  if (w.startMinute < w.endMinute) {
    return w.days.includes(weekday(day)) && minute >= w.startMinute && minute < w.endMinute;
  }
  // Crosses midnight: the evening part belongs to today's opening, the early part to yesterday's.
  return (
    (w.days.includes(weekday(day)) && minute >= w.startMinute) ||
    (w.days.includes(weekday(day - 1)) && minute < w.endMinute)
  );
}

/** `at` itself when it is inside the window, otherwise the next instant the window opens. */
export function nextWindowOpen(w: RotationWindow, at: Date): Date {
  if (inWindow(w, at)) return new Date(at.getTime());
  const { day } = localClock(w, at);
  // Outside a window, the next in-window instant is always an opening; one lies within 8 days.
  for (let d = day; d <= day + 8; d++) {
    if (!w.days.includes(weekday(d))) continue;
    const opens = d * DAY_MS + w.startMinute * MINUTE_MS - w.offsetMinutes * MINUTE_MS;
    if (opens >= at.getTime()) return new Date(opens);
  }
  throw new ValidationError(`window "${w.text}" never opens`);
}
