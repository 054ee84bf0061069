import { addDuration, durationDays } from '../domain/duration.js';
import type { PlanAction } from '../plan/types.js';
import type { Policy } from '../policy/types.js';
import type { Price, PriceCatalog } from './catalog.js';
import { fmtMoney } from './format.js';
import { CostModel } from './model.js';
import { nextPeriod, parsePeriod } from './period.js';
import type { CostKey, CostKeyVersion, HsmPool, RequestClass, UsageCounter } from './types.js';

/**
 * Forecasts: what a key will cost month by month if its policy keeps running, and the
 * difference a policy change makes. The future is simulated as version histories (rotations
 * on the policy's period, retirement on its delays) and priced by the same model as the past,
 * so a forecast and a later bill agree on the rules.
 *
 * Assumptions (returned with every forecast): usage repeats every month; no free request
 * allowance (it is shared with keys outside the forecast); tiered SKUs are priced as if the key
 * were alone in its account; retirement happens on time, i.e. re-wrapping has emptied old
 * versions (rekey never destroys a version a DEK still references).
 */

export type ForecastPolicy = Pick<Policy, 'rotate' | 'retire'> | undefined;

export interface ForecastInput {
  key: CostKey;
  policy: ForecastPolicy;
  catalog: PriceCatalog;
  /** First month to forecast, YYYY-MM. */
  from: string;
  months: number;
  /** Requests per month by class. */
  usagePerMonth?: { class: RequestClass; count: number }[];
  pools?: HsmPool[];
  /** When the forecast is made; retirement steps already overdue happen from here. Default: start of `from`. */
  now?: string;
}

export interface ForecastMonth {
  period: string;
  total: number | null;
  knownTotal: number;
  billableVersions: number;
  rotations: number;
}

export interface Forecast {
  ref: string;
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  months: ForecastMonth[];
  total: number | null;
  knownTotal: number;
  assumptions: string[];
}

const ASSUMPTIONS = [
  'usage repeats every month',
  'no free request allowance (it is shared across the account)',
  'tiered prices as if the key were alone in its account',
  'old versions are retired on time (re-wrapping finished)',
];

/** Only GCP lets a single version be destroyed; AWS key material and Azure versions stay until the key goes. */
function canDestroyVersions(key: CostKey): boolean {
  return key.provider === 'gcp-kms';
}

/** The key's version history extended to `until` under the policy. */
export function simulateVersions(key: CostKey, policy: ForecastPolicy, until: number, now: number): CostKey {
  const versions: CostKeyVersion[] = key.versions.map((v) => ({ ...v, states: [...(v.states ?? [])] }));
  const every = policy?.rotate?.every;
  if (every && durationDays(every) > 0) {
    let last = new Date(versions[versions.length - 1]!.createdAt);
    let n = 1;
    for (;;) {
      let next = addDuration(last, every);
      // A rotation that was due in the past happens now.
      if (next.getTime() < now) next = new Date(now);
      if (next.getTime() >= until) break;
      versions.push({
        id: `forecast-${n++}`,
        createdAt: next.toISOString(),
        origin: 'automatic',
        states: [],
      });
      last = next;
    }
  }
  const retire = policy?.retire;
  if (retire && canDestroyVersions(key)) {
    for (let i = 0; i < versions.length - 1; i++) {
      const v = versions[i]!;
      if (
        v.destroyedAt ||
        v.states!.some((s) => s.state === 'destroy_scheduled' || s.state === 'destroyed')
      ) {
        continue;
      }
      const superseded = new Date(versions[i + 1]!.createdAt);
      if (retire.disableAfter && !v.states!.some((s) => s.state === 'disabled')) {
        const at = Math.max(addDuration(superseded, retire.disableAfter).getTime(), now);
        v.states!.push({ at: new Date(at).toISOString(), state: 'disabled' });
      }
      if (retire.destroyAfter) {
        const at = Math.max(addDuration(superseded, retire.destroyAfter).getTime(), now);
        v.states!.push({ at: new Date(at).toISOString(), state: 'destroy_scheduled' });
        v.destroyedAt = addDuration(new Date(at), retire.destroyDelay).toISOString();
      }
      v.states!.sort((a, b) => a.at.localeCompare(b.at));
    }
  }
  return { ...key, versions };
}

export function forecastKey(input: ForecastInput): Forecast {
  const { key, catalog } = input;
  const noFree: PriceCatalog = { ...catalog, allowances: [] };
  const periods = Array.from({ length: input.months }, (_, i) => nextPeriod(input.from, i));
  const until = parsePeriod(periods[periods.length - 1] ?? input.from).end;
  const now = input.now ? Date.parse(input.now) : parsePeriod(input.from).start;
  const sim = simulateVersions(key, input.policy, until, now);
  const months: ForecastMonth[] = periods.map((period) => {
    const usage: UsageCounter[] = (input.usagePerMonth ?? []).map((u) => ({ ...u, ref: key.ref, period }));
    const model = new CostModel(noFree, period, input.pools ?? []);
    model.observe(sim, usage);
    const kc = model.priceKey(sim, usage);
    return {
      period,
      total: kc.total,
      knownTotal: kc.knownTotal,
      billableVersions: kc.billableVersions,
      rotations: kc.rotationsInPeriod,
    };
  });
  const unknown = months.some((m) => m.total === null);
  const knownTotal = months.reduce((s, m) => s + m.knownTotal, 0);
  return {
    ref: key.ref,
    currency: catalog.currency,
    catalogVersion: catalog.version,
    overrideDigest: catalog.overrideDigest,
    months,
    total: unknown ? null : knownTotal,
    knownTotal,
    assumptions: ASSUMPTIONS,
  };
}

export interface ForecastDelta {
  current: Forecast;
  proposed: Forecast;
  /** proposed - current per month (null when either is unknown). */
  monthly: { period: string; delta: number | null }[];
  totalDelta: number | null;
  explanation: string;
}

/** What changing a key's policy would do to its cost over the same months. */
export function forecastDelta(
  base: Omit<ForecastInput, 'policy'>,
  current: ForecastPolicy,
  proposed: ForecastPolicy,
): ForecastDelta {
  const a = forecastKey({ ...base, policy: current });
  const b = forecastKey({ ...base, policy: proposed });
  const monthly = a.months.map((m, i) => {
    const n = b.months[i]!;
    return { period: m.period, delta: m.total === null || n.total === null ? null : n.total - m.total };
  });
  const totalDelta = a.total === null || b.total === null ? null : b.total - a.total;
  const money = (x: number) => fmtMoney(x, a.currency);
  const last = monthly[monthly.length - 1];
  const explanation =
    totalDelta === null
      ? 'the delta is unknown: some prices are unknown'
      : `over ${base.months} month(s) from ${base.from}: ${money(a.total!)} -> ${money(b.total!)} ` +
        `(${totalDelta >= 0 ? '+' : ''}${money(totalDelta)}); in ${last?.period}: ` +
        `${money(a.months[a.months.length - 1]!.total!)} -> ${money(b.months[b.months.length - 1]!.total!)} per month`;
  return { current: a, proposed: b, monthly, totalDelta, explanation };
}

export interface ActionDelta {
  /** Change of the monthly bill once the action has taken effect. null when a price is unknown. */
  monthly: number | null;
  /** One-off charge (Azure rotation, requests of a re-wrap). */
  oneOff: number | null;
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  explanation: string;
}

function firstRate(p: Price): number {
  return p.amount ?? p.tiers![0]!.amount;
}

/**
 * The cost delta of one plan action, for showing in plans. Tiered SKUs use the first tier's
 * rate (the marginal rate depends on the rest of the account).
 */
export function actionCostDelta(
  action: PlanAction,
  key: CostKey,
  catalog: PriceCatalog,
  opts: { at?: string } = {},
): ActionDelta {
  const at = opts.at ?? new Date().toISOString();
  const cur = catalog.currency;
  const money = (x: number) => fmtMoney(x, cur);
  const price = (sku: string) => catalog.lookup(sku, key.region, at);
  const out = (monthly: number | null, oneOff: number | null, explanation: string): ActionDelta => ({
    monthly,
    oneOff,
    currency: cur,
    catalogVersion: catalog.version,
    overrideDigest: catalog.overrideDigest,
    explanation,
  });
  const unknown = (sku: string) => out(null, null, `unknown: ${catalog.whyUnknown(sku, key.region, at)}`);
  const versionSku = (): string | undefined => {
    const adv = ['RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'].includes(key.algorithm);
    if (key.provider === 'gcp-kms') {
      if (key.protection === 'software') return 'gcp-kms/version-software';
      if (key.protection === 'external') return 'gcp-kms/version-external';
      return adv ? 'gcp-kms/version-hsm-advanced' : 'gcp-kms/version-hsm';
    }
    if (key.provider === 'azure-kv' && key.protection === 'hsm') {
      return key.algorithm === 'RSA_2048' ? 'azure-kv/hsm-key-rsa2048' : 'azure-kv/hsm-key-advanced';
    }
    return undefined;
  };

  switch (action.type) {
    case 'rotate': {
      if (key.provider === 'aws-kms') {
        if (key.managedBy === 'provider') return out(0, 0, 'AWS-managed key: rotations are free');
        const p = price('aws-kms/rotation-month');
        if (!p) return unknown('aws-kms/rotation-month');
        const done = key.versions.length - 1;
        const cap = p.params.maxBilledRotations;
        if (cap !== undefined && done >= cap) {
          return out(0, 0, `already rotated ${done} time(s): AWS bills only the first ${cap} rotations`);
        }
        return out(
          p.amount!,
          0,
          `rotation #${done + 1} adds ${money(p.amount!)}/month (AWS bills the first ${cap ?? 'all'} rotations)`,
        );
      }
      if (key.provider === 'gcp-kms') {
        const sku = versionSku()!;
        const p = price(sku);
        if (!p) return unknown(sku);
        return out(
          firstRate(p),
          0,
          `one more active version at ${money(firstRate(p))}/month until the old one is destroyed`,
        );
      }
      if (key.provider === 'azure-kv') {
        const r = price('azure-kv/rotation');
        if (!r) return unknown('azure-kv/rotation');
        const sku = versionSku();
        if (!sku)
          return out(
            0,
            r.amount!,
            `rotation charged once ${money(r.amount!)}; software key versions do not bill`,
          );
        const p = price(sku);
        if (!p) return unknown(sku);
        return out(
          firstRate(p),
          r.amount!,
          `rotation charged once ${money(r.amount!)}, and one more HSM key version at ${money(firstRate(p))}/month (Azure versions cannot be deleted)`,
        );
      }
      return out(0, 0, `${key.provider}: rotation has no provider charge`);
    }
    case 'schedule_destroy': {
      if (key.provider !== 'gcp-kms') {
        return out(0, 0, `${key.provider}: destroying one version does not change the bill`);
      }
      const v = key.versions.find((x) => x.id === action.version);
      if (!v || v.destroyedAt) return out(0, 0, `version ${action.version} is not billed`);
      const sku = versionSku()!;
      const p = price(sku);
      if (!p) return unknown(sku);
      return out(
        -firstRate(p),
        0,
        `saves ${money(firstRate(p))}/month once destroyed (it still bills for the ${action.delayDays}-day waiting period)`,
      );
    }
    case 'disable_version':
      return out(
        0,
        0,
        key.provider === 'gcp-kms' || key.provider === 'azure-kv'
          ? 'disabled versions still bill: no saving until destroyed'
          : 'no change',
      );
    case 'set_auto_rotation':
      return out(
        0,
        0,
        'no immediate change; each scheduled rotation is costed when it happens (see the forecast)',
      );
    case 'rewrap': {
      const n = action.estimatedDeks;
      const serverSide = key.provider === 'aws-kms';
      const verify = action.verify === 'full' ? 1 : action.verify === 'none' ? 0 : action.verify.sample;
      const perDek = (serverSide ? 1 : 2) + verify;
      const cls =
        key.algorithm === 'RSA_2048'
          ? 'rsa_2048'
          : key.algorithm.startsWith('AES') || key.algorithm.startsWith('HMAC')
            ? 'symmetric'
            : 'asymmetric';
      const sku =
        key.provider === 'aws-kms'
          ? {
              symmetric: 'aws-kms/requests-symmetric',
              rsa_2048: 'aws-kms/requests-rsa-2048',
              asymmetric: 'aws-kms/requests-asymmetric',
            }[cls]
          : key.provider === 'gcp-kms'
            ? cls === 'asymmetric' && key.protection === 'hsm'
              ? 'gcp-kms/ops-hsm-advanced'
              : 'gcp-kms/ops'
            : key.provider === 'azure-kv'
              ? cls === 'asymmetric'
                ? 'azure-kv/ops-advanced'
                : 'azure-kv/ops-standard'
              : undefined;
      if (!sku) return out(0, 0, `${key.provider}: requests have no provider charge`);
      const p = price(sku);
      if (!p) return unknown(sku);
      const requests = n * perDek;
      const cost = (requests / p.unitSize) * p.amount!;
      return out(
        0,
        cost,
        `${n} DEK(s) x ${perDek} request(s) (${serverSide ? 'ReEncrypt' : 'decrypt + encrypt'}${verify ? ' + verification' : ''}) = ${requests} requests = ${money(cost)} once, before any free allowance`,
      );
    }
  }
}
