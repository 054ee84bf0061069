import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { BUILT_APP, ROOT } from './functionsHost.js';

/** dist/azure as `npm run build` leaves it: a Function App folder ready to zip and deploy. */
describe('the built Function App (dist/azure)', () => {
  const read = (f: string) => readFileSync(join(BUILT_APP, f), 'utf8');

  it('exists (npm run build)', () => {
    expect(existsSync(join(BUILT_APP, 'main.mjs')), `${BUILT_APP}/main.mjs: run npm run build`).toBe(true);
  });

  it('host.json takes the v4 extension bundle and sets the queue retry behaviour', () => {
    const host = JSON.parse(read('host.json'));
    expect(host).toMatchObject({
      version: '2.0',
      extensionBundle: { id: 'Microsoft.Azure.Functions.ExtensionBundle', version: '[4.*, 5.0.0)' },
      extensions: { queues: { messageEncoding: 'base64', maxDequeueCount: 5 } },
    });
  });

  it('package.json points at the ESM entry and lists what the bundle leaves out, at the versions tested', () => {
    const pkg = JSON.parse(read('package.json'));
    const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ type: 'module', main: 'main.mjs' });
    expect(existsSync(join(BUILT_APP, pkg.main))).toBe(true);
    expect(pkg.dependencies['@azure/functions']).toBe(root.dependencies['@azure/functions']);
    expect(pkg.dependencies['better-sqlite3']).toBe(root.dependencies['better-sqlite3']);
    // The worker's hooks reach @azure/functions only if the app imports the installed package.
    expect(read('main.mjs')).toMatch(/from\s*"@azure\/functions"/);
  });

  it('ships its config (valid) and the price catalog beside the entry', () => {
    const yaml = read('rekey.yaml');
    expect(() => loadConfig(yaml, 'rekey.yaml')).not.toThrow();
    expect(JSON.parse(read('data/prices/catalog.json'))).toBeTypeOf('object');
  });

  it('keeps cloud SDKs the Azure functions do not always need in lazily loaded chunks', () => {
    const main = statSync(join(BUILT_APP, 'main.mjs')).size;
    const chunks = readdirSync(join(BUILT_APP, 'chunks')).filter((f) => f.endsWith('.mjs'));
    expect(chunks.some((c) => c.startsWith('GcpKmsProvider-'))).toBe(true);
    expect(chunks.some((c) => c.startsWith('AwsKmsProvider-'))).toBe(true);
    expect(read('main.mjs')).not.toContain('@google-cloud/kms');
    // The entry stays a fraction of everything built.
    const all = chunks.reduce((n, c) => n + statSync(join(BUILT_APP, 'chunks', c)).size, main);
    expect(main / all).toBeLessThan(0.25);
  });
});
