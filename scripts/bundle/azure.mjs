// Bundles functions/azure into dist/azure/: a Function App folder ready to deploy (zip deploy,
// `func azure functionapp publish`, or Terraform's zip_deploy_file). Called by
// scripts/bundle-functions.mjs after tsc.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

/**
 * Left out of the bundle and installed beside it (dist/azure/package.json): the Functions
 * worker hands @azure/functions its runtime hooks, and native addons cannot be bundled.
 */
const DEPENDENCIES = ['@azure/functions', 'better-sqlite3'];
const OPTIONAL = ['pkcs11js'];
const EXTERNAL = [...DEPENDENCIES, ...OPTIONAL, 'pg-native', '@azure/functions-core'];

/** host.json: extension bundle v4 (timer, queue, Event Grid bindings) and queue behaviour. */
export const HOST_JSON = {
  version: '2.0',
  extensionBundle: { id: 'Microsoft.Azure.Functions.ExtensionBundle', version: '[4.*, 5.0.0)' },
  functionTimeout: '00:10:00',
  logging: {
    logLevel: { default: 'Information' },
    // Metrics are log lines: sampling would drop some of them.
    applicationInsights: { samplingSettings: { isEnabled: false } },
  },
  extensions: {
    queues: {
      // Shards are long: few at a time per instance, the platform scales out instead.
      batchSize: 2,
      newBatchThreshold: 1,
      // A shard another worker holds comes back after this; after 5 tries it goes to <queue>-poison.
      visibilityTimeout: '00:01:00',
      maxDequeueCount: 5,
      maxPollingInterval: '00:00:10',
      messageEncoding: 'base64',
    },
  },
};

export async function bundle({ root, config } = {}) {
  const out = join(root, 'dist', 'azure');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const versionOf = (name) => {
    const v = rootPkg.dependencies?.[name] ?? rootPkg.devDependencies?.[name];
    if (!v) throw new Error(`azure bundle: ${name} is not a dependency of ${root}/package.json`);
    return v;
  };

  const result = await build({
    absWorkingDir: root,
    entryPoints: { main: 'functions/azure/main.ts' },
    outdir: out,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minify: true,
    keepNames: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    external: EXTERNAL,
    // CommonJS dependencies call require() for node: builtins; ESM output has none of its own.
    banner: {
      js: "import { createRequire as __rekeyCreateRequire } from 'node:module'; const require = __rekeyCreateRequire(import.meta.url);",
    },
    metafile: true,
    logLevel: 'warning',
  });

  // The deployment's rekey.yaml, checked now so a bad policy fails the build, not the cold start.
  const configFile =
    config ?? process.env.REKEY_AZURE_CONFIG ?? join(root, 'functions', 'azure', 'rekey.yaml');
  const { loadConfig } = await import(
    pathToFileURL(join(root, 'dist', 'shared', 'core', 'policy', 'load.js')).href
  );
  loadConfig(readFileSync(configFile, 'utf8'), configFile);
  copyFileSync(configFile, join(out, 'rekey.yaml'));

  // The price catalog, where shared/cost/catalogFile.ts looks beside a bundle.
  mkdirSync(join(out, 'data', 'prices'), { recursive: true });
  copyFileSync(join(root, 'data', 'prices', 'catalog.json'), join(out, 'data', 'prices', 'catalog.json'));

  writeFileSync(join(out, 'host.json'), `${JSON.stringify(HOST_JSON, null, 2)}\n`);
  const pkg = {
    name: 'rekey-azure-functions',
    version: rootPkg.version,
    description: 'rekey on Azure Functions (built by npm run build; install with npm install --omit=dev)',
    private: true,
    type: 'module',
    main: 'main.mjs',
    engines: { node: '>=20' },
    dependencies: Object.fromEntries(DEPENDENCIES.map((d) => [d, versionOf(d)])),
    optionalDependencies: Object.fromEntries(OPTIONAL.map((d) => [d, versionOf(d)])),
  };
  writeFileSync(join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);

  const bytes = Object.entries(result.metafile.outputs)
    .filter(([f]) => f.endsWith('.mjs'))
    .reduce((n, [, o]) => n + o.bytes, 0);
  const main = result.metafile.outputs[relative(root, join(out, 'main.mjs'))]?.bytes ?? 0;
  console.log(
    `azure: ${relative(root, out)}/main.mjs ${(main / 1024).toFixed(0)} KB (${(bytes / 1024).toFixed(0)} KB with lazily loaded chunks)`,
  );
}
