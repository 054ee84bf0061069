/**
 * The config the AWS functions run on: compiled at build time by the normal loader, read at run
 * time without it. What the loader refuses, and what the functions cannot carry, fails the
 * compilation naming the file and field; a file that is not such a compilation is refused by the
 * reader, naming the file.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileConfig } from '../../../functions/aws/compileConfig.js';
import { readCompiledConfig } from '../../../functions/aws/config.js';
import { ConfigError, PolicyError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { loadCatalog } from '../../../shared/cost/catalogFile.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'rekey-compiled-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const YAML = `version: 1
providers:
  aws-prod: { type: aws-kms, regions: [eu-west-1, us-east-1], rotateByNewKey: ["alias/legacy-*"] }
stores:
  orders: { type: dynamodb, table: orders-deks, region: eu-west-1 }
state: { type: dynamodb, table: somewhere-else }
metrics: { type: emf, namespace: acme/rekey, perKey: true }
policies:
  - name: pci
    match: { provider: [aws-prod], tags: { data-class: "pci*" } }
    rotate: { every: P90D, window: "Sat 02:00-06:00 UTC" }
    rewrap: { stores: [orders], verify: sample(1%), rate: 500/s }
    retire: { disableAfter: P30D, destroyAfter: P90D, approvals: 2 }
    budget: { perKeyMonthly: 5 USD }
`;

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('compiled config', () => {
  it('carries what the loader produced, and the catalog, through JSON unchanged', async () => {
    const src = write('rekey.yaml', YAML);
    const { compiled, notes } = await compileConfig(src, {
      root: ROOT,
      now: new Date('2026-01-01T00:00:00Z'),
    });
    expect(notes).toEqual([expect.stringMatching(/state: not used by the AWS functions/)]);
    const out = write('rekey.config.json', JSON.stringify(compiled));
    const { config, catalog } = readCompiledConfig(out, '/var/task');
    const { state: _s, events: _e, ...loaded } = loadConfig(YAML, src);
    // Outside the project, the source is placed at the function's root under its own name.
    expect(config).toEqual({ ...loaded, file: '/var/task/rekey.yaml' });
    const reference = loadCatalog();
    expect(catalog.version).toBe(reference.version);
    expect([...catalog.skus].sort()).toEqual([...reference.skus].sort());
    for (const sku of reference.skus)
      expect(catalog.lookup(sku, 'eu-west-1', '2026-01-15')).toEqual(
        reference.lookup(sku, 'eu-west-1', '2026-01-15'),
      );
    expect(readFileSync(out, 'utf8')).not.toMatch(/\/tmp\//);
  });

  it('a source inside the project keeps its place relative to the root', async () => {
    mkdirSync(join(ROOT, '.tmp'), { recursive: true });
    const inside = mkdtempSync(join(ROOT, '.tmp', 'compiled-'));
    try {
      writeFileSync(join(inside, 'prod.yaml'), YAML);
      const { compiled } = await compileConfig(join(inside, 'prod.yaml'), { root: ROOT });
      expect(compiled.source).toBe(`.tmp/${basename(inside)}/prod.yaml`);
    } finally {
      rmSync(inside, { recursive: true, force: true });
    }
  });

  it('refuses what the loader refuses, with line and column', async () => {
    const src = write('bad.yaml', YAML.replace('every: P90D', 'every: 90 days'));
    const e = await compileConfig(src, { root: ROOT }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PolicyError);
    expect((e as Error).message).toMatch(new RegExp(`${src}:11:22: policies\\[0\\]\\.rotate\\.every:`));
  });

  it('refuses providers, stores and metrics the functions do not carry, naming each', async () => {
    const src = write(
      'multi.yaml',
      YAML.replace(
        'stores:',
        '  gcp: { type: gcp-kms, projects: [p], locations: [europe-west1] }\nstores:\n  sessions: { type: sqlite, path: s.db, table: t }',
      ).replace('metrics: { type: emf, namespace: acme/rekey, perKey: true }', 'metrics: { type: otlp }'),
    );
    await expect(compileConfig(src, { root: ROOT })).rejects.toThrow(ConfigError);
    await expect(compileConfig(src, { root: ROOT })).rejects.toThrow(
      /providers\.gcp: type gcp-kms .*; stores\.sessions: type sqlite .*; metrics: type otlp/,
    );
    await expect(compileConfig(join(dir, 'missing.yaml'), { root: ROOT })).rejects.toThrow(
      /cannot read config file .*missing\.yaml/,
    );
  });

  it('the reader refuses anything but a compilation, naming the file', async () => {
    const src = write('ok.yaml', YAML);
    const good = (await compileConfig(src, { root: ROOT })).compiled;
    const refused = (name: string, text: string) => {
      const p = write(name, text);
      try {
        readCompiledConfig(p, '/var/task');
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as Error).message).toContain(p);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused('yaml.json', YAML)).toMatch(/it looks like YAML/);
    expect(refused('broken.json', '{"format":')).toMatch(/not valid JSON/);
    expect(refused('plain.json', JSON.stringify({ version: 1 }))).toMatch(/no "format" marker/);
    expect(refused('future.json', JSON.stringify({ ...good, formatVersion: 2 }))).toMatch(/format version 2/);
    const { policies: _p, ...noPolicies } = good.config;
    expect(refused('partial.json', JSON.stringify({ ...good, config: noPolicies, catalog: {} }))).toMatch(
      /missing or malformed: config\.policies, catalog/,
    );
    expect(() => readCompiledConfig(join(dir, 'absent.json'), '/var/task')).toThrow(
      /cannot read the compiled config/,
    );
  });
});
