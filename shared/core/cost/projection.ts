import { type Duration, durationDays, parseDuration } from '../domain/duration.js';
import { ValidationError } from '../errors.js';
import type { Policy } from '../policy/types.js';
import type { PriceCatalog } from './catalog.js';
import { type Forecast, type ForecastMonth, type ForecastPolicy, simulateVersions } from './forecast.js';
import { policyForCostKey } from './fromInventory.js';
import { CostModel } from './model.js';
import { nextPeriod, parsePeriod } from './period.js';
import type { CostKey, HsmPool, RequestClass, UsageCounter } from './types.js';

/**
 * Projections of a whole inventory: every key forecast under the policy that governs it, and,
 * with what-ifs, under the same policy with some fields changed. The difference is given per
 * key and in total, month by month.
 */

export const WHAT_IF_PATHS = [
  'rotate.every',
  'retire.disableAfter',
  'retire.destroyAfter',
  'retire.destroyDelay',
] as const;
export type WhatIfPath = (typeof WHAT_IF_PATHS)[number];

export interface WhatIf {
  /** As given, for messages and output. */
  text: string;
  /** Only keys governed by this policy; absent: every key, including keys no policy governs. */
  policy?: string;
  path: WhatIfPath;
  /** null removes the field (`none`). */
  value: Duration | null;
}

/**
 * Parses `[POLICY:]FIELD=VALUE`, e.g. `rotate.every=P30D`, `pci-keks:retire.destroyAfter=P60D`,
 * `retire.disableAfter=none`. The field must be one the forecast simulates and the value must
 * make sense for it; the policy, when named, must exist.
 */
export function parseWhatIf(text: string, policies: readonly Policy[]): WhatIf {
  const bad = (why: string) => new ValidationError(`--what-if "${text}": ${why}`);
  const eq = text.indexOf('=');
  if (eq <= 0) throw bad('write FIELD=VALUE or POLICY:FIELD=VALUE, e.g. rotate.every=P30D');
  const lhs = text.slice(0, eq).trim();
  const rhs = text.slice(eq + 1).trim();
  const colon = lhs.lastIndexOf(':');
  const policy = colon >= 0 ? lhs.slice(0, colon).trim() : undefined;
  const path = (colon >= 0 ? lhs.slice(colon + 1) : lhs).trim();
  if (policy !== undefined) {
    if (!policy) throw bad('the policy name before ":" is empty');
    if (!policies.some((p) => p.name === policy)) {
      const names = policies.map((p) => p.name);
      throw bad(
        `no policy named "${policy}" in the config${names.length ? ` (policies: ${names.join(', ')})` : ' (it has no policies)'}`,
      );
    }
  }
  if (!(WHAT_IF_PATHS as readonly string[]).includes(path)) {
    throw bad(`unknown field "${path}"; the forecast can change ${WHAT_IF_PATHS.join(', ')}`);
  }
  const p = path as WhatIfPath;
  if (!rhs) throw bad(`${p} needs a value: an ISO-8601 duration such as P30D, or none`);
  if (rhs === 'none') {
    if (p === 'retire.destroyDelay') throw bad('retire.destroyDelay cannot be none: give P1D to P120D');
    return { text, ...(policy ? { policy } : {}), path: p, value: null };
  }
  let value: Duration;
  try {
    value = parseDuration(rhs);
  } catch (e) {
    throw bad(`${p}: ${(e as Error).message}, or none`);
  }
  const days = durationDays(value);
  if (p === 'rotate.every' && days < 1) {
    throw bad('rotate.every must be at least P1D (no provider rotates a key more often than daily)');
  }
  if (p === 'retire.destroyDelay' && (days < 1 || days > 120)) {
    throw bad('retire.destroyDelay must be between P1D and P120D');
  }
  return { text, ...(policy ? { policy } : {}), path: p, value };
}

/** The policy's rotate and retire rules with the what-ifs that apply to it. */
export function applyWhatIfs(
  policy: Policy | undefined,
  whatIfs: readonly WhatIf[],
): { policy: ForecastPolicy; applied: WhatIf[] } {
  const applied = whatIfs.filter((w) => w.policy === undefined || w.policy === policy?.name);
  if (applied.length === 0) return { policy, applied };
  let rotate = policy?.rotate ? { ...policy.rotate } : undefined;
  let retire = policy?.retire ? { ...policy.retire } : undefined;
  const newRetire = () => retire ?? { destroyDelay: parseDuration('P30D'), approvals: 0 };
  for (const w of applied) {
    switch (w.path) {
      case 'rotate.every':
        rotate = w.value ? { ...(rotate ?? { mode: 'auto' as const }), every: w.value } : undefined;
        break;
      case 'retire.disableAfter': {
        const { disableAfter: _, ...rest } = newRetire();
        retire = w.value ? { ...rest, disableAfter: w.value } : rest;
        break;
      }
      case 'retire.destroyAfter': {
        const { destroyAfter: _, ...rest } = newRetire();
        retire = w.value ? { ...rest, destroyAfter: w.value } : rest;
        break;
      }
      case 'retire.destroyDelay':
        retire = { ...newRetire(), destroyDelay: w.value! };
        break;
    }
  }
  if (retire?.disableAfter && retire.destroyAfter) {
    if (durationDays(retire.destroyAfter) < durationDays(retire.disableAfter)) {
      throw new ValidationError(
        `--what-if ${applied.map((w) => `"${w.text}"`).join(' ')}: for policy ${policy?.name ?? '(none)'}, ` +
          `retire.destroyAfter (${retire.destroyAfter.text}) would be shorter than retire.disableAfter (${retire.disableAfter.text})`,
      );
    }
  }
  return {
    policy: { ...(rotate ? { rotate } : {}), ...(retire ? { retire } : {}) },
    applied,
  };
}

export interface ProjectionInput {
  keys: readonly CostKey[];
  pools?: HsmPool[];
  /** Past usage; each key's latest month before `from` is assumed to repeat. */
  usage?: readonly UsageCounter[];
  policies: readonly Policy[];
  catalog: PriceCatalog;
  /** First month, YYYY-MM. */
  from: string;
  months: number;
  /** When the projection is made (rotations already overdue happen from here). */
  now: string;
  whatIfs?: readonly WhatIf[];
}

export interface KeyProjection {
  ref: string;
  name?: string;
  provider: string;
  policy: string | null;
  /** The month whose usage is assumed to repeat; null without usage. */
  usageFrom: string | null;
  current: Forecast;
  /** Present when a what-if applies to this key, or changes its cost through a shared pool or tier. */
  proposed?: Forecast;
  whatIfs: string[];
  /** proposed - current, over the whole projection; null when a price is unknown. */
  delta: number | null;
  monthlyDelta: { period: string; delta: number | null }[];
}

export interface ProjectionMonth {
  period: string;
  current: number | null;
  currentKnown: number;
  proposed: number | null;
  proposedKnown: number;
  delta: number | null;
}

export interface Projection {
  from: string;
  months: number;
  periods: string[];
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  whatIfs: string[];
  keys: KeyProjection[];
  monthly: ProjectionMonth[];
  total: {
    current: number | null;
    currentKnown: number;
    proposed: number | null;
    proposedKnown: number;
    delta: number | null;
  };
  assumptions: string[];
}

/** The usage a key had in its latest month before `from`, by class. */
function repeatingUsage(
  usage: readonly UsageCounter[],
  from: string,
): Map<string, { period: string; perMonth: { class: RequestClass; count: number }[] }> {
  const latest = new Map<string, string>();
  for (const u of usage) {
    if (u.period >= from) continue;
    const p = latest.get(u.ref);
    if (!p || u.period > p) latest.set(u.ref, u.period);
  }
  const out = new Map<string, { period: string; perMonth: { class: RequestClass; count: number }[] }>();
  for (const u of usage) {
    const period = latest.get(u.ref);
    if (period !== u.period) continue;
    const e = out.get(u.ref) ?? { period, perMonth: [] };
    const same = e.perMonth.find((x) => x.class === u.class);
    if (same) same.count += u.count;
    else e.perMonth.push({ class: u.class, count: u.count });
    out.set(u.ref, e);
  }
  return out;
}

const sumOrNull = (xs: (number | null)[]) =>
  xs.some((x) => x === null) ? null : xs.reduce<number>((s, x) => s + x!, 0);

/** Every key's months under one scenario, priced together so pools and tiers are shared. */
function priceScenario(
  sims: readonly CostKey[],
  input: ProjectionInput,
  periods: readonly string[],
  usageOf: (ref: string, period: string) => UsageCounter[],
): ForecastMonth[][] {
  const noFree: PriceCatalog = { ...input.catalog, allowances: [] };
  const out: ForecastMonth[][] = sims.map(() => []);
  for (const period of periods) {
    const model = new CostModel(noFree, period, input.pools ?? []);
    for (const k of sims) model.observe(k, usageOf(k.ref, period));
    sims.forEach((k, i) => {
      const kc = model.priceKey(k, usageOf(k.ref, period));
      out[i]!.push({
        period,
        total: kc.total,
        knownTotal: kc.knownTotal,
        billableVersions: kc.billableVersions,
        rotations: kc.rotationsInPeriod,
      });
    });
  }
  return out;
}

function asForecast(ref: string, months: ForecastMonth[], catalog: PriceCatalog): Forecast {
  const unknown = months.some((m) => m.total === null);
  const knownTotal = months.reduce((s, m) => s + m.knownTotal, 0);
  return {
    ref,
    currency: catalog.currency,
    catalogVersion: catalog.version,
    overrideDigest: catalog.overrideDigest,
    months,
    total: unknown ? null : knownTotal,
    knownTotal,
    assumptions: PROJECTION_ASSUMPTIONS,
  };
}

const PROJECTION_ASSUMPTIONS = [
  "each key's usage in its latest month with counters repeats every month (no counters: no requests)",
  'no free request allowance (it is shared with keys and requests outside the projection)',
  'tiered prices and HSM pools are shared by the keys of the projection only',
  'old versions are retired on time (re-wrapping finished)',
  'keys are neither created nor deleted',
];

export function projectCosts(input: ProjectionInput): Projection {
  parsePeriod(input.from);
  if (!Number.isInteger(input.months) || input.months < 1 || input.months > 120) {
    throw new ValidationError(`--months must be a whole number from 1 to 120, got ${input.months}`);
  }
  const whatIfs = input.whatIfs ?? [];
  const periods = Array.from({ length: input.months }, (_, i) => nextPeriod(input.from, i));
  const until = parsePeriod(periods[periods.length - 1]!).end;
  const now = Date.parse(input.now);
  if (Number.isNaN(now))
    throw new ValidationError(`projection time "${input.now}" is not an ISO-8601 instant`);
  const usage = repeatingUsage(input.usage ?? [], input.from);
  const usageOf = (ref: string, period: string): UsageCounter[] =>
    (usage.get(ref)?.perMonth ?? []).map((u) => ({ ...u, ref, period }));
  const seen = new Set<string>();
  for (const k of input.keys) {
    if (seen.has(k.ref)) throw new ValidationError(`inventory: key ${k.ref} is listed twice`);
    seen.add(k.ref);
  }
  const plans = input.keys.map((key) => {
    const policy = policyForCostKey(input.policies, key);
    const changed = applyWhatIfs(policy, whatIfs);
    const current = simulateVersions(key, policy, until, now);
    return {
      key,
      policy,
      applied: changed.applied,
      current,
      proposed: changed.applied.length > 0 ? simulateVersions(key, changed.policy, until, now) : current,
    };
  });
  const currentMonths = priceScenario(
    plans.map((p) => p.current),
    input,
    periods,
    usageOf,
  );
  const anyChange = plans.some((p) => p.applied.length > 0);
  const proposedMonths = anyChange
    ? priceScenario(
        plans.map((p) => p.proposed),
        input,
        periods,
        usageOf,
      )
    : currentMonths;
  const keys: KeyProjection[] = plans.map((p, i) => {
    const current = asForecast(p.key.ref, currentMonths[i]!, input.catalog);
    // A key no what-if touches can still change cost when it shares a pool or tier with one that does.
    const proposed = asForecast(p.key.ref, proposedMonths[i]!, input.catalog);
    const differs =
      anyChange && proposed.months.some((m, j) => m.knownTotal !== current.months[j]!.knownTotal);
    const monthlyDelta = current.months.map((m, j) => {
      const n = proposed.months[j]!;
      return { period: m.period, delta: m.total === null || n.total === null ? null : n.total - m.total };
    });
    return {
      ref: p.key.ref,
      ...(p.key.name ? { name: p.key.name } : {}),
      provider: p.key.provider,
      policy: p.policy?.name ?? null,
      usageFrom: usage.get(p.key.ref)?.period ?? null,
      current,
      ...(p.applied.length > 0 || differs ? { proposed } : {}),
      whatIfs: p.applied.map((w) => w.text),
      delta: current.total === null || proposed.total === null ? null : proposed.total - current.total,
      monthlyDelta,
    };
  });
  const monthly: ProjectionMonth[] = periods.map((period, i) => {
    const cur = currentMonths.map((ms) => ms[i]!);
    const pro = proposedMonths.map((ms) => ms[i]!);
    const current = sumOrNull(cur.map((m) => m.total));
    const proposed = sumOrNull(pro.map((m) => m.total));
    return {
      period,
      current,
      currentKnown: cur.reduce((s, m) => s + m.knownTotal, 0),
      proposed,
      proposedKnown: pro.reduce((s, m) => s + m.knownTotal, 0),
      delta: current === null || proposed === null ? null : proposed - current,
    };
  });
  const current = sumOrNull(keys.map((k) => k.current.total));
  const proposed = sumOrNull(keys.map((k) => (k.proposed ?? k.current).total));
  return {
    from: input.from,
    months: input.months,
    periods,
    currency: input.catalog.currency,
    catalogVersion: input.catalog.version,
    overrideDigest: input.catalog.overrideDigest,
    whatIfs: whatIfs.map((w) => w.text),
    keys,
    monthly,
    total: {
      current,
      currentKnown: keys.reduce((s, k) => s + k.current.knownTotal, 0),
      proposed,
      proposedKnown: keys.reduce((s, k) => s + (k.proposed ?? k.current).knownTotal, 0),
      delta: current === null || proposed === null ? null : proposed - current,
    },
    assumptions: PROJECTION_ASSUMPTIONS,
  };
}
