/**
 * The bundles run on the config compiled at build time: they carry neither the YAML parser nor
 * the schema library, stay under the size target, and refuse, naming the file, a config that
 * is not such a compilation or not the one the deployment packaged, changing nothing.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import type { ScheduledEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCompiledConfig } from '../../../functions/aws/config.js';
import {
  type AwsStack,
  CONFIG_YAML,
  type Handler,
  lambdaContext,
  loadBundle,
  REGION,
  ROOT,
  startStack,
} from './helpers.js';

const FUNCTIONS = ['scheduler', 'worker', 'events', 'costs', 'approvals'];
let stack: AwsStack;

const schedule = (): ScheduledEvent => ({
  version: '0',
  id: randomUUID(),
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '111122223333',
  time: new Date().toISOString(),
  region: REGION,
  resources: [`arn:aws:events:${REGION}:111122223333:rule/rekey-test-schedule`],
  detail: {},
});

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('the invocation succeeded');
}

const stateItems = async () =>
  (await stack.dyn.client().send(new ScanCommand({ TableName: stack.stateTable }))).Items ?? [];

type Metafile = { outputs: Record<string, { inputs: Record<string, unknown> }> };
let functionFiles: (meta: Metafile, outfile: string) => { init: string[]; lazy: string[] };
const meta = (fn: string): Metafile =>
  JSON.parse(readFileSync(join(ROOT, 'dist/aws', `${fn}.meta.json`), 'utf8'));
/** The sources in a function's init files (bundle and static chunks) or in its chunks loaded on use. */
function inputsOf(fn: string, part: 'init' | 'lazy'): string[] {
  const m = meta(fn);
  return functionFiles(m, `dist/aws/${fn}.mjs`)[part].flatMap((f) => Object.keys(m.outputs[f]!.inputs));
}

beforeAll(async () => {
  ({ functionFiles } = (await import(
    /* @vite-ignore */ pathToFileURL(join(ROOT, 'scripts/bundle/aws.mjs')).href
  )) as { functionFiles: typeof functionFiles });
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

describe('AWS bundles and the compiled config', () => {
  it('carry neither yaml nor zod, and each stays within 600 KB', async () => {
    for (const fn of FUNCTIONS) {
      const m = JSON.parse(readFileSync(join(ROOT, 'dist/aws', `${fn}.meta.json`), 'utf8'));
      const inputs = Object.keys(m.inputs);
      expect(inputs.filter((p) => /node_modules\/(yaml|zod)\//.test(p))).toEqual([]);
      expect(inputs.some((p) => p.endsWith('shared/core/policy/schema.ts'))).toBe(false);
      // What a cold start loads: the bundle and the chunks it imports statically.
      // One file: the chunks it shares with its lazy chunks are folded into it (merge.mjs).
      const { init } = functionFiles(m, `dist/aws/${fn}.mjs`);
      expect(init).toEqual([`dist/aws/${fn}.mjs`]);
      const bytes = init.reduce((n, f) => n + statSync(join(ROOT, f)).size, 0);
      expect(bytes).toBeLessThanOrEqual(600 * 1024);
    }
    // The cost function publishes no events: it carries no EventBridge client.
    const costs = JSON.parse(readFileSync(join(ROOT, 'dist/aws/costs.meta.json'), 'utf8'));
    expect(Object.keys(costs.inputs).filter((p) => p.includes('client-eventbridge'))).toEqual([]);
  });

  it('load at cold start only what their usual invocations use; the rest is in chunks loaded on use', () => {
    const has = (fn: string, part: 'init' | 'lazy', re: RegExp) => inputsOf(fn, part).some((p) => re.test(p));
    // The compromise response and its signature checks (jose) wait for a key.compromised event.
    expect(has('events', 'init', /handleCompromise\.ts$|node_modules\/jose\//)).toBe(false);
    expect(has('events', 'lazy', /handleCompromise\.ts$/)).toBe(true);
    expect(has('events', 'lazy', /node_modules\/jose\//)).toBe(true);
    // Shards and events: the scheduler's SQS and EventBridge clients, the worker's EventBridge one.
    expect(has('scheduler', 'init', /client-sqs\/|client-eventbridge\//)).toBe(false);
    expect(has('scheduler', 'lazy', /client-sqs\//)).toBe(true);
    expect(has('worker', 'init', /client-eventbridge\//)).toBe(false);
    expect(has('worker', 'lazy', /client-eventbridge\//)).toBe(true);
    // A provider's key event publishes nothing; the compromise response does.
    expect(has('events', 'init', /client-eventbridge\//)).toBe(false);
    expect(has('events', 'lazy', /client-eventbridge\//)).toBe(true);
    // BYOK imports wait for one; a worker carries nothing of planning or approvals.
    for (const fn of ['scheduler', 'worker', 'events'])
      expect(has(fn, 'init', /importMaterial\.ts$|usecases\/byok\.ts$/)).toBe(false);
    expect(has('worker', 'init', /usecases\/(applyPlan|approvals)\.ts$/)).toBe(false);
    // The approvals API reaches no key provider, the cost report no DEK: not in their bundles.
    expect(has('approvals', 'init', /client-kms\/|^shared\/providers\/aws\/AwsKmsProvider\.ts$/)).toBe(false);
    expect(has('costs', 'init', /^shared\/stores\/dynamodb\/DynamoDekStore\.ts$/)).toBe(false);
    for (const fn of FUNCTIONS) {
      // Tables come from the stack: no function can create one.
      expect(has(fn, 'init', /CreateTableCommand\.js$|^shared\/stores\/dynamodb\/ensureTable\.ts$/)).toBe(
        false,
      );
      // Middy's web streams check is left to the global ReadableStream (scripts/bundle/aws.mjs).
      const files = functionFiles(meta(fn), `dist/aws/${fn}.mjs`).init;
      const code = files.map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');
      expect(code).not.toMatch(/from\s*["']node:stream\/web["']/);
    }
  });

  it('a YAML file given as the config fails the invocation naming it, and changes nothing', async () => {
    const yaml = join(stack.dir, 'given.yaml');
    writeFileSync(yaml, CONFIG_YAML);
    stack.applyEnv({ REKEY_CONFIG: yaml });
    const scheduler = await loadBundle<ScheduledEvent, unknown>('scheduler', 'yaml');
    const e = await failure(scheduler(schedule(), lambdaContext('scheduler')));
    expect(e.name).toBe('ConfigError');
    expect(e.message).toContain(yaml);
    expect(e.message).toMatch(/looks like YAML.*npm run build/);
    expect(await stateItems()).toEqual([]);
  });

  it('a compiled config other than the one deployed is refused', async () => {
    stack.applyEnv({ REKEY_CONFIG_DIGEST: 'f'.repeat(64) });
    const scheduler: Handler<ScheduledEvent, unknown> = await loadBundle('scheduler', 'digest');
    const e = await failure(scheduler(schedule(), lambdaContext('scheduler')));
    expect(e.name).toBe('ConfigError');
    expect(e.message).toMatch(/compiled from another config .*REKEY_CONFIG_DIGEST ffffffffffff/);
    expect(await stateItems()).toEqual([]);
  });

  it('the matching digest runs the cycle', async () => {
    const digest = JSON.parse(readFileSync(stack.configPath, 'utf8')).config.digest;
    stack.applyEnv({ REKEY_CONFIG_DIGEST: digest });
    const scheduler: Handler<ScheduledEvent, { status: string }> = await loadBundle('scheduler', 'good');
    expect(await scheduler(schedule(), lambdaContext('scheduler'))).toMatchObject({ status: 'applied' });
  });

  it('the build compiles the config it is given, and a failure leaves no compiled config behind', async () => {
    const { compileFunctionsConfig } = (await import(
      /* @vite-ignore */ pathToFileURL(join(ROOT, 'scripts/bundle/aws.mjs')).href
    )) as {
      compileFunctionsConfig(o: {
        root: string;
        outdir: string;
        source: string;
        quiet: boolean;
      }): Promise<string>;
    };
    mkdirSync(join(ROOT, '.tmp'), { recursive: true });
    const outdir = mkdtempSync(join(ROOT, '.tmp', 'aws-build-'));
    try {
      const good = join(stack.dir, 'build.yaml');
      writeFileSync(good, CONFIG_YAML);
      const out = await compileFunctionsConfig({ root: ROOT, outdir, source: good, quiet: true });
      expect(readCompiledConfig(out, '/var/task').config.policies.map((p) => p.name)).toEqual(['pci']);
      const bad = join(stack.dir, 'bad.yaml');
      writeFileSync(bad, CONFIG_YAML.replace('verify: full', 'verify: always'));
      await expect(compileFunctionsConfig({ root: ROOT, outdir, source: bad, quiet: true })).rejects.toThrow(
        new RegExp(`${bad}:\\d+:\\d+: policies\\[0\\]\\.rewrap\\.verify`),
      );
      expect(existsSync(out)).toBe(false);
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });
});
