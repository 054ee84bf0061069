/**
 * Function bundles: size and cold start of each dist/aws/<fn>.mjs, against a baseline bundle
 * built in the same run with the same esbuild settings (scripts/bundle/aws.mjs
 * `esbuildSettings`) that only imports the cloud's SDK client (for AWS, the KMS client), and the
 * same client bundled with esbuild's defaults (the SDK's CommonJS builds, what a plain bundle of
 * it weighs). A second baseline per function imports every SDK client that function carries, to
 * show what rekey itself adds on top of the clients it cannot do without.
 *
 * Three figures per bundle, each the median of fresh processes, every file taken in turn (the
 * ratios of the first two are medians of pairs, each load beside a baseline load just before it):
 *  - cold load: wall time of `node -e "import(bundle)"`, Node's own start included;
 *  - import: the import alone, timed inside that process;
 *  - first call: import, then one invocation with a representative event (a schedule, an SQS
 *    record, a KMS rotation event, an approvals request), every AWS endpoint being a 127.0.0.1
 *    server that answers each request at once with a client error. The handler composes rekey
 *    (reads the compiled config, builds the SDK clients, the stores and providers, the
 *    verifiers it needs), makes its first AWS request (credentials, signing, a connection) and
 *    stops at the error. The baseline does the same with one KMS call. Import
 *    alone would flatter a bundle that moved work from its import to its first invocation;
 *    this figure does not, and chunks a normal invocation would load are loaded here.
 *
 * The functions bundle the SDK at its pinned version. The `runtime-sdk` variant, built here,
 * leaves every @aws-sdk and @smithy package to the one the Lambda runtime ships: smaller, but
 * loaded from node_modules as many files; its figures show that trade.
 *
 *   node dist/bench/functions.js [--runs 11] [--json] [--before DIR]     (after `npm run build`)
 *
 * `--before DIR` measures another build's bundles alike (an earlier version's dist/aws, built
 * from its sources), for before/after figures taken in the same runs.
 *
 * Targets: what a cold start loads (the bundle and the chunks it imports statically) <= 600 KB,
 * and cold load <= 1.3x the KMS client built with the same settings (the plainly built client,
 * ~474 KB, is slower still; the ratio to it is reported beside). For a bundle over the size
 * target, the largest packages (from the esbuild metafile) are listed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compileConfig } from '../functions/aws/compileConfig.js';
import { functionsConfigYaml } from '../test/emulators/aws/functionsConfig.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SIZE_TARGET_KB = 600;
const LOAD_TARGET = 1.3;
const REGION = 'eu-west-1';
const ACCOUNT = '111122223333';
const KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;

type Metafile = { outputs: Record<string, { imports: { path: string; kind: string }[] }> };

interface BundleScript {
  AWS_FUNCTIONS: Record<string, string>;
  esbuildSettings(opts: { name: string; entry: string; outdir: string }): Record<string, unknown>;
  functionFiles(metafile: Metafile, outfile: string): { init: string[]; lazy: string[] };
  sizesByPackage(metafile: Metafile, outfile: string): Record<string, number>;
  bundle(opts: {
    root: string;
    outdir?: string;
    external?: string[];
    quiet?: boolean;
    config?: boolean;
  }): Promise<Record<string, { file: string; bytes: number; lazyBytes: number }>>;
}

/** The SDK clients each function bundles (its baseline for "what rekey adds"). */
const CLIENTS: Record<string, string[]> = {
  scheduler: ['client-kms', 'client-dynamodb', 'lib-dynamodb', 'client-eventbridge', 'client-sqs'],
  worker: ['client-kms', 'client-dynamodb', 'lib-dynamodb', 'client-eventbridge'],
  events: ['client-kms', 'client-dynamodb', 'lib-dynamodb', 'client-eventbridge'],
  costs: ['client-kms', 'client-dynamodb', 'lib-dynamodb'],
  approvals: ['client-dynamodb', 'lib-dynamodb'],
};
const EXPORTED: Record<string, string> = {
  'client-kms': 'KMSClient',
  'client-dynamodb': 'DynamoDBClient',
  'lib-dynamodb': 'DynamoDBDocumentClient',
  'client-eventbridge': 'EventBridgeClient',
  'client-sqs': 'SQSClient',
};

/** The config the first calls compose (the functions' test config, with approvals). */
const CONFIG_YAML = functionsConfigYaml(REGION, { approvals: true });

/** The event each function gets on its first call: what it handles day to day. */
function eventFor(fn: string): unknown {
  const time = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const scheduled = {
    version: '0',
    id: 'bench-schedule',
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: ACCOUNT,
    time,
    region: REGION,
    resources: [],
    detail: {},
  };
  switch (fn) {
    case 'worker':
      return {
        Records: [
          {
            messageId: 'bench-0001',
            receiptHandle: 'bench',
            body: JSON.stringify({
              kind: 'rewrap-shard',
              jobId: 'rw-bench',
              providerId: 'aws-prod',
              verify: 'full',
              batchSize: 25,
            }),
            attributes: {
              ApproximateReceiveCount: '1',
              SentTimestamp: '0',
              SenderId: ACCOUNT,
              ApproximateFirstReceiveTimestamp: '0',
            },
            messageAttributes: {},
            md5OfBody: '',
            eventSource: 'aws:sqs',
            eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT}:rekey-shards`,
            awsRegion: REGION,
          },
        ],
      };
    case 'events':
      return {
        ...scheduled,
        id: 'bench-rotation',
        'detail-type': 'KMS CMK Rotation',
        source: 'aws.kms',
        resources: [KEY_ARN],
        detail: { 'key-id': KEY_ARN.split('/').pop() },
      };
    case 'approvals':
      return {
        version: '2.0',
        routeKey: '$default',
        rawPath: '/approvals',
        rawQueryString: '',
        headers: {},
        requestContext: {
          accountId: ACCOUNT,
          apiId: 'bench',
          domainName: 'bench.lambda-url.eu-west-1.on.aws',
          http: {
            method: 'GET',
            path: '/approvals',
            protocol: 'HTTP/1.1',
            sourceIp: '127.0.0.1',
            userAgent: 'bench',
          },
          requestId: 'bench',
          routeKey: '$default',
          stage: '$default',
          time,
          timeEpoch: 0,
        },
        isBase64Encoded: false,
      };
    default:
      return scheduled;
  }
}

export interface BundleFigures {
  bundle: string;
  /** What a cold start loads: the bundle and the chunks it imports statically. */
  kb: number;
  /** Chunks loaded when a path only some invocations take is first taken. */
  lazyKb?: number;
  coldLoadMs: number;
  importMs: number;
  /** Import plus one invocation up to its first AWS request (see the header). */
  firstCallMs?: number;
  /** Cold load / the KMS client built with the functions' settings: the target's measure. */
  loadRatio: number;
  importRatio: number;
  /** First call / the same KMS client making one call. */
  firstCallRatio?: number;
  /** Cold load / the KMS client bundled with esbuild's default settings. */
  loadRatioToPlainSdk?: number;
  /** Cold load / a bundle of only the SDK clients this function carries. */
  loadRatioToItsClients?: number;
  sizeOk?: boolean;
  loadOk?: boolean;
  /** Over the size target: the largest contributors, KB. */
  largest?: Record<string, number>;
}

const esbuildOf = () => createRequire(join(ROOT, 'package.json'))('esbuild') as typeof import('esbuild');

/**
 * A bundle of SDK clients only. `call` also exports a handler making one KMS call (the first
 * call baseline); `plain` builds it with esbuild's defaults instead of the functions' settings.
 */
async function buildBaseline(
  name: string,
  clients: string[],
  dir: string,
  script: BundleScript,
  opts: { plain?: boolean; call?: boolean } = {},
): Promise<{ file: string; kb: number }> {
  const lines = clients.map((c, i) => `import { ${EXPORTED[c]} as C${i} } from '@aws-sdk/${c}';`);
  if (opts.call) lines.push("import { ListKeysCommand } from '@aws-sdk/client-kms';");
  lines.push(`export const clients = [${clients.map((_, i) => `C${i}`).join(', ')}];`);
  if (opts.call) lines.push('export const handler = () => new C0({}).send(new ListKeysCommand({}));');
  const entry = join(dir, `${name}.ts`);
  writeFileSync(entry, `${lines.join('\n')}\n`);
  const file = join(dir, `${name}.mjs`);
  const banner = {
    js: "import { createRequire as __rekeyRequire } from 'node:module'; const require = __rekeyRequire(import.meta.url);",
  };
  const nodePaths = [join(ROOT, 'node_modules')];
  if (opts.plain) {
    // What esbuild does by default: the SDK's CommonJS builds, every credential source inside.
    const esbuild = esbuildOf();
    await esbuild.build({
      absWorkingDir: ROOT,
      entryPoints: [entry],
      outfile: file,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      minify: true,
      banner,
      nodePaths,
      logLevel: 'error',
    });
    return { file, kb: statSync(file).size / 1024 };
  }
  const r = await esbuildOf().build({
    absWorkingDir: ROOT,
    ...script.esbuildSettings({ name, entry, outdir: dir }),
    nodePaths,
    logLevel: 'error',
  });
  return { file, kb: initBytes(script, r.metafile as Metafile, relative(ROOT, file)) / 1024 };
}

/** Bytes a cold start of the bundle loads: it and the chunks it imports statically. */
function initBytes(script: BundleScript, metafile: Metafile, outfile: string): number {
  return script.functionFiles(metafile, outfile).init.reduce((n, f) => n + statSync(join(ROOT, f)).size, 0);
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

const MARK = '@@rekey-bench';

/**
 * One fresh process importing the file and calling its handler once; the result or the error
 * is not the point (every AWS request is answered with an error), reaching it is. Wall time of
 * the process. Asynchronous, so that this process can answer the child's requests.
 */
function callOnce(file: string, fn: string, env: NodeJS.ProcessEnv): Promise<number> {
  const context = `{ callbackWaitsForEmptyEventLoop: true, functionName: 'rekey-bench-${fn}', functionVersion: '$LATEST', invokedFunctionArn: 'arn:aws:lambda:${REGION}:${ACCOUNT}:function:rekey-bench-${fn}', memoryLimitInMB: '1024', awsRequestId: 'bench-request', logGroupName: '/aws/lambda/rekey-bench-${fn}', logStreamName: 'bench', getRemainingTimeInMillis: () => 300000, done() {}, fail() {}, succeed() {} }`;
  const code = [
    `const m = await import(${JSON.stringify(pathToFileURL(file).href)});`,
    `try { await m.handler(${JSON.stringify(eventFor(fn))}, ${context}); } catch {}`,
    `process.stdout.write('\\n${MARK}\\n'); process.exit(0);`,
  ].join('\n');
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let wallMs = 0;
    let out = '';
    let err = '';
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { env });
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('exit', () => {
      wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
    });
    child.on('close', (status) => {
      if (status === 0 && out.includes(MARK)) resolve(wallMs);
      else reject(new Error(`calling ${file} failed:\n${err.slice(-2000)}`));
    });
  });
}

/**
 * Where the first calls' AWS requests go: a 127.0.0.1 server answering every request at once
 * with a client error (HTTP 400, ValidationException), which neither the SDK nor rekey retries.
 */
async function answeringEndpoint(): Promise<{ url: string; close(): Promise<void> }> {
  const body = JSON.stringify({
    __type: 'ValidationException',
    message: 'answered by the functions benchmark',
  });
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(400, {
        'content-type': 'application/x-amz-json-1.0',
        'x-amzn-errortype': 'ValidationException',
        'x-amzn-requestid': 'rekey-bench',
      });
      res.end(body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

/** The functions' environment, as serverless.yml sets it, with every endpoint at `endpoint`. */
function callEnv(dir: string, configPath: string, endpoint: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '',
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'AKIABENCHONLY0000000',
    AWS_SECRET_ACCESS_KEY: 'bench-only',
    AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ENDPOINT_URL: endpoint,
    LAMBDA_TASK_ROOT: ROOT,
    REKEY_CONFIG: configPath,
    REKEY_STATE_TABLE: 'rekey-state',
    REKEY_QUEUE_URL: `${endpoint}/${ACCOUNT}/rekey-shards`,
    REKEY_EVENT_BUS: 'rekey-bench',
    REKEY_IDEMPOTENCY_TABLE: 'rekey-idempotency',
    REKEY_SHARDS: '2',
    REKEY_APPROVAL_TOKEN_KEY: 'bench-approval-token-secret-0123456789',
    POWERTOOLS_SERVICE_NAME: 'rekey',
    POWERTOOLS_METRICS_NAMESPACE: 'rekey',
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

export async function functionsBench(opts: { runs?: number; before?: string } = {}) {
  const runs = opts.runs ?? 11;
  const script = (await import(pathToFileURL(join(ROOT, 'scripts/bundle/aws.mjs')).href)) as BundleScript;
  const fns = Object.keys(script.AWS_FUNCTIONS);
  for (const fn of fns) {
    if (!existsSync(join(ROOT, 'dist/aws', `${fn}.mjs`)))
      throw new Error(`dist/aws/${fn}.mjs is missing: run \`npm run build\` first`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-fn-'));
  // Inside the package, so the packages it leaves out resolve from node_modules as in Lambda.
  const variantDir = join(ROOT, '.tmp', `bench-runtime-sdk-${process.pid}`);
  let endpoint: { close(): Promise<void> } | undefined;
  try {
    const built: Record<string, { file: string; kb: number; lazyKb?: number }> = {
      'sdk-only': await buildBaseline('sdk-only', ['client-kms'], dir, script),
      'sdk-only-plain': await buildBaseline('sdk-only-plain', ['client-kms'], dir, script, { plain: true }),
    };
    const sdkCall = await buildBaseline('sdk-only-call', ['client-kms'], dir, script, { call: true });
    for (const fn of fns) {
      built[`${fn}-clients`] = await buildBaseline(
        `${fn}-clients`,
        CLIENTS[fn] ?? ['client-kms'],
        dir,
        script,
      );
      const file = join(ROOT, 'dist/aws', `${fn}.mjs`);
      const meta = JSON.parse(readFileSync(join(ROOT, 'dist/aws', `${fn}.meta.json`), 'utf8')) as Metafile;
      const { lazy } = script.functionFiles(meta, `dist/aws/${fn}.mjs`);
      built[fn] = {
        file,
        kb: initBytes(script, meta, `dist/aws/${fn}.mjs`) / 1024,
        lazyKb: lazy.reduce((n, f) => n + statSync(join(ROOT, f)).size, 0) / 1024,
      };
    }
    const variant = await script.bundle({
      root: ROOT,
      outdir: variantDir,
      external: ['@aws-sdk/*', '@smithy/*'],
      quiet: true,
      config: false,
    });
    for (const fn of fns) {
      built[`${fn}-runtime-sdk`] = { file: variant[fn]!.file, kb: variant[fn]!.bytes / 1024 };
    }
    // --before DIR: another build's bundles (an earlier version's dist/aws), measured alike.
    const before = opts.before ? fns.filter((fn) => existsSync(join(opts.before!, `${fn}.mjs`))) : [];
    for (const fn of before) {
      const file = join(opts.before!, `${fn}.mjs`);
      const metaFile = join(opts.before!, `${fn}.meta.json`);
      const meta = existsSync(metaFile)
        ? (JSON.parse(readFileSync(metaFile, 'utf8')) as Metafile)
        : undefined;
      const outfile = meta && Object.keys(meta.outputs).find((k) => k.endsWith(`/${fn}.mjs`));
      const kb = outfile
        ? script
            .functionFiles(meta, outfile)
            .init.reduce((n, f) => n + statSync(join(opts.before!, '../..', f)).size, 0)
        : statSync(file).size;
      built[`${fn}-before`] = { file, kb: kb / 1024 };
    }
    // First calls: the functions compose from a compiled config; every endpoint is refused.
    const source = join(dir, 'rekey.yaml');
    writeFileSync(source, CONFIG_YAML);
    const configPath = join(dir, 'rekey.config.json');
    writeFileSync(configPath, JSON.stringify((await compileConfig(source, { root: ROOT })).compiled));
    const answering = await answeringEndpoint();
    endpoint = answering;
    const env = callEnv(dir, configPath, answering.url);
    const calls: Record<string, { file: string; fn: string }> = {
      'sdk-only': { file: sdkCall.file, fn: 'sdk-only' },
      ...Object.fromEntries(fns.map((fn) => [fn, { file: built[fn]!.file, fn }])),
      ...Object.fromEntries(before.map((fn) => [`${fn}-before`, { file: built[`${fn}-before`]!.file, fn }])),
    };
    // Warm the file cache, then take every file in turn, `runs` rounds.
    for (const b of Object.values(built)) loadOnce(b.file);
    for (const c of Object.values(calls)) await callOnce(c.file, c.fn, env);
    const wall: Record<string, number[]> = Object.fromEntries(Object.keys(built).map((k) => [k, []]));
    const imp: Record<string, number[]> = Object.fromEntries(Object.keys(built).map((k) => [k, []]));
    const call: Record<string, number[]> = Object.fromEntries(Object.keys(calls).map((k) => [k, []]));
    // Each file's load next to a load of the baseline taken just before it: this machine's speed
    // drifts within seconds, so the ratios are the medians of these pairs.
    const pairWall: Record<string, number[]> = Object.fromEntries(Object.keys(built).map((k) => [k, []]));
    const pairImp: Record<string, number[]> = Object.fromEntries(Object.keys(built).map((k) => [k, []]));
    const base = built['sdk-only']!.file;
    for (let i = 0; i < runs; i++) {
      for (const [name, b] of Object.entries(built)) {
        const before = loadOnce(base);
        const r = loadOnce(b.file);
        wall[name]!.push(r.wallMs);
        imp[name]!.push(r.importMs);
        pairWall[name]!.push(r.wallMs / before.wallMs);
        pairImp[name]!.push(r.importMs / before.importMs);
      }
      for (const [name, c] of Object.entries(calls)) call[name]!.push(await callOnce(c.file, c.fn, env));
    }
    const figure = (name: string): BundleFigures => {
      const coldLoadMs = median(wall[name]!);
      const importMs = median(imp[name]!);
      const b = built[name]!;
      return {
        bundle: name,
        kb: round(b.kb, 1),
        ...(b.lazyKb !== undefined ? { lazyKb: round(b.lazyKb, 1) } : {}),
        coldLoadMs: round(coldLoadMs, 1),
        importMs: round(importMs, 1),
        ...(call[name] ? { firstCallMs: round(median(call[name]), 1) } : {}),
        loadRatio: round(median(pairWall[name]!)),
        importRatio: round(median(pairImp[name]!)),
        ...(call[name] ? { firstCallRatio: round(median(call[name]) / median(call['sdk-only']!)) } : {}),
      };
    };
    const bundles = fns.map((fn) => {
      const f = figure(fn);
      f.loadRatioToItsClients = round(median(wall[fn]!) / median(wall[`${fn}-clients`]!));
      f.loadRatioToPlainSdk = round(median(wall[fn]!) / median(wall['sdk-only-plain']!));
      f.sizeOk = f.kb <= SIZE_TARGET_KB;
      f.loadOk = f.loadRatio <= LOAD_TARGET;
      if (!f.sizeOk) {
        const meta = JSON.parse(readFileSync(join(ROOT, 'dist/aws', `${fn}.meta.json`), 'utf8')) as Metafile;
        const largest = Object.entries(script.sizesByPackage(meta, `dist/aws/${fn}.mjs`)).slice(0, 8);
        f.largest = Object.fromEntries(largest.map(([k, v]) => [k, round(v / 1024, 1)]));
      }
      return f;
    });
    return {
      scenario: 'functions',
      cloud: 'aws',
      runs,
      targets: { kb: SIZE_TARGET_KB, loadRatio: LOAD_TARGET, loadRatioToPlainSdk: LOAD_TARGET },
      baseline: figure('sdk-only'),
      plainBaseline: figure('sdk-only-plain'),
      baselinesWithTheirClients: fns.map((fn) => figure(`${fn}-clients`)),
      bundles,
      runtimeSdkVariant: fns.map((fn) => figure(`${fn}-runtime-sdk`)),
      ...(before.length > 0 ? { before: before.map((fn) => figure(`${fn}-before`)) } : {}),
    };
  } finally {
    await endpoint?.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(variantDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--runs');
  const b = args.indexOf('--before');
  const result = await functionsBench({
    runs: i >= 0 ? Number(args[i + 1]) : 11,
    ...(b >= 0 ? { before: resolve(args[b + 1]!) } : {}),
  });
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    const b = result.baseline;
    const p = result.plainBaseline;
    console.log(
      `baseline (KMS client only): ${b.kb} KB, cold load ${b.coldLoadMs} ms (import ${b.importMs} ms, first call ${b.firstCallMs} ms); ` +
        `with esbuild's defaults: ${p.kb} KB, ${p.coldLoadMs} ms`,
    );
    for (const f of result.bundles) {
      console.log(
        `${f.bundle.padEnd(10)} ${String(f.kb).padStart(6)} KB ${f.sizeOk ? 'ok ' : 'OVER'} (+${f.lazyKb} KB on use)  cold load ${f.loadRatio}x the KMS client ${f.loadOk ? 'ok' : 'OVER'} (import ${f.importRatio}x, first call ${f.firstCallRatio}x); ${f.loadRatioToPlainSdk}x the plainly built one; ${f.loadRatioToItsClients}x its SDK clients alone`,
      );
      const v = result.runtimeSdkVariant.find((x) => x.bundle === `${f.bundle}-runtime-sdk`);
      if (v) console.log(`           with the runtime's SDK instead: ${v.kb} KB, cold load ${v.loadRatio}x`);
      const was = result.before?.find((x) => x.bundle === `${f.bundle}-before`);
      if (was)
        console.log(
          `           before: ${was.kb} KB, cold load ${was.loadRatio}x (import ${was.importRatio}x, first call ${was.firstCallRatio}x)`,
        );
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
