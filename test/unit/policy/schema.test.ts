import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../../shared/core/domain/duration.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { configJsonSchema, schemaFileText } from '../../../shared/core/policy/schema.js';

const root = join(import.meta.dirname, '../../..');

describe('schema/rekey-config.schema.json', () => {
  it('is what the zod schema generates now (run `node scripts/gen-schema.mjs` after changing schema.ts)', () => {
    const committed = readFileSync(join(root, 'schema/rekey-config.schema.json'), 'utf8');
    expect(committed).toBe(schemaFileText(configJsonSchema()));
  });

  it('is a closed draft 2020-12 schema whose patterns are valid ECMA-262 (unicode) regexes', () => {
    const s = configJsonSchema();
    expect(s.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(s.additionalProperties).toBe(false);
    expect(s.required).toEqual(['version', 'providers']);
    const patterns: string[] = [];
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === 'pattern' && typeof x === 'string') patterns.push(x);
          else walk(x);
        }
      }
    };
    walk(s);
    expect(patterns.length).toBeGreaterThan(10);
    for (const p of patterns) expect(() => new RegExp(p, 'u')).not.toThrow();
  });
});

describe('examples/', () => {
  const dir = join(root, 'examples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

  it('has the two documented examples', () => {
    expect(files).toEqual(expect.arrayContaining(['local.yaml', 'rekey.yaml']));
  });

  it.each(files)('%s loads without issues', (f) => {
    const c = loadConfig(readFileSync(join(dir, f), 'utf8'), `examples/${f}`);
    expect(Object.keys(c.providers).length).toBeGreaterThan(0);
    expect(c.policies.length).toBeGreaterThan(0);
  });

  it('local.yaml is the embedded default: provider local, sqlite store app, P90D, verify full, disable at once', () => {
    const c = loadConfig(readFileSync(join(dir, 'local.yaml'), 'utf8'), 'examples/local.yaml');
    expect(c.providers).toEqual({
      local: { type: 'local', keystore: 'kms.db', masterKey: 'file:master.key' },
    });
    expect(c.stores.app).toMatchObject({ type: 'sqlite', path: 'app.db', table: 'data_keys' });
    expect(c.policies).toHaveLength(1);
    const p = c.policies[0]!;
    expect(p.rotate?.every).toEqual(parseDuration('P90D'));
    expect(p.rewrap).toMatchObject({ stores: ['app'], verify: { mode: 'full' } });
    expect(p.retire?.disableAfter).toEqual(parseDuration('P0D'));
  });

  it('rekey.yaml covers the four cloud and HSM provider types and both store types', () => {
    const c = loadConfig(readFileSync(join(dir, 'rekey.yaml'), 'utf8'), 'examples/rekey.yaml');
    expect(new Set(Object.values(c.providers).map((p) => p.type))).toEqual(
      new Set(['aws-kms', 'gcp-kms', 'azure-kv', 'pkcs11']),
    );
    expect(new Set(Object.values(c.stores).map((s) => s.type))).toEqual(new Set(['postgres', 'sqlite']));
  });
});
