/**
 * Function bundles: size and cold load of each dist/aws/<fn>.mjs, against a baseline bundle
 * built in the same run with the same esbuild settings that only imports the cloud's SDK
 * client (for AWS, the KMS client), and the same client bundled with esbuild's defaults (the
 * SDK's CommonJS builds, what a plain bundle of it weighs). Cold load is the median wall time of fresh
 * `node -e "import(bundle)"` processes, bundles and baseline taken in turn; the import alone
 * (timed inside the process, without Node's own start-up) is reported beside it. A second
 * baseline per function imports every SDK client that function carries, to show what rekey
 * itself adds on top of the clients it cannot do without.
 *
 * The functions bundle the SDK at its pinned version. The `runtime-sdk` variant, built here,
 * leaves every @aws-sdk and @smithy package to the one the Lambda runtime ships: smaller, but
 * loaded from node_modules as many files; its figures show that trade.
 *
 *   node dist/bench/functions.js [--runs 5] [--json]     (after `npm run build`)
 *
 * Targets: each bundle <= 600 KB, and cold load <= 1.3x the plainly built KMS client bundle
 * (esbuild's defaults: what a bundle that only imports the SDK client weighs, ~474 KB). The
 * ratio to the same client built as lean as the functions is reported beside it. For a bundle
 * over the size target, the largest packages (from the esbuild metafile) are listed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SIZE_TARGET_KB = 600;
const LOAD_TARGET = 1.3;

interface BundleScript {
  AWS_FUNCTIONS: Record<string, string>;
  LAZY_EXTERNALS: string[];
  sizesByPackage(metafile: unknown, outfile: string): Record<string, number>;
  bundle(opts: {
    root: string;
    outdir?: string;
    external?: string[];
    quiet?: boolean;
    config?: boolean;
  }): Promise<Record<string, { file: string; bytes: number }>>;
}

/** The SDK clients each function bundles (its baseline for "what rekey adds"). */
const CLIENTS: Record<string, string[]> = {
  scheduler: ['client-kms', 'client-dynamodb', 'lib-dynamodb', 'client-eventbridge', 'client-sqs'],
  worker: ['client-kms', 'client-dynamodb', 'lib-dynamodb', 'client-eventbridge'],
  events: ['client-kms', 'client-dynamodb', 'lib-dynamodb', 'client-eventbridge'],
  costs: ['client-kms', 'client-dynamodb', 'lib-dynamodb'],
  approvals: ['client-kms', 'client-dynamodb', 'lib-dynamodb'],
};
const EXPORTED: Record<string, string> = {
  'client-kms': 'KMSClient',
  'client-dynamodb': 'DynamoDBClient',
  'lib-dynamodb': 'DynamoDBDocumentClient',
  'client-eventbridge': 'EventBridgeClient',
  'client-sqs': 'SQSClient',
};

export interface BundleFigures {
  bundle: string;
  kb: number;
  coldLoadMs: number;
  importMs: number;
  /** Cold load / the KMS client built with the functions' settings. */
  loadRatio: number;
  importRatio: number;
  /** Cold load / the KMS client bundled with esbuild's default settings: the target's measure. */
  loadRatioToPlainSdk?: number;
  /** Cold load / a bundle of only the SDK clients this function carries. */
  loadRatioToItsClients?: number;
  sizeOk?: boolean;
  loadOk?: boolean;
  /** Over the size target: the largest contributors, KB. */
  largest?: Record<string, number>;
}

async function buildBaseline(
  name: string,
  clients: string[],
  dir: string,
  script: BundleScript,
  opts: { plain?: boolean } = {},
) {
  const esbuild = createRequire(join(ROOT, 'package.json'))('esbuild') as typeof import('esbuild');
  const src = clients.map((c, i) => `import { ${EXPORTED[c]} as C${i} } from '@aws-sdk/${c}';`).join('\n');
  const entry = join(dir, `${name}.ts`);
  writeFileSync(entry, `${src}\nexport const clients = [${clients.map((_, i) => `C${i}`).join(', ')}];\n`);
  const outfile = join(dir, `${name}.mjs`);
  // The same settings as scripts/bundle/aws.mjs, so only the contents differ; `plain` is what
  // esbuild does by default (the SDK's CommonJS builds, every credential source inside).
  await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    ...(opts.plain ? {} : { mainFields: ['module', 'main'], legalComments: 'none' as const }),
    minify: true,
    external: opts.plain ? [] : script.LAZY_EXTERNALS,
    banner: {
      js: "import { createRequire as __rekeyRequire } from 'node:module'; const require = __rekeyRequire(import.meta.url);",
    },
    nodePaths: [join(ROOT, 'node_modules')],
    logLevel: 'error',
  });
  return outfile;
}

/** One fresh process importing the file: wall time, and the import alone as the child saw it. */
function loadOnce(file: string): { wallMs: number; importMs: number } {
  const code = `const t=performance.now();await import(${JSON.stringify(pathToFileURL(file).href)});process.stdout.write(String(performance.now()-t));`;
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`importing ${file} failed:\n${r.stderr}`);
  return { wallMs, importMs: Number(r.stdout) };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

export async function functionsBench(opts: { runs?: number } = {}) {
  const runs = opts.runs ?? 5;
  const script = (await import(pathToFileURL(join(ROOT, 'scripts/bundle/aws.mjs')).href)) as BundleScript;
  const fns = Object.keys(script.AWS_FUNCTIONS);
  for (const fn of fns) {
    if (!existsSync(join(ROOT, 'dist/aws', `${fn}.mjs`)))
      throw new Error(`dist/aws/${fn}.mjs is missing: run \`npm run build\` first`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-fn-'));
  try {
    const files: Record<string, string> = {
      'sdk-only': await buildBaseline('sdk-only', ['client-kms'], dir, script),
      'sdk-only-plain': await buildBaseline('sdk-only-plain', ['client-kms'], dir, script, { plain: true }),
    };
    for (const fn of fns) {
      files[`${fn}-clients`] = await buildBaseline(
        `${fn}-clients`,
        CLIENTS[fn] ?? ['client-kms'],
        dir,
        script,
      );
      files[fn] = join(ROOT, 'dist/aws', `${fn}.mjs`);
    }
    // Inside the package, so the packages it leaves out resolve from node_modules as in Lambda.
    const variantDir = join(ROOT, '.tmp', `bench-runtime-sdk-${process.pid}`);
    const variant = await script.bundle({
      root: ROOT,
      outdir: variantDir,
      external: ['@aws-sdk/*', '@smithy/*'],
      quiet: true,
      config: false,
    });
    for (const fn of fns) files[`${fn}-runtime-sdk`] = variant[fn]!.file;
    // Warm the file cache, then take every file in turn, `runs` rounds.
    for (const f of Object.values(files)) loadOnce(f);
    const wall: Record<string, number[]> = {};
    const imp: Record<string, number[]> = {};
    for (let i = 0; i < runs; i++) {
      for (const [name, f] of Object.entries(files)) {
        const r = loadOnce(f);
        wall[name] = [...(wall[name] ?? []), r.wallMs];
        imp[name] = [...(imp[name] ?? []), r.importMs];
      }
    }
    const figure = (name: string): BundleFigures => {
      const coldLoadMs = median(wall[name]!);
      const importMs = median(imp[name]!);
      return {
        bundle: name,
        kb: round(statSync(files[name]!).size / 1024, 1),
        coldLoadMs: round(coldLoadMs, 1),
        importMs: round(importMs, 1),
        loadRatio: round(coldLoadMs / median(wall['sdk-only']!)),
        importRatio: round(importMs / median(imp['sdk-only']!)),
      };
    };
    const bundles = fns.map((fn) => {
      const f = figure(fn);
      f.loadRatioToItsClients = round(median(wall[fn]!) / median(wall[`${fn}-clients`]!));
      f.loadRatioToPlainSdk = round(median(wall[fn]!) / median(wall['sdk-only-plain']!));
      f.sizeOk = f.kb <= SIZE_TARGET_KB;
      f.loadOk = f.loadRatioToPlainSdk <= LOAD_TARGET;
      if (!f.sizeOk) {
        const meta = JSON.parse(readFileSync(join(ROOT, 'dist/aws', `${fn}.meta.json`), 'utf8'));
        const largest = Object.entries(script.sizesByPackage(meta, `dist/aws/${fn}.mjs`)).slice(0, 8);
        f.largest = Object.fromEntries(largest.map(([k, v]) => [k, round(v / 1024, 1)]));
      }
      return f;
    });
    return {
      scenario: 'functions',
      cloud: 'aws',
      runs,
      targets: { kb: SIZE_TARGET_KB, loadRatioToPlainSdk: LOAD_TARGET },
      baseline: figure('sdk-only'),
      plainBaseline: figure('sdk-only-plain'),
      baselinesWithTheirClients: fns.map((fn) => figure(`${fn}-clients`)),
      bundles,
      runtimeSdkVariant: fns.map((fn) => figure(`${fn}-runtime-sdk`)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(ROOT, '.tmp', `bench-runtime-sdk-${process.pid}`), { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--runs');
  const result = await functionsBench({ runs: i >= 0 ? Number(args[i + 1]) : 5 });
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    const b = result.baseline;
    const p = result.plainBaseline;
    console.log(
      `baseline (KMS client only): ${b.kb} KB, cold load ${b.coldLoadMs} ms (import ${b.importMs} ms); ` +
        `with esbuild's defaults: ${p.kb} KB, ${p.coldLoadMs} ms`,
    );
    for (const f of result.bundles) {
      console.log(
        `${f.bundle.padEnd(10)} ${String(f.kb).padStart(6)} KB ${f.sizeOk ? 'ok ' : 'OVER'}  cold load ${f.loadRatioToPlainSdk}x the plainly built KMS client ${f.loadOk ? 'ok' : 'OVER'}; ${f.loadRatio}x the lean-built one (import ${f.importRatio}x); ${f.loadRatioToItsClients}x its SDK clients alone`,
      );
      const v = result.runtimeSdkVariant.find((x) => x.bundle === `${f.bundle}-runtime-sdk`);
      if (v) console.log(`           with the runtime's SDK instead: ${v.kb} KB, cold load ${v.loadRatio}x`);
      if (f.largest)
        console.log(
          `           largest: ${Object.entries(f.largest)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`,
        );
    }
    console.log(JSON.stringify(result));
  }
}
