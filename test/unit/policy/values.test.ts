import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDuration } from '../../../shared/core/domain/duration.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { DURATION_PATTERN } from '../../../shared/core/policy/schema.js';
import {
  checkSecretRef,
  MONEY_PATTERN,
  parseMoney,
  parseRate,
  parseVerify,
  RATE_PATTERN,
  SECRET_PATTERN,
  VERIFY_PATTERN,
} from '../../../shared/core/policy/values.js';

/** Strings from an alphabet, to probe a pattern against its parser. */
const soup = (alphabet: string[], maxLength = 12) =>
  fc.array(fc.constantFrom(...alphabet), { maxLength }).map((a) => a.join(''));

function accepts(parse: (s: string) => unknown, s: string): boolean {
  try {
    parse(s);
    return true;
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    return false;
  }
}

describe('parseRate', () => {
  it('converts N/s, N/min and N/h to a per-second rate', () => {
    expect(parseRate('500/s')).toEqual({ text: '500/s', perSecond: 500 });
    expect(parseRate('30/min')).toEqual({ text: '30/min', perSecond: 0.5 });
    expect(parseRate('7200/h')).toEqual({ text: '7200/h', perSecond: 2 });
    expect(parseRate('1.5/s').perSecond).toBe(1.5);
  });
  it.each(['0/s', '0.0/min', '5/day', '-1/s', '1e3/s', '05/s', '500 /s', '/s', '500'])('rejects %s', (s) => {
    expect(() => parseRate(s)).toThrow(ValidationError);
  });
});

describe('parseVerify', () => {
  it('accepts full, none and sample(P%)', () => {
    expect(parseVerify('full')).toEqual({ mode: 'full' });
    expect(parseVerify('none')).toEqual({ mode: 'none' });
    expect(parseVerify('sample(1%)')).toEqual({ mode: 'sample', fraction: 0.01 });
    expect(parseVerify('sample(100%)')).toEqual({ mode: 'sample', fraction: 1 });
    expect(parseVerify('sample(0.5%)')).toEqual({ mode: 'sample', fraction: 0.005 });
  });
  it.each([
    'sample(0%)',
    'sample(101%)',
    'sample(100.01%)',
    'sample(1)',
    'Sample(1%)',
    'sample( 1%)',
    'all',
    '',
  ])('rejects %s', (s) => {
    expect(() => parseVerify(s)).toThrow(ValidationError);
  });
});

describe('parseMoney', () => {
  it('reads an amount and an ISO 4217 currency', () => {
    expect(parseMoney('5 USD')).toEqual({ amount: 5, currency: 'USD' });
    expect(parseMoney('2.50 EUR')).toEqual({ amount: 2.5, currency: 'EUR' });
    expect(parseMoney('0 JPY')).toEqual({ amount: 0, currency: 'JPY' });
  });
  it.each(['5 usd', '5 XYZ', '$5', '5USD', '-1 USD', '5  USD', 'USD 5', '5 US'])('rejects %s', (s) => {
    expect(() => parseMoney(s)).toThrow(ValidationError);
  });
});

describe('checkSecretRef', () => {
  it('accepts env:NAME and file:PATH', () => {
    for (const s of ['env:HSM_PIN', 'env:_x1', 'file:master.key', 'file:/run/secrets/db url']) {
      expect(() => checkSecretRef(s)).not.toThrow();
    }
  });
  it('rejects anything else without repeating the value', () => {
    for (const s of [
      'hunter2',
      '1234',
      'env:',
      'env:9LIVES',
      'env:A-B',
      'file:',
      'file: leading-space',
      'ENV:X',
    ]) {
      let message = '';
      try {
        checkSecretRef(s);
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        message = (e as Error).message;
      }
      expect(message).not.toBe('');
      const secretPart = s.replace(/^(env|file|ENV):/, '');
      if (secretPart.trim().length > 0) expect(message).not.toContain(secretPart.trim());
    }
  });
});

describe('JSON Schema patterns agree with the parsers', () => {
  it('duration pattern accepts exactly what parseDuration accepts', () => {
    const re = new RegExp(DURATION_PATTERN, 'u');
    fc.assert(
      fc.property(soup(['P', 'T', 'Y', 'M', 'W', 'D', 'H', 'S', '1', '90', '.', '5', ' ']), (s) => {
        expect(re.test(s)).toBe(isDuration(s));
      }),
      { numRuns: 2000 },
    );
  });

  const cases: [string, string, (s: string) => unknown, string[], string[]][] = [
    [
      'rate',
      RATE_PATTERN,
      parseRate,
      ['0', '1', '50', '.', '/', 's', 'min', 'h', 'x', ' ', '-'],
      ['1/s', '0.5/h'],
    ],
    [
      'verify',
      VERIFY_PATTERN,
      parseVerify,
      ['full', 'none', 'sample', '(', ')', '%', '0', '1', '100', '.', '5'],
      ['full', 'sample(0.5%)'],
    ],
    [
      'money',
      MONEY_PATTERN,
      parseMoney,
      ['0', '5', '.', '25', ' ', 'USD', 'EUR', 'XYZ', 'usd', 'U', '-'],
      ['5.25 EUR'],
    ],
    [
      'secret',
      SECRET_PATTERN,
      checkSecretRef,
      ['env:', 'file:', 'A', '_', '1', '/', ' ', 'x', '-', ':'],
      ['env:A_1'],
    ],
  ];
  it.each(cases)(
    '%s pattern accepts every string the parser accepts',
    (_name, pattern, parse, alphabet, good) => {
      const re = new RegExp(pattern, 'u');
      for (const s of good) expect([accepts(parse, s), re.test(s)]).toEqual([true, true]);
      fc.assert(
        fc.property(soup(alphabet), (s) => {
          if (accepts(parse, s)) expect(re.test(s)).toBe(true);
        }),
        { numRuns: 2000 },
      );
    },
  );
});
