/**
 * `npm run bench`: every figure is reported as a ratio against a raw baseline measured in the
 * same run on the same machine. Each scenario runs in its own process (own peak RSS).
 * Options: --deks N (default 1,000,000), --keys N (default 100,000), --json.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const DEKS = opt('--deks', 1_000_000);
const KEYS = opt('--keys', 100_000);
const json = args.includes('--json');
/** --all adds the provider benchmarks (emulators, PostgreSQL, SoftHSM2): several minutes. */
const all = args.includes('--all');
const script = fileURLToPath(new URL('./scenarios.js', import.meta.url));
const providersScript = fileURLToPath(new URL('./providers.js', import.meta.url));
const pkcs11Script = fileURLToPath(new URL('./pkcs11.js', import.meta.url));
const functionsScript = fileURLToPath(new URL('./functions.js', import.meta.url));
const containScript = fileURLToPath(new URL('./contain.js', import.meta.url));

type R = {
  scenario: string;
  n: number;
  seconds: number;
  perSecond: number;
  peakRssMB: number;
  [k: string]: unknown;
};

function run(...a: string[]): R {
  return runScript(script, ...a);
}

function runScript(file: string, ...a: string[]): R {
  if (!json) process.stderr.write(`running ${a.join(' ')}...\n`);
  const r = spawnSync(process.execPath, ['--max-old-space-size=4096', file, ...a], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`scenario ${a.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as R;
}

// The machine's speed drifts by tens of percent over a run, so the raw baselines are taken
// both before and after the re-wrap runs, and each ratio uses their mean.
const aesBefore = run('aes', String(DEKS));
const sqliteBefore = run('sqlite', String(DEKS));
const full = run('rewrap', String(DEKS), 'full');
const none = run('rewrap', String(DEKS), 'none');
const cli2 = run('cli', String(DEKS), '2', 'none');
const cli2full = run('cli', String(DEKS), '2', 'full');
const aesAfter = run('aes', String(DEKS));
const sqliteAfter = run('sqlite', String(DEKS));
const meanOf = (a: R, b: R): R => ({
  ...a,
  seconds: (a.seconds + b.seconds) / 2,
  perSecond: Math.round((a.perSecond + b.perSecond) / 2),
  peakRssMB: Math.max(a.peakRssMB, b.peakRssMB),
  before: a.perSecond,
  after: b.perSecond,
});
const aes = meanOf(aesBefore, aesAfter);
const sqlite = meanOf(sqliteBefore, sqliteAfter);
const plan = run('plan', String(KEYS), '20');
const rate = run('rate', '10000', '2000');
const aimd = run('aimd', '10000', '2000');
const slower = Math.min(aes.perSecond, sqlite.perSecond);
const ratio = (x: number) => Math.round((x / slower) * 100) / 100;
const providers = all
  ? {
      postgres: runScript(providersScript, 'postgres', String(opt('--pg-deks', 1_000_000))),
      aws: runScript(providersScript, 'aws', String(opt('--aws-deks', 100_000)), '2000'),
      gcp: runScript(providersScript, 'gcp', String(opt('--gcp-deks', 100_000)), '60000'),
      azure: runScript(providersScript, 'azure', String(opt('--azure-deks', 50_000)), '4000'),
      pkcs11: runScript(pkcs11Script, String(opt('--hsm-deks', 100_000))),
      functions: runScript(functionsScript),
      contain: runScript(
        containScript,
        String(opt('--contain-deks', 100_000)),
        'both',
        String(opt('--contain-hsm-deks', 20_000)),
      ),
      cost: run('cost', String(opt('--cost-keys', 1_000_000))),
    }
  : undefined;
const results = {
  ...(providers ? { providers } : {}),
  baselines: { aes, sqlite, slowerPerSecond: slower },
  rewrap: [
    { ...full, ratioToSlowerBaseline: ratio(full.perSecond) },
    { ...none, ratioToSlowerBaseline: ratio(none.perSecond) },
    { ...cli2, ratioToSlowerBaseline: ratio(cli2.perSecond) },
    { ...cli2full, ratioToSlowerBaseline: ratio(cli2full.perSecond) },
  ],
  plan,
  rateLimit: { configured: rate, adaptive: aimd },
};
if (json) {
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
} else {
  const row = (r: R, extra = '') =>
    `${r.scenario.padEnd(28)} ${String(r.n).padStart(9)} ${String(r.perSecond).padStart(10)}/s ${String(r.peakRssMB).padStart(6)} MB  ${extra}`;
  console.log(
    `${'scenario'.padEnd(28)} ${'items'.padStart(9)} ${'rate'.padStart(12)} ${'peak RSS'.padStart(9)}`,
  );
  console.log(row(aes, '(raw baseline)'));
  console.log(row(sqlite, '(raw baseline)'));
  console.log(row(full, `${ratio(full.perSecond)}x of the slower baseline`));
  console.log(row(none, `${ratio(none.perSecond)}x of the slower baseline`));
  console.log(row(cli2, `${ratio(cli2.perSecond)}x of the slower baseline`));
  console.log(row(cli2full, `${ratio(cli2full.perSecond)}x of the slower baseline`));
  console.log(row(plan, `${plan.actions} actions`));
  for (const r of [rate, aimd])
    console.log(row(r, `${r.ofQuota}x of quota, ${(Number(r.throttledShare) * 100).toFixed(2)}% throttled`));
  if (providers)
    console.log(row(providers.cost, `${providers.cost.ratioToRaw}x of a raw loop summing the same numbers`));
}
