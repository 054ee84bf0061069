/**
 * The functions match globs with expressions compiled at build time instead of picomatch; for
 * every glob the loader accepts, they must answer exactly as picomatch does.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileGlob, globsOf } from '../../../functions/aws/compileConfig.js';
import { globMatcher as compiledMatcher, registerGlobs } from '../../../functions/aws/globs.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { globMatcher } from '../../../shared/core/policy/glob.js';
import { loadConfig } from '../../../shared/core/policy/load.js';

const CHARS = [
  'a',
  'b',
  'A',
  '.',
  '/',
  '-',
  '*',
  '?',
  '[',
  ']',
  '!',
  '^',
  '{',
  '}',
  ',',
  '(',
  ')',
  '|',
  '+',
  '@',
  '\\',
  '$',
  ' ',
  'é',
];
const text = (max: number) => fc.array(fc.constantFrom(...CHARS), { maxLength: max }).map((a) => a.join(''));

describe('globs compiled with the config', () => {
  it('match exactly as picomatch does, for every glob the loader accepts', () => {
    let compared = 0;
    fc.assert(
      fc.property(text(8), fc.array(text(8), { minLength: 1, maxLength: 12 }), (glob, values) => {
        let reference: (v: string) => boolean;
        try {
          reference = globMatcher(glob);
        } catch (e) {
          if (e instanceof ValidationError) return; // refused by the loader as well
          throw e;
        }
        registerGlobs({ [glob]: compileGlob(glob) });
        const compiled = compiledMatcher(glob);
        for (const v of [...values, glob, '', `${glob}a`]) {
          compared++;
          expect(compiled(v), `${JSON.stringify(glob)} on ${JSON.stringify(v)}`).toBe(reference(v));
        }
      }),
      { numRuns: 4000 },
    );
    expect(compared).toBeGreaterThan(10_000);
  });

  it('common policy globs', () => {
    for (const [glob, yes, no] of [
      ['pci*', ['pci', 'pci-eu', 'pci/x'], ['xpci', '']],
      ['{orders,billing}-*', ['orders-1', 'billing-x'], ['orders', 'misc-1']],
      ['legacy-?', ['legacy-1'], ['legacy-10']],
      ['[ab]*', ['alpha', 'beta'], ['gamma']],
      ['!(tmp)*', ['prod'], []],
    ] as const) {
      registerGlobs({ [glob]: compileGlob(glob) });
      for (const v of yes) expect(compiledMatcher(glob)(v)).toBe(globMatcher(glob)(v));
      for (const v of no) expect(compiledMatcher(glob)(v)).toBe(globMatcher(glob)(v));
    }
  });

  it('collects every glob field of a config, and refuses a glob it was not given', () => {
    const config = loadConfig(
      `version: 1
providers:
  aws: { type: aws-kms, regions: [eu-west-1], rotateByNewKey: ["legacy-*"] }
stores: {}
policies:
  - name: a
    match: { name: ["orders-*", "billing"], tags: { tier: "gold|silver", env: "prod*" } }
`,
      'inline.yaml',
    );
    expect(globsOf(config)).toEqual(['billing', 'gold|silver', 'legacy-*', 'orders-*', 'prod*']);
    expect(() => compiledMatcher('never-compiled-*')).toThrow(/not among the globs compiled with the config/);
  });
});
