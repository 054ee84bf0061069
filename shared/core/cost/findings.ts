import type { DekCensus } from '../plan/evaluate.js';
import type { Policy } from '../policy/types.js';
import type { PriceCatalog } from './catalog.js';
import { fmtMoney } from './format.js';
import { policyForCostKey } from './fromInventory.js';
import type { CostKey, KeyCost, UsageCounter } from './types.js';

/**
 * Cost findings: money spent on keys that do nothing for anyone. Each finding names the key
 * (or account), says why in one sentence and estimates the monthly saving (null when it cannot
 * be priced).
 */

export type CostFindingKind =
  | 'idle_key'
  | 'surplus_version'
  | 'key_per_object'
  | 'hsm_not_required'
  | 'budget_breach';

export interface CostFinding {
  kind: CostFindingKind;
  severity: 'info' | 'warning' | 'critical';
  keyRef?: string;
  version?: string;
  account?: string;
  policy?: string;
  message: string;
  monthlySaving: number | null;
  currency: string;
}

export interface CostFindingsInput {
  keys: CostKey[];
  /** Costs of the same keys for one period (from computeCosts). */
  costs: KeyCost[];
  now: string;
  /** Usage counters; a key with none in the idle window counts as idle when it has no lastUsedAt. */
  usage?: UsageCounter[];
  /** DEK counts per key ref, store and version. Without it, version and explosion findings are skipped. */
  census?: DekCensus;
  policies?: Policy[];
  catalog?: PriceCatalog;
  /** Days without use before a key is idle. Default 90. */
  idleDays?: number;
  /** Key-per-object explosion: at least `minKeys` keys of an account, `minShare` of them holding <= `maxDeks` DEKs. */
  explosion?: { minKeys?: number; maxDeks?: number; minShare?: number };
}

const DAY_MS = 86_400_000;

function dekTotal(census: DekCensus, ref: string, version?: string): number {
  const perStore = census.get(ref);
  if (!perStore) return 0;
  let n = 0;
  for (const byVersion of Object.values(perStore)) {
    if (version !== undefined) n += byVersion[version] ?? 0;
    else for (const c of Object.values(byVersion)) n += c;
  }
  return n;
}

export function costFindings(input: CostFindingsInput): CostFinding[] {
  const out: CostFinding[] = [];
  const now = Date.parse(input.now);
  const idleDays = input.idleDays ?? 90;
  const costByRef = new Map(input.costs.map((c) => [c.ref, c]));
  const currency = input.costs[0]?.currency ?? input.catalog?.currency ?? 'USD';
  const money = (n: number) => fmtMoney(n, currency);
  const costOf = (ref: string) => {
    const c = costByRef.get(ref);
    return c ? c.total : null;
  };
  const policyOf = (k: CostKey) => policyForCostKey(input.policies ?? [], k);

  // Idle keys.
  const usedRecently = new Set<string>();
  if (input.usage) {
    const fromPeriod = new Date(now - idleDays * DAY_MS).toISOString().slice(0, 7);
    for (const u of input.usage) if (u.count > 0 && u.period >= fromPeriod) usedRecently.add(u.ref);
  }
  for (const k of input.keys) {
    if (k.managedBy === 'provider') continue;
    const age = (now - Date.parse(k.createdAt)) / DAY_MS;
    if (age < idleDays) continue;
    let why: string | undefined;
    if (k.lastUsedAt) {
      const idle = (now - Date.parse(k.lastUsedAt)) / DAY_MS;
      if (idle >= idleDays) why = `last used ${k.lastUsedAt.slice(0, 10)} (${Math.floor(idle)} days ago)`;
    } else if (input.usage && !usedRecently.has(k.ref)) {
      why = `no recorded use in the last ${idleDays} days of usage data`;
    }
    if (!why) continue;
    const c = costOf(k.ref);
    out.push({
      kind: 'idle_key',
      severity: 'warning',
      keyRef: k.ref,
      account: k.account,
      message: `idle key: ${why}; it costs ${c === null ? 'an unknown amount' : money(c)} a month. Disable it, then schedule deletion if nothing needs it`,
      monthlySaving: c,
      currency,
    });
  }

  if (input.census) {
    const census = input.census;
    // Surplus versions: not primary, no DEK, still billed.
    for (const k of input.keys) {
      if (k.provider !== 'gcp-kms' && k.provider !== 'azure-kv') continue;
      const kc = costByRef.get(k.ref);
      if (!kc) continue;
      const primary = k.versions[k.versions.length - 1]?.id;
      for (const v of kc.versions) {
        if (v.id === primary || v.billableHours <= 0) continue;
        const vParts = kc.parts.filter((p) => p.version === v.id && p.kind === 'key_version');
        if (vParts.length === 0 || vParts.every((p) => p.cost === 0)) continue;
        if (dekTotal(census, k.ref, v.id) > 0) continue;
        const destroyed = k.versions.find((x) => x.id === v.id)?.destroyedAt;
        if (destroyed && Date.parse(destroyed) <= now) continue;
        const how =
          k.provider === 'gcp-kms'
            ? 'schedule its destruction'
            : 'Azure cannot delete one version: only re-wrapping to a new key and deleting this one removes it';
        out.push({
          kind: 'surplus_version',
          severity: 'warning',
          keyRef: k.ref,
          version: v.id,
          account: k.account,
          message: `version ${v.id} wraps no DEK but still bills ${v.cost === null ? 'an unknown amount' : money(v.cost)} this month; ${how}`,
          monthlySaving: v.cost,
          currency,
        });
      }
    }

    // Key-per-object explosion, per provider and account.
    const minKeys = input.explosion?.minKeys ?? 100;
    const maxDeks = input.explosion?.maxDeks ?? 1;
    const minShare = input.explosion?.minShare ?? 0.8;
    const groups = new Map<string, CostKey[]>();
    for (const k of input.keys) {
      const g = `${k.provider}|${k.account}`;
      const list = groups.get(g) ?? [];
      list.push(k);
      groups.set(g, list);
    }
    for (const [g, keys] of groups) {
      const tiny = keys.filter((k) => {
        const n = dekTotal(census, k.ref);
        return n >= 1 && n <= maxDeks;
      });
      if (tiny.length < minKeys || tiny.length / keys.length < minShare) continue;
      const costs = tiny.map((k) => costOf(k.ref));
      const known = costs.every((c) => c !== null);
      const sum = costs.reduce<number>((s, c) => s + (c ?? 0), 0);
      const keep = Math.max(...costs.map((c) => c ?? 0));
      const [provider, account] = g.split('|');
      out.push({
        kind: 'key_per_object',
        severity: 'warning',
        account: account!,
        message:
          `${tiny.length} of ${keys.length} ${provider} keys in account ${account} hold at most ${maxDeks} DEK(s) each ` +
          `(${known ? money(sum) : 'an unknown amount'} a month): one key per object. Wrap the objects' DEKs under a few KEKs instead`,
        monthlySaving: known ? sum - keep : null,
        currency,
      });
    }
  }

  // HSM protection the policy does not require.
  for (const k of input.keys) {
    if (k.protection !== 'hsm' || k.provider === 'aws-kms') continue;
    const policy = policyOf(k);
    if (policy?.require?.protection === 'hsm') continue;
    const kc = costByRef.get(k.ref);
    if (!kc) continue;
    let saving: number | null = 0;
    for (const p of kc.parts) {
      if (p.kind !== 'key_version' && p.kind !== 'hsm_pool') continue;
      if (p.cost === null) {
        saving = null;
        break;
      }
      let software = 0;
      if (k.provider === 'gcp-kms' && p.kind === 'key_version') {
        const sw = input.catalog?.lookup('gcp-kms/version-software', k.region, kc.periodStart);
        if (!sw?.amount && sw?.amount !== 0) {
          saving = null;
          break;
        }
        software = p.quantity * sw.amount;
      }
      saving += p.cost - software;
    }
    if (saving === 0) continue;
    out.push({
      kind: 'hsm_not_required',
      severity: 'info',
      keyRef: k.ref,
      account: k.account,
      ...(policy ? { policy: policy.name } : {}),
      message:
        `HSM-protected, but ${policy ? `policy ${policy.name} does not require HSM protection` : 'no policy governs it'}; ` +
        `software protection would save ${saving === null ? 'an unknown amount' : money(saving)} a month`,
      monthlySaving: saving,
      currency,
    });
  }

  // Budgets.
  for (const k of input.keys) {
    const policy = policyOf(k);
    const budget = policy?.budget?.perKeyMonthly;
    const kc = costByRef.get(k.ref);
    if (!budget || !kc) continue;
    if (budget.currency !== kc.currency) {
      out.push({
        kind: 'budget_breach',
        severity: 'info',
        keyRef: k.ref,
        policy: policy!.name,
        message: `budget of policy ${policy!.name} is in ${budget.currency} but costs are in ${kc.currency}: set a currency override to compare`,
        monthlySaving: null,
        currency,
      });
      continue;
    }
    const spent = kc.total ?? kc.knownTotal;
    if (spent <= budget.amount) continue;
    out.push({
      kind: 'budget_breach',
      severity: 'critical',
      keyRef: k.ref,
      account: k.account,
      policy: policy!.name,
      message:
        `${kc.period}: ${kc.total === null ? 'at least ' : ''}${money(spent)} exceeds the ${money(budget.amount)} per-key budget ` +
        `of policy ${policy!.name} by ${money(spent - budget.amount)}`,
      monthlySaving: spent - budget.amount,
      currency,
    });
  }
  return out;
}
