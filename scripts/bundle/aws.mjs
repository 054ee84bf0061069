// Bundles each AWS Lambda function (functions/aws/<fn>.ts) into one minified ES module,
// dist/aws/<fn>.mjs (.mjs so Lambda's nodejs20.x loads it as ESM without a package.json beside
// it). The AWS SDK is bundled at the pinned version rather than taken from the runtime: rekey
// uses recent KMS API fields that an older runtime SDK would silently drop. What is left out,
// and why, is listed below; docs/serverless-aws.md explains the choices and the sizes.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { mergeInitChunks } from './merge.mjs';

/** Function name -> entry file. Each becomes dist/aws/<name>.mjs with a `handler` export. */
export const AWS_FUNCTIONS = {
  scheduler: 'functions/aws/scheduler.ts',
  worker: 'functions/aws/worker.ts',
  events: 'functions/aws/events.ts',
  costs: 'functions/aws/costs.ts',
  approvals: 'functions/aws/approvals.ts',
};

/**
 * Packages the SDK imports only lazily, for credential sources a Lambda function never reaches
 * (its role's credentials are in the environment, the first source tried), or only in
 * browsers. They stay dynamic `import()`s; the nodejs20.x runtime ships them anyway.
 */
export const LAZY_EXTERNALS = [
  'bowser',
  '@aws-sdk/credential-provider-ini',
  '@aws-sdk/credential-provider-sso',
  '@aws-sdk/credential-provider-process',
  '@aws-sdk/credential-provider-web-identity',
  '@aws-sdk/credential-provider-http',
  '@smithy/credential-provider-imds',
];

/**
 * Adapters the AWS functions do not carry: native modules Lambda cannot load from a bundle
 * (SQLite, PKCS#11), and other clouds' SDKs. compose.ts reaches them only when the config names
 * them; in these bundles each export is replaced by one that throws a ConfigError saying so.
 */
export const LEFT_OUT = {
  'shared/providers/local/LocalKmsProvider.ts': 'the local provider (SQLite keystore)',
  'shared/stores/sqlite/SqliteDekStore.ts': 'SQLite stores',
  'shared/stores/sqlite/SqliteStateStore.ts': 'SQLite state',
  'shared/providers/pkcs11/Pkcs11Provider.ts': 'the PKCS#11 provider',
  'shared/providers/pkcs11/export.ts': 'BYOK material from a PKCS#11 token',
  'shared/providers/gcp/GcpKmsProvider.ts': 'the Google Cloud KMS provider',
  'shared/providers/azure/AzureKeyVaultProvider.ts': 'the Azure Key Vault provider',
  'shared/stores/postgres/PostgresDekStore.ts': 'PostgreSQL stores',
  'shared/stores/postgres/PostgresStateStore.ts': 'PostgreSQL state',
  'shared/telemetry/metrics/OtlpMetricsSink.ts':
    'the OpenTelemetry metrics exporter (on AWS, metrics go out as EMF)',
  // The functions read the config compiled at build time (with the price catalog inside), so
  // the YAML parser and the schema library stay out of every bundle.
  'shared/core/policy/load.ts':
    'the YAML config loader (these functions read the config compiled by the build)',
  'shared/cost/catalogFile.ts': 'the price catalog file loader (the compiled config carries the catalog)',
  // The stack creates the tables (serverless.yml): CreateTable and DescribeTable stay out.
  'shared/stores/dynamodb/ensureTable.ts': 'creating DynamoDB tables (serverless.yml creates them)',
};

/** More left out of one function: what it never calls. */
export const FUNCTION_LEFT_OUT = {
  costs: {
    'shared/telemetry/eventbridge/EventBridgeEventBus.ts': 'rekey events (the cost function publishes none)',
    'shared/stores/dynamodb/DynamoDekStore.ts': 'DEK stores (the cost function reads no DEK)',
  },
  approvals: {
    'shared/telemetry/eventbridge/EventBridgeEventBus.ts':
      'rekey events (the approvals function publishes none)',
    'shared/providers/aws/AwsKmsProvider.ts': 'the KMS provider (the approvals function calls none)',
    'shared/stores/dynamodb/DynamoDekStore.ts': 'DEK stores (the approvals function reads no DEK)',
  },
};

/** Packages that must never end up in an AWS bundle (the build fails if one does). */
const FORBIDDEN = [
  /^better-sqlite3$/,
  /^pkcs11js$/,
  /^@google-cloud\//,
  /^@azure\//,
  /^@grpc\//,
  /^pg$/,
  /^@opentelemetry\//,
  // Validation happens at build time (functions/aws/compileConfig.ts), not in the functions.
  /^yaml$/,
  /^zod$/,
  /^picomatch$/,
];

/**
 * rekey modules the bundles take from elsewhere: globs come compiled with the config
 * (functions/aws/globs.ts), so the glob compiler stays out.
 */
export const REPLACED = {
  'shared/core/policy/glob.ts': 'functions/aws/globs.ts',
  // Every invocation composes the KMS provider and the DynamoDB stores: they are imported with
  // the bundle instead of through compose's import() (see shared/adapterModules.ts).
  'shared/adapterModules.ts': 'functions/aws/adapterModules.ts',
};

/** Where the chunks split off a function's bundle go, beside it: `chunks/<fn>-<hash>.mjs`. */
export const CHUNK_DIR = 'chunks';

/** Exported value names of a TypeScript module (types and interfaces are not values). */
function exportedNames(source) {
  const names = new Set();
  const decl =
    /export\s+(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:class|function\*?|const|let|var)\s+([A-Za-z_$][\w$]*)/g;
  for (const m of source.matchAll(decl)) names.add(m[1]);
  for (const m of source.matchAll(/export\s*\{([^}]*)\}(?!\s*from)/g)) {
    for (const part of m[1].split(',')) {
      const p = part.trim();
      if (!p || p.startsWith('type ')) continue;
      names.add(
        p
          .split(/\s+as\s+/)
          .pop()
          .trim(),
      );
    }
  }
  return [...names];
}

function rekeyPlugin(root, fn) {
  const leftOut = new Map(
    Object.entries({ ...LEFT_OUT, ...FUNCTION_LEFT_OUT[fn] }).map(([rel, what]) => [join(root, rel), what]),
  );
  const errorsModule = join(root, 'shared/core/errors.ts');
  const replaced = new Map(Object.entries(REPLACED).map(([from, to]) => [join(root, from), join(root, to)]));
  return {
    name: 'rekey-aws',
    setup(build) {
      // @middy/core imports Node's web streams for one check on handlers that stream their
      // response, which rekey's never do; importing them costs about 4 ms at every cold start.
      // The check goes to the global ReadableStream (the same class), looked up when it runs.
      build.onResolve({ filter: /^node:stream\/web$/ }, (args) =>
        /node_modules\/@middy\/core\//.test(args.importer)
          ? { path: 'node:stream/web', namespace: 'rekey-web-streams-on-use' }
          : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: 'rekey-web-streams-on-use' }, () => ({
        contents:
          'export const ReadableStream = { [Symbol.hasInstance]: (v) => v instanceof globalThis.ReadableStream };',
        loader: 'js',
      }));
      // The modules listed in LEFT_OUT, resolved from .js specifiers in the TypeScript sources.
      build.onResolve({ filter: /\.js$/ }, (args) => {
        if (!args.importer.startsWith(root) || args.importer.includes('node_modules')) return undefined;
        const ts = join(args.resolveDir, args.path).replace(/\.js$/, '.ts');
        if (replaced.has(ts)) return { path: replaced.get(ts) };
        const what = leftOut.get(ts);
        return what ? { path: ts, namespace: 'rekey-left-out', pluginData: { what } } : undefined;
      });
      build.onLoad({ filter: /.*/, namespace: 'rekey-left-out' }, (args) => {
        const names = exportedNames(readFileSync(args.path, 'utf8'));
        const why = `${args.pluginData.what} is not part of rekey's AWS functions (scripts/bundle/aws.mjs); run it from the CLI or another runtime`;
        const lines = [
          `import { ConfigError } from ${JSON.stringify(errorsModule)};`,
          `const why = ${JSON.stringify(why)};`,
          'const missing = (name) => { const fail = () => { throw new ConfigError(name + ": " + why); };',
          '  return new Proxy(function () {}, { apply: fail, construct: fail, get: (t, p) => (typeof p === "symbol" ? t[p] : fail()) }); };',
          ...names.map((n) => `export const ${n} = missing(${JSON.stringify(n)});`),
        ];
        return { contents: lines.join('\n'), loader: 'js', resolveDir: root };
      });
      // Error classes keep their names through minification: RekeyError subclasses name
      // themselves after their class (ValidationError, ProviderError...), and the logs show it.
      // A static block defines the name; esbuild's keepNames would cost 45 KB of helpers.
      build.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path.includes('node_modules')) return undefined;
        const text = readFileSync(args.path, 'utf8');
        const contents = text.replace(
          /^((?:export )?class (\w+) extends \w*(?:Error|Violation)\b[^{\n]*\{)$/gm,
          (_, head, name) => `${head} static { Object.defineProperty(this, 'name', { value: '${name}' }); }`,
        );
        return { contents, loader: 'ts' };
      });
    },
  };
}

/**
 * The files of one function in its metafile (keys relative to the project root): `init`, the
 * bundle and the chunks it imports statically (what a cold start loads), and `lazy`, the chunks
 * loaded by an `import()` on a path only some invocations take.
 */
export function functionFiles(metafile, outfile) {
  const init = [];
  const visit = (key) => {
    if (init.includes(key) || !metafile.outputs[key]) return;
    init.push(key);
    for (const i of metafile.outputs[key].imports) if (i.kind === 'import-statement') visit(i.path);
  };
  visit(outfile);
  const lazy = Object.keys(metafile.outputs).filter((k) => k.endsWith('.mjs') && !init.includes(k));
  return { init, lazy };
}

/**
 * Sizes by package (or by rekey folder), largest first, of what a cold start loads (the bundle
 * and its static chunks): what to look at when a bundle grows.
 */
export function sizesByPackage(metafile, outfile) {
  const out = {};
  for (const file of functionFiles(metafile, outfile).init) {
    for (const [path, info] of Object.entries(metafile.outputs[file].inputs)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
      const key = m ? m[1] : path.split('/').slice(0, 2).join('/');
      out[key] = (out[key] ?? 0) + info.bytesInOutput;
    }
  }
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
}

/**
 * The esbuild settings of an AWS bundle with one entry, `<outdir>/<name>.mjs`, its chunks in
 * `<outdir>/chunks/<name>-<hash>.mjs`. The functions add the rekey plugin; the functions
 * benchmark builds its baselines with these, so that only what goes in differs.
 */
export function esbuildSettings({ name, entry, outdir, external = [] }) {
  return {
    entryPoints: { [name]: entry },
    outdir,
    // Paths few invocations take (an import() in rekey's code or the SDK's) become chunks
    // beside the bundle, loaded when first taken. Code that two of them, or one of them and the
    // bundle, share goes to a chunk of its own, which the bundle imports with everything else.
    splitting: true,
    entryNames: '[name]',
    chunkNames: `${CHUNK_DIR}/${name}-[hash]`,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // The SDK's ES module builds shake unused commands; their CommonJS builds carry them all.
    mainFields: ['module', 'main'],
    minify: true,
    legalComments: 'none',
    sourcemap: 'external',
    metafile: true,
    external: [...LAZY_EXTERNALS, ...external],
    // Bundled CommonJS packages still call require() for Node's built-in modules.
    banner: {
      js: "import { createRequire as __rekeyRequire } from 'node:module'; const require = __rekeyRequire(import.meta.url);",
    },
    logLevel: 'warning',
  };
}

/**
 * Builds the bundles. `only` limits the functions; `outdir` and `external` (more packages left
 * to the runtime) are for comparisons such as the functions benchmark.
 */
export async function bundle({
  root,
  only,
  quiet = false,
  outdir = join(root, 'dist', 'aws'),
  external = [],
  config = true,
}) {
  const esbuild = createRequire(join(root, 'package.json'))('esbuild');
  await mkdir(outdir, { recursive: true });
  const results = {};
  for (const [name, entry] of Object.entries(AWS_FUNCTIONS)) {
    if (only && !only.includes(name)) continue;
    const outfile = join(outdir, `${name}.mjs`);
    // A previous build's map and chunks (chunk names change with their contents).
    rmSync(`${outfile}.map`, { force: true });
    const chunks = join(outdir, CHUNK_DIR);
    for (const f of existsSync(chunks) ? readdirSync(chunks) : []) {
      if (f.startsWith(`${name}-`)) rmSync(join(chunks, f), { force: true });
    }
    const settings = esbuildSettings({ name, entry: join(root, entry), outdir, external });
    // Linked maps, so that the second pass (mergeInitChunks) maps its output to the sources.
    const r = await esbuild.build({
      absWorkingDir: root,
      ...settings,
      sourcemap: 'linked',
      plugins: [rekeyPlugin(root, name)],
    });
    const key = relative(root, outfile);
    r.metafile = await mergeInitChunks({
      esbuild,
      root,
      metafile: r.metafile,
      entryKey: key,
      files: functionFiles(r.metafile, key),
      settings,
    });
    const bad = Object.keys(r.metafile.inputs).filter((p) =>
      FORBIDDEN.some((re) => re.test(/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p)?.[1] ?? '')),
    );
    const imports = Object.values(r.metafile.outputs).flatMap((o) => o.imports);
    const badImports = imports.filter((i) => FORBIDDEN.some((re) => re.test(i.path)));
    if (bad.length || badImports.length) {
      throw new Error(
        `${key} would carry ${[...bad, ...badImports.map((i) => i.path)].slice(0, 5).join(', ')}`,
      );
    }
    writeFileSync(join(outdir, `${name}.meta.json`), JSON.stringify(r.metafile));
    const { init, lazy } = functionFiles(r.metafile, key);
    const size = (files) => files.reduce((n, f) => n + statSync(join(root, f)).size, 0);
    const bytes = size(init);
    results[name] = {
      file: outfile,
      bytes,
      lazyBytes: size(lazy),
      files: [...init, ...lazy].map((f) => join(root, f)),
      byPackage: sizesByPackage(r.metafile, key),
    };
    if (!quiet) {
      const parts = init.length > 1 ? ` in ${init.length} files` : '';
      const later = lazy.length
        ? `, ${(size(lazy) / 1024).toFixed(1)} KB in ${lazy.length} chunks loaded on use`
        : '';
      console.log(`${key} ${(bytes / 1024).toFixed(1)} KB${parts}${later}`);
    }
  }
  if (config) await compileFunctionsConfig({ root, outdir, quiet });
  return results;
}

/** Where the functions find the compiled config (REKEY_CONFIG's default, functions/aws/runtime.ts). */
export const COMPILED_CONFIG = 'rekey.config.json';

/**
 * Compiles the config the functions run on: REKEY_AWS_CONFIG if set (a failure fails the build),
 * otherwise rekey.yaml at the root when there is one (a failure is reported, nothing written).
 * The result, <outdir>/rekey.config.json, is what serverless.yml packages. A stale one is
 * removed first, so the bundles never meet a config compiled by another build.
 */
export async function compileFunctionsConfig({
  root,
  outdir = join(root, 'dist', 'aws'),
  source,
  quiet = false,
}) {
  const explicit = source ?? process.env.REKEY_AWS_CONFIG?.trim();
  const yamlPath = explicit
    ? isAbsolute(explicit)
      ? explicit
      : resolve(root, explicit)
    : join(root, 'rekey.yaml');
  const out = join(outdir, COMPILED_CONFIG);
  rmSync(out, { force: true });
  if (!explicit && !existsSync(yamlPath)) {
    if (!quiet)
      console.log('aws: no rekey.yaml at the root, no compiled config (REKEY_AWS_CONFIG=file names one)');
    return undefined;
  }
  const compiler = join(root, 'dist', 'functions', 'aws', 'compileConfig.js');
  if (!existsSync(compiler))
    throw new Error(`${relative(root, compiler)} is missing: run tsc first (npm run build does)`);
  const { compileConfig } = await import(pathToFileURL(compiler).href);
  try {
    const { compiled, notes } = await compileConfig(yamlPath, { root });
    writeFileSync(out, `${JSON.stringify(compiled)}\n`);
    if (!quiet) {
      for (const n of notes) console.log(`aws: note: ${n}`);
      console.log(`aws: ${relative(root, out)} compiled from ${relative(root, yamlPath)}`);
    }
    return out;
  } catch (e) {
    if (explicit) throw e;
    console.warn(`aws: rekey.yaml not compiled for the functions:\n${e.message}`);
    return undefined;
  }
}
