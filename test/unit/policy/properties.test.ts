import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { PolicyError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { configArb } from './arbitraries.js';

describe('loadConfig properties', () => {
  it('loads any valid config, written out as YAML, back to the values it was generated from', () => {
    fc.assert(
      fc.property(configArb, ({ raw, want }) => {
        const text = stringify(raw);
        const c = loadConfig(text, 'gen.yaml');
        expect(c.version).toBe(1);
        expect(c.file).toBe('gen.yaml');
        expect(c.digest).toBe(createHash('sha256').update(text).digest('hex'));
        expect(c.providers).toEqual(want.providers);
        expect(c.stores).toEqual(want.stores);
        expect(c.policies).toEqual(want.policies);
      }),
      { numRuns: 200 },
    );
  });

  /** Garbage never crashes the loader: it loads, or it throws a PolicyError with sane positions. */
  function onlyPolicyErrors(text: string): void {
    try {
      loadConfig(text, 'junk.yaml');
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      expect(e.issues.length).toBeGreaterThan(0);
      const lines = text.split(/\r\n|\r|\n/).length;
      for (const i of e.issues) {
        expect(i.file).toBe('junk.yaml');
        expect(i.line).toBeGreaterThanOrEqual(1);
        expect(i.line).toBeLessThanOrEqual(lines + 1);
        expect(i.column).toBeGreaterThanOrEqual(1);
        expect(i.message.length).toBeGreaterThan(0);
      }
    }
  }

  it('throws nothing but PolicyError on random strings', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), onlyPolicyErrors), { numRuns: 500 });
  });

  it('throws nothing but PolicyError on YAML-shaped token soup', () => {
    const tokens = [
      'version: 1\n',
      'version: 2\n',
      'providers:\n',
      'stores:\n',
      'policies:\n',
      '  ',
      '    ',
      '- ',
      '\n',
      '\t',
      '{',
      '}',
      '[',
      ']',
      ': ',
      ',',
      '&a ',
      '*a ',
      '*b ',
      '!!str ',
      '!!map ',
      '!tag ',
      '"',
      "'",
      '# c',
      '? ',
      '|\n',
      '>\n',
      '<<: *a\n',
      '---\n',
      '...\n',
      '%YAML 1.2\n',
      'type: local',
      'type: pkcs11',
      'pin: 1234',
      'name: x',
      'match: {}',
      'match:',
      'rotate: { every: P90D }',
      'every: P0D',
      'window: "Sat 02:00-06:00 UTC"',
      'keys: [local://x]',
      'provider: [a]',
      'stores: [s]',
      'a: { type: local }',
      '__proto__: 1',
      'constructor:',
      '~',
      'null',
      '.nan',
      '0x1F',
      '1e400',
      '-.inf',
      'true',
      '\u00a0',
      '\ufeff',
      '\u2028',
    ];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...tokens), { maxLength: 40 }).map((a) => a.join('')),
        onlyPolicyErrors,
      ),
      { numRuns: 1000 },
    );
  });

  it('throws nothing but PolicyError on arbitrary values written as YAML', () => {
    fc.assert(
      fc.property(fc.anything({ maxDepth: 4 }), (v) => onlyPolicyErrors(stringify(v) ?? '')),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            version: fc.constantFrom(1, 2, '1'),
            providers: fc.anything(),
            stores: fc.anything(),
            policies: fc.anything(),
          },
          { requiredKeys: ['version'] },
        ),
        (v) => onlyPolicyErrors(stringify(v)),
      ),
      { numRuns: 300 },
    );
  });

  it('throws nothing but PolicyError on valid configs with random edits', () => {
    const edit = fc.record({ at: fc.nat(), del: fc.nat(6), ins: fc.string({ maxLength: 4 }) });
    fc.assert(
      fc.property(configArb, fc.array(edit, { minLength: 1, maxLength: 4 }), ({ raw }, edits) => {
        let text = stringify(raw);
        for (const e of edits) {
          const at = e.at % (text.length + 1);
          text = text.slice(0, at) + e.ins + text.slice(at + e.del);
        }
        onlyPolicyErrors(text);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a config that an edit broke at the right place: a removed provider id', () => {
    fc.assert(
      fc.property(configArb, ({ raw }) => {
        const policies = (raw.policies as { match: { provider?: string[] } }[] | undefined) ?? [];
        const i = policies.findIndex((p) => p.match.provider);
        fc.pre(i >= 0);
        const gone = policies[i]!.match.provider![0]!;
        const providers = { ...(raw.providers as Record<string, unknown>) };
        delete providers[gone];
        fc.pre(Object.keys(providers).length > 0);
        let err: unknown;
        try {
          loadConfig(stringify({ ...raw, providers }), 'x.yaml');
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(PolicyError);
        expect((err as PolicyError).issues).toContainEqual(
          expect.objectContaining({
            path: `policies[${i}].match.provider[0]`,
            message: expect.stringContaining(`"${gone}"`),
          }),
        );
      }),
      { numRuns: 60 },
    );
  });
});
