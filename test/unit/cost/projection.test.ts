import { describe, expect, it } from 'vitest';
import { forecastKey } from '../../../shared/core/cost/forecast.js';
import { applyWhatIfs, parseWhatIf, projectCosts } from '../../../shared/core/cost/projection.js';
import type { CostKey } from '../../../shared/core/cost/types.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { awsKey, catalog } from './helpers.js';

const cat = catalog();
const config = loadConfig(
  `version: 1
providers:
  gcp: { type: gcp-kms, projects: [acme], locations: [europe-west1] }
  aws: { type: aws-kms, regions: [us-east-1] }
policies:
  - name: gcp-monthly
    match: { provider: [gcp] }
    rotate: { every: P30D }
  - name: aws-yearly
    match: { provider: [aws] }
    rotate: { every: P365D }
    retire: { disableAfter: P30D, destroyAfter: P60D }
`,
  'rekey.yaml',
);

const gcpHsm = (n = 1): CostKey => ({
  ref: `gcp-kms://projects/acme/locations/europe-west1/keyRings/r/cryptoKeys/k${n}`,
  provider: 'gcp-kms',
  providerId: 'gcp',
  account: 'billing-01',
  protection: 'hsm',
  algorithm: 'AES_256',
  createdAt: '2026-01-01T00:00:00.000Z',
  versions: [{ id: '1', createdAt: '2026-01-01T00:00:00.000Z' }],
});

describe('parseWhatIf', () => {
  const parse = (t: string) => parseWhatIf(t, config.policies);

  it('reads FIELD=VALUE and POLICY:FIELD=VALUE', () => {
    expect(parse('rotate.every=P30D')).toMatchObject({ path: 'rotate.every', value: { days: 30 } });
    expect(parse('gcp-monthly:retire.destroyAfter=P60D')).toMatchObject({
      policy: 'gcp-monthly',
      path: 'retire.destroyAfter',
      value: { days: 60 },
    });
    expect(parse('retire.disableAfter=none').value).toBeNull();
  });

  it('names the what-if, the field and the rule it breaks', () => {
    const cases: [string, string][] = [
      ['rotate.every', 'write FIELD=VALUE'],
      ['rotate.evry=P30D', 'unknown field "rotate.evry"; the forecast can change rotate.every'],
      ['rotate.every=P3X', '"P3X" is not an ISO-8601 duration'],
      ['rotate.every=', 'rotate.every needs a value'],
      ['rotate.every=PT1H', 'rotate.every must be at least P1D'],
      ['retire.destroyDelay=P121D', 'retire.destroyDelay must be between P1D and P120D'],
      ['retire.destroyDelay=none', 'retire.destroyDelay cannot be none'],
      ['pci:rotate.every=P30D', 'no policy named "pci" in the config (policies: gcp-monthly, aws-yearly)'],
      [':rotate.every=P30D', 'the policy name before ":" is empty'],
    ];
    for (const [text, message] of cases) {
      expect(() => parse(text), text).toThrow(ValidationError);
      expect(() => parse(text), text).toThrow(`--what-if "${text}": `);
      expect(() => parse(text), text).toThrow(message);
    }
  });

  it('refuses a change that would destroy before disabling', () => {
    const aws = config.policies.find((p) => p.name === 'aws-yearly')!;
    expect(() => applyWhatIfs(aws, [parse('retire.destroyAfter=P10D')])).toThrow(
      'retire.destroyAfter (P10D) would be shorter than retire.disableAfter (P30D)',
    );
  });

  it('applies only to the named policy, and creates the rule a policy lacks', () => {
    const gcp = config.policies.find((p) => p.name === 'gcp-monthly')!;
    const aws = config.policies.find((p) => p.name === 'aws-yearly')!;
    const w = parse('gcp-monthly:retire.destroyAfter=P30D');
    const onGcp = applyWhatIfs(gcp, [w]);
    expect(onGcp.applied).toHaveLength(1);
    expect(onGcp.policy?.retire).toMatchObject({ destroyAfter: { days: 30 }, destroyDelay: { days: 30 } });
    expect(onGcp.policy?.rotate?.every.days).toBe(30);
    expect(applyWhatIfs(aws, [w]).applied).toHaveLength(0);
    // Unscoped what-ifs reach keys no policy governs too.
    expect(applyWhatIfs(undefined, [parse('rotate.every=P90D')]).policy?.rotate?.every.days).toBe(90);
  });
});

describe('projectCosts', () => {
  it('one key: the same months as forecastKey under its policy', () => {
    const p = projectCosts({
      keys: [gcpHsm()],
      policies: config.policies,
      catalog: cat,
      from: '2026-01',
      months: 12,
      now: '2026-01-01T00:00:00.000Z',
    });
    const f = forecastKey({
      key: gcpHsm(),
      policy: config.policies[0],
      catalog: cat,
      from: '2026-01',
      months: 12,
    });
    expect(p.keys[0]!.policy).toBe('gcp-monthly');
    p.keys[0]!.current.months.forEach((m, i) => {
      expect(m.total).toBeCloseTo(f.months[i]!.total!, 12);
    });
    // The hand-checked figure of the forecast tests: 12 versions and 120 of 744 h of a 13th.
    expect(p.monthly[11]!.current).toBeCloseTo(12 + 120 / 744, 12);
    expect(p.keys[0]!.proposed).toBeUndefined();
    expect(p.total.delta).toBe(0);
  });

  it('what-if: retiring 30 days after rotation brings December from $12.16 to $3.00, per key and in total', () => {
    const p = projectCosts({
      keys: [gcpHsm(1), gcpHsm(2), awsKey(1, { providerId: 'aws' })],
      policies: config.policies,
      catalog: cat,
      from: '2026-01',
      months: 12,
      now: '2026-01-01T00:00:00.000Z',
      whatIfs: [parseWhatIf('gcp-monthly:retire.destroyAfter=P30D', config.policies)],
    });
    const [k1, k2, aws] = p.keys;
    for (const k of [k1!, k2!]) {
      expect(k.whatIfs).toEqual(['gcp-monthly:retire.destroyAfter=P30D']);
      expect(k.current.months[11]!.total).toBeCloseTo(12 + 120 / 744, 12);
      expect(k.proposed!.months[11]!.total).toBeCloseTo(3, 12);
      expect(k.monthlyDelta[11]!.delta).toBeCloseTo(3 - (12 + 120 / 744), 12);
    }
    // The AWS key's policy is not named: unchanged, and it is not shown as proposed.
    expect(aws!.proposed).toBeUndefined();
    expect(aws!.delta).toBe(0);
    expect(p.monthly[11]!.delta).toBeCloseTo(2 * (3 - (12 + 120 / 744)), 12);
    expect(p.total.delta).toBeCloseTo(k1!.delta! + k2!.delta!, 12);
    expect(p.total.proposed! - p.total.current!).toBeCloseTo(p.total.delta!, 9);
  });

  it('keys sharing an HSM pool share its cost: the pool is counted once', () => {
    const pool = { id: 'c1', sku: 'aws-cloudhsm/hsm2m.medium', hsms: 2, account: '111111111111' };
    const keys = [awsKey(1, { pool: 'c1' }), awsKey(2, { pool: 'c1' })];
    const p = projectCosts({
      keys,
      pools: [pool],
      policies: [],
      catalog: cat,
      from: '2026-11',
      months: 1,
      now: '2026-11-01T00:00:00.000Z',
    });
    // 2 HSMs x 720 h x $1.60 = $2,304 for the pool, plus $1 per key.
    expect(p.monthly[0]!.current).toBeCloseTo(2304 + 2, 9);
    expect(p.keys[0]!.current.total).toBeCloseTo(1152 + 1, 9);
  });

  it("repeats each key's latest month of usage", () => {
    const key = awsKey(1);
    const p = projectCosts({
      keys: [key],
      usage: [
        { ref: key.ref, class: 'symmetric', count: 50_000, period: '2026-09' },
        { ref: key.ref, class: 'symmetric', count: 10_000, period: '2026-10' },
        { ref: key.ref, class: 'symmetric', count: 90_000, period: '2026-12' },
      ],
      policies: [],
      catalog: cat,
      from: '2026-11',
      months: 2,
      now: '2026-11-01T00:00:00.000Z',
    });
    expect(p.keys[0]!.usageFrom).toBe('2026-10');
    // $1 storage + 10,000 requests at $0.03 per 10k, no free allowance.
    expect(p.keys[0]!.current.months.map((m) => m.total)).toEqual([1.03, 1.03]);
  });

  it('rejects a bad month count', () => {
    const base = { keys: [], policies: [], catalog: cat, from: '2026-11', now: '2026-11-01T00:00:00Z' };
    expect(() => projectCosts({ ...base, months: 0 })).toThrow(
      '--months must be a whole number from 1 to 120',
    );
    expect(() => projectCosts({ ...base, months: 1, from: '2026-13' })).toThrow('2026-13');
  });
});
