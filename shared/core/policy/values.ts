import { ValidationError } from '../errors.js';
import type { Money, Rate, Verify } from './types.js';

/**
 * Parsers for the small string formats a policy file uses. Each has a JSON Schema pattern
 * (for editors) and a parser (for the loader) with a message that says what is expected.
 * A pattern accepts every string its parser accepts; the parser also checks what a pattern
 * cannot say well (a rate above 0, a known currency). The unit tests hold the two together.
 */

const NUMBER = '(?:0|[1-9]\\d*)(?:\\.\\d+)?';

export const RATE_PATTERN = `^${NUMBER}/(?:s|min|h)$`;
const RATE = new RegExp(`^(${NUMBER})/(s|min|h)$`);
const RATE_UNIT_SECONDS: Record<string, number> = { s: 1, min: 60, h: 3600 };

/** `500/s`, `30000/min`, `1.5/h`: plain decimal numbers, no exponents. */
export function parseRate(text: string): Rate {
  const m = RATE.exec(text);
  if (!m) throw new ValidationError(`"${text}" is not a rate: write N/s, N/min or N/h (e.g. 500/s)`);
  const n = Number(m[1]);
  if (!(n > 0)) throw new ValidationError(`rate "${text}" must be greater than 0`);
  return { text, perSecond: n / RATE_UNIT_SECONDS[m[2]!]! };
}

export const VERIFY_PATTERN = `^(?:full|none|sample\\(${NUMBER}%\\))$`;
const SAMPLE = new RegExp(`^sample\\((${NUMBER})%\\)$`);

/** `full`, `none` or `sample(P%)` with 0 < P <= 100. */
export function parseVerify(text: string): Verify {
  if (text === 'full') return { mode: 'full' };
  if (text === 'none') return { mode: 'none' };
  const m = SAMPLE.exec(text);
  if (!m)
    throw new ValidationError(
      `"${text}" is not a verify mode: write full, none or sample(P%) (e.g. sample(1%))`,
    );
  const p = Number(m[1]);
  if (!(p > 0 && p <= 100))
    throw new ValidationError(`sample percentage in "${text}" must be above 0 and at most 100`);
  return { mode: 'sample', fraction: p / 100 };
}

export const MONEY_PATTERN = `^${NUMBER} [A-Z]{3}$`;
const MONEY = new RegExp(`^(${NUMBER}) ([A-Z]{3})$`);
let currencies: Set<string> | undefined;

function isCurrency(code: string): boolean {
  currencies ??= new Set(Intl.supportedValuesOf('currency'));
  return currencies.has(code);
}

/** `5 USD`: a non-negative amount and an ISO 4217 currency code. */
export function parseMoney(text: string): Money {
  const m = MONEY.exec(text);
  if (!m)
    throw new ValidationError(
      `"${text}" is not an amount of money: write <amount> <ISO currency>, e.g. 5 USD`,
    );
  if (!isCurrency(m[2]!)) throw new ValidationError(`"${m[2]}" is not an ISO 4217 currency code`);
  return { amount: Number(m[1]), currency: m[2]! };
}

export const SECRET_PATTERN = '^(?:env:[A-Za-z_][A-Za-z0-9_]*|file:\\S.*)$';
const SECRET = new RegExp(SECRET_PATTERN);

/**
 * Secrets are referenced, never written inline. The message never repeats the value: a PIN
 * pasted into the file by mistake must not also end up in CI logs.
 */
export function checkSecretRef(value: string): void {
  if (SECRET.test(value)) return;
  if (value.startsWith('env:')) {
    throw new ValidationError(
      'env: must be followed by a variable name (letters, digits, _; not starting with a digit)',
    );
  }
  if (value.startsWith('file:')) throw new ValidationError('file: must be followed by a path');
  throw new ValidationError(SECRET_LITERAL_MESSAGE);
}

export const SECRET_LITERAL_MESSAGE =
  'a literal secret is refused: write env:NAME or file:PATH so the secret never sits in the config file';

/** Provider, store and policy ids. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
/** Table and column names end up in SQL: plain identifiers only, optionally schema-qualified tables. */
export const SQL_IDENT_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,62}$';
export const SQL_TABLE_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,62}(?:\\.[A-Za-z_][A-Za-z0-9_]{0,62})?$';
export const AWS_REGION_PATTERN = '^[a-z]{2}(?:-[a-z]+)+-\\d{1,2}$';
