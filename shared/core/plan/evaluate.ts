import { createHash } from 'node:crypto';
import type { PriceCatalog } from '../cost/catalog.js';
import { actionCostDelta } from '../cost/forecast.js';
import { costKeyFromManaged } from '../cost/fromInventory.js';
import { addDuration, type Duration, durationDays } from '../domain/duration.js';
import { lastRotatedAt, type ManagedKey, supersededAt } from '../domain/key.js';
import { policyFor } from '../policy/match.js';
import type { Policy, RekeyConfig } from '../policy/types.js';
import { inWindow, nextWindowOpen } from '../policy/window.js';
import type { ProviderCapabilities } from '../ports/KeyProvider.js';
import { canonicalJson } from '../util/canonicalJson.js';
import type { Finding, Plan, PlanAction, RewrapAction, RotateAction } from './types.js';

/** DEK counts per key ref, per store id, per version. */
export type DekCensus = Map<string, Record<string, Record<string, number>>>;

export interface EvaluationInput {
  keys: ManagedKey[];
  config: RekeyConfig;
  now: Date;
  census: DekCensus;
  /** Capabilities per configured provider id. */
  capabilities: Record<string, ProviderCapabilities>;
  /** Capabilities per key ref, for keys whose provider says they differ from its own. */
  keyCapabilities?: Record<string, ProviderCapabilities>;
  inventoryId: string;
  /** Prices: each action then carries its cost delta. */
  catalog?: PriceCatalog;
}

const DAY_MS = 86_400_000;

function dekCount(census: DekCensus, ref: string, version: string, stores?: string[]): number {
  const perStore = census.get(ref);
  if (!perStore) return 0;
  let n = 0;
  for (const [store, byVersion] of Object.entries(perStore)) {
    if (stores && !stores.includes(store)) continue;
    n += byVersion[version] ?? 0;
  }
  return n;
}

function ageDays(from: string, now: Date): number {
  return Math.floor((now.getTime() - new Date(from).getTime()) / DAY_MS);
}

function wholeDays(d: Duration): number | null {
  if (d.years || d.months || d.hours || d.minutes || d.seconds) return null;
  return d.weeks * 7 + d.days;
}

/** How a policy's rotation period maps onto a provider: natively, or rekey rotates on demand. */
export function rotationStrategy(
  policy: Policy,
  caps: ProviderCapabilities | undefined,
): { native: boolean; periodDays: number | null; why: string } {
  const rotate = policy.rotate;
  if (!rotate) return { native: false, periodDays: null, why: 'no rotation policy' };
  const days = wholeDays(rotate.every);
  const range = caps?.autoRotation;
  if (rotate.mode === 'rekey') return { native: false, periodDays: null, why: 'policy asks rekey to rotate' };
  if (rotate.window && rotate.mode === 'auto') {
    return { native: false, periodDays: null, why: 'native schedules cannot honour a maintenance window' };
  }
  if (!range) return { native: false, periodDays: null, why: 'provider has no native rotation' };
  if (days === null) {
    return { native: false, periodDays: null, why: `${rotate.every.text} is not a whole number of days` };
  }
  if (days < range.minDays || days > range.maxDays) {
    return {
      native: false,
      periodDays: null,
      why: `${days} days is outside the provider's native range ${range.minDays}-${range.maxDays} days`,
    };
  }
  return { native: true, periodDays: days, why: `native schedule every ${days} days` };
}

/**
 * Pure evaluation: what is true of each key against the policy that governs it, and what should
 * be done about it. The same inputs always give the same plan.
 */
export function evaluate(input: EvaluationInput): Plan {
  const { config, now } = input;
  const findings: Finding[] = [];
  const actions: PlanAction[] = [];
  const keys = [...input.keys].sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));

  for (const key of keys) {
    const { policy, shadowed } = policyFor(config, key);
    if (!policy) {
      findings.push({
        kind: 'unmanaged_key',
        severity: 'info',
        keyRef: key.ref,
        message: 'no policy matches this key',
      });
      continue;
    }
    for (const s of shadowed) {
      findings.push({
        kind: 'shadowed_policy',
        severity: 'warning',
        keyRef: key.ref,
        policy: s.name,
        message: `policy ${s.name} also matches but ${policy.name} comes first and governs this key`,
      });
    }
    evaluateKey(key, policy, input, findings, actions);
  }

  if (input.catalog) {
    const byRef = new Map(keys.map((k) => [k.ref, k]));
    for (const a of actions) {
      const d = actionCostDelta(a, costKeyFromManaged(byRef.get(a.keyRef)!), input.catalog, {
        at: now.toISOString(),
      });
      a.costDelta = {
        monthly: d.monthly,
        oneOff: d.oneOff,
        currency: d.currency,
        catalogVersion: d.catalogVersion,
        explanation: d.explanation,
      };
    }
  }
  const body = {
    createdAt: now.toISOString(),
    configDigest: config.digest,
    inventoryId: input.inventoryId,
    actions,
  };
  const id = `plan-${now.toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${createHash('sha256')
    .update(canonicalJson(body))
    .digest('hex')
    .slice(0, 10)}`;
  return { id, ...body, findings };
}

function evaluateKey(
  key: ManagedKey,
  policy: Policy,
  input: EvaluationInput,
  findings: Finding[],
  actions: PlanAction[],
): void {
  const { now, census } = input;
  const caps = input.keyCapabilities?.[key.ref] ?? input.capabilities[key.providerId];
  const base = { keyRef: key.ref, provider: key.providerId, policy: policy.name };

  // Before the disabled check: expired imported material is what disables such a key.
  materialExpiry(key, policy, now, base, findings);

  if (!key.enabled) {
    findings.push({
      ...base,
      kind: 'key_disabled',
      severity: 'info',
      message: 'key is disabled; nothing to do',
    });
    return;
  }
  if (policy.require?.protection && key.protection !== policy.require.protection) {
    findings.push({
      ...base,
      kind: 'protection_mismatch',
      severity: 'critical',
      message: `key protection is ${key.protection}; policy requires ${policy.require.protection}`,
    });
  }
  if (policy.require?.algorithms && !policy.require.algorithms.includes(key.algorithm)) {
    findings.push({
      ...base,
      kind: 'algorithm_mismatch',
      severity: 'critical',
      message: `key algorithm is ${key.algorithm}; policy allows ${policy.require.algorithms.join(', ')}`,
    });
  }
  for (const v of key.versions) {
    if (v.compromised && v.state !== 'destroyed') {
      findings.push({
        ...base,
        kind: 'compromised_version',
        severity: 'critical',
        version: v.id,
        message: `version ${v.id} is marked compromised and is ${v.state}`,
      });
    }
  }

  // Version limits (Key Vault backups fail above 500 versions; Managed HSM holds 100).
  const limit = caps?.maxVersions;
  const atLimit = limit !== undefined && key.versions.length >= limit;
  if (limit !== undefined && key.versions.length >= Math.floor(limit * 0.9)) {
    findings.push({
      ...base,
      kind: 'version_limit',
      severity: atLimit ? 'critical' : 'warning',
      message: `${key.versions.length} versions of at most ${limit}${atLimit ? ': rekey will not rotate it again' : ''}; versions that cannot be deleted count towards the limit`,
    });
  }

  // 1. Rotation.
  let rotating = false;
  if (policy.rotate) {
    const strategy = rotationStrategy(policy, caps);
    const wantNative = strategy.native ? strategy.periodDays : null;
    const haveNative = key.autoRotation?.periodDays ?? null;
    if (policy.rotate.mode === 'native' && !strategy.native) {
      findings.push({
        ...base,
        kind: 'auto_rotation_mismatch',
        severity: 'warning',
        message: `policy asks for native rotation but ${strategy.why}; rekey rotates on demand instead`,
      });
    }
    const rotatedAt = lastRotatedAt(key);
    const dueAt = addDuration(new Date(rotatedAt), policy.rotate.every);
    const age = ageDays(rotatedAt, now);
    if (dueAt.getTime() <= now.getTime()) {
      const window = policy.rotate.window;
      if (atLimit) {
        // Reported above: a rotation would fail (or break backups); nothing to plan.
      } else if (window && !inWindow(window, now)) {
        findings.push({
          ...base,
          kind: 'outside_window',
          severity: 'info',
          message: `rotation is due (primary ${key.primaryVersion} is ${age} days old) but waits for the window "${window.text}", next opening ${nextWindowOpen(window, now).toISOString()}`,
        });
      } else {
        const byok = key.imported ? byokRotation(policy, caps) : { ok: true as const };
        findings.push({
          ...base,
          kind: 'rotation_due',
          severity: age > 2 * durationDays(policy.rotate.every) ? 'critical' : 'warning',
          message: `primary version ${key.primaryVersion} is ${age} days old; policy rotates every ${policy.rotate.every.text}`,
        });
        if (!byok.ok) {
          findings.push({ ...base, kind: 'byok_source_missing', severity: 'warning', message: byok.why });
        } else {
          rotating = true;
          const action: RotateAction = {
            ...base,
            type: 'rotate',
            expectPrimary: key.primaryVersion,
            reason: `primary version ${key.primaryVersion} is ${age} days old, due since ${dueAt.toISOString().slice(0, 10)} (every ${policy.rotate.every.text}${strategy.native ? '' : `; rekey rotates on demand: ${strategy.why}`})`,
          };
          if (byok.rotation) {
            action.byok = byok.rotation;
            action.reason += `; new material from ${byok.rotation.source}, imported with ${byok.rotation.algorithm}`;
          }
          actions.push(action);
        }
      }
    }
    // After any rotation, so a native schedule counts from the fresh primary.
    if (wantNative !== haveNative && (strategy.native || haveNative !== null)) {
      actions.push({
        ...base,
        type: 'set_auto_rotation',
        periodDays: wantNative,
        reason:
          wantNative === null
            ? `remove the native schedule (${haveNative} days): ${strategy.why}, so rekey rotates on demand`
            : `set the native schedule to ${wantNative} days (was ${haveNative ?? 'off'})`,
      });
    }
  }

  // 2. Re-wrap: DEKs under any version that is (or is about to stop being) the primary.
  const stores = policy.rewrap?.stores ?? [];
  const oldVersions = key.versions.filter(
    (v) => (v.id !== key.primaryVersion || rotating) && v.state !== 'destroyed',
  );
  const pending = oldVersions
    .map((v) => ({ v, n: dekCount(census, key.ref, v.id, stores) }))
    .filter((x) => x.n > 0);
  const pendingTotal = pending.reduce((a, x) => a + x.n, 0);
  if (policy.rewrap && pendingTotal > 0) {
    const rw = policy.rewrap;
    for (const { v, n } of pending) {
      const since = v.id === key.primaryVersion ? now.toISOString() : supersededAt(key, v.id);
      const overdue =
        rw.within && since && addDuration(new Date(since), rw.within).getTime() <= now.getTime();
      findings.push({
        ...base,
        kind: overdue ? 'rewrap_overdue' : 'rewrap_pending',
        severity: overdue ? 'warning' : 'info',
        version: v.id,
        message: `${n} DEK(s) in ${stores.join(', ')} are wrapped under version ${v.id}${overdue ? `, longer than ${rw.within!.text} after it was superseded` : ''}`,
      });
    }
    const action: RewrapAction = {
      ...base,
      type: 'rewrap',
      stores,
      fromVersions: [],
      estimatedDeks: pendingTotal,
      verify: rw.verify.mode === 'sample' ? { sample: rw.verify.fraction } : rw.verify.mode,
      batchSize: rw.batchSize,
      reason: `${pendingTotal} DEK(s) are wrapped under non-primary version(s) ${pending.map((p) => p.v.id).join(', ')}`,
      ...(rw.rate ? { ratePerSecond: rw.rate.perSecond } : {}),
    };
    actions.push(action);
  }

  // 3. Retirement, projected onto the state after this plan's rotation and re-wrap.
  const retire = policy.retire;
  if (!retire) return;
  const destroys: PlanAction[] = [];
  for (const v of oldVersions) {
    const isOldPrimary = v.id === key.primaryVersion;
    const since = isOldPrimary ? now.toISOString() : supersededAt(key, v.id);
    if (!since) continue;
    const outsideStores = dekCount(census, key.ref, v.id) - dekCount(census, key.ref, v.id, stores);
    const remaining = policy.rewrap ? outsideStores : dekCount(census, key.ref, v.id);
    const versionName = isOldPrimary ? 'previous-primary' : v.id;
    const label = isOldPrimary ? `version ${v.id} (primary until this plan rotates it)` : `version ${v.id}`;
    let disabledAfterPlan = v.state !== 'enabled';
    const canDisable = caps?.versionControl?.disable ?? true;
    const canDestroy = caps?.versionControl?.destroy ?? true;
    if (!canDisable || !canDestroy) {
      const what = !canDisable && !canDestroy ? 'disable or destroy' : !canDisable ? 'disable' : 'destroy';
      findings.push({
        ...base,
        kind: 'version_retirable',
        severity: 'info',
        version: v.id,
        message: `${label} stays as it is: the provider cannot ${what} a single version (it acts on whole keys)`,
      });
    }
    if (
      canDisable &&
      v.state === 'enabled' &&
      retire.disableAfter &&
      addDuration(new Date(since), retire.disableAfter).getTime() <= now.getTime()
    ) {
      if (remaining > 0) {
        findings.push({
          ...base,
          kind: 'version_retirable',
          severity: 'warning',
          version: v.id,
          message: `${label} is due to be disabled but ${remaining} DEK(s) outside this policy's re-wrap stores still use it`,
        });
      } else {
        disabledAfterPlan = true;
        findings.push({
          ...base,
          kind: 'version_retirable',
          severity: 'info',
          version: v.id,
          message: `${label} was superseded ${ageDays(since, input.now)} days ago; disableAfter ${retire.disableAfter.text}`,
        });
        actions.push({
          ...base,
          type: 'disable_version',
          version: versionName,
          reason: `${label} superseded ${ageDays(since, input.now)} days ago (disableAfter ${retire.disableAfter.text}); disabled once no DEK references it`,
        });
      }
    }
    if (
      canDestroy &&
      disabledAfterPlan &&
      v.state !== 'destroy_scheduled' &&
      retire.destroyAfter &&
      addDuration(new Date(since), retire.destroyAfter).getTime() <= now.getTime()
    ) {
      const delayDays = Math.max(
        caps?.destroyDelayDays.min ?? 0,
        Math.min(Math.round(durationDays(retire.destroyDelay)), caps?.destroyDelayDays.max ?? 120),
      );
      findings.push({
        ...base,
        kind: 'version_destroyable',
        severity: 'info',
        version: v.id,
        message: `${label} is past destroyAfter ${retire.destroyAfter.text}`,
      });
      destroys.push({
        ...base,
        type: 'schedule_destroy',
        version: versionName,
        delayDays,
        approvalsRequired: retire.approvals,
        reason: `${label} superseded ${ageDays(since, input.now)} days ago (destroyAfter ${retire.destroyAfter.text}); destruction after a ${delayDays}-day wait${retire.approvals ? `, needs ${retire.approvals} approval(s)` : ''}`,
      });
    }
  }
  // Every disable before any destruction: a plan cut short never leaves a version destroyed
  // while an older one is still live.
  actions.push(...destroys);
}

/** Imported material that has expired, or expires within the policy's warning period. */
function materialExpiry(
  key: ManagedKey,
  policy: Policy,
  now: Date,
  base: { keyRef: string; provider: string; policy: string },
  findings: Finding[],
): void {
  const horizon = policy.byok
    ? addDuration(now, policy.byok.warnBefore)
    : new Date(now.getTime() + 30 * DAY_MS);
  for (const v of key.versions) {
    if (!v.expiresAt || v.state === 'destroyed') continue;
    const at = Date.parse(v.expiresAt);
    if (at > horizon.getTime()) continue;
    const day = v.expiresAt.slice(0, 10);
    const expired = at <= now.getTime();
    findings.push({
      ...base,
      kind: 'material_expiring',
      severity: expired ? 'critical' : 'warning',
      version: v.id,
      message: expired
        ? `imported material of version ${v.id} expired on ${day}: it cannot be used until the same material is imported again`
        : `imported material of version ${v.id} expires on ${day}, in ${Math.ceil((at - now.getTime()) / DAY_MS)} day(s): import it again with a later expiry, or rotate`,
    });
  }
}

/** Whether (and how) a key with imported material can be rotated under this policy. */
function byokRotation(
  policy: Policy,
  caps: ProviderCapabilities | undefined,
): { ok: true; rotation?: NonNullable<RotateAction['byok']> } | { ok: false; why: string } {
  const offered = caps?.import?.algorithms ?? [];
  if (!policy.byok) {
    return {
      ok: false,
      why: `rotation is due, but the key's material is imported and policy ${policy.name} names no byok source to make new material`,
    };
  }
  if (offered.length === 0) {
    return { ok: false, why: 'rotation is due, but the provider cannot import material for this key' };
  }
  const algorithm = policy.byok.algorithm ?? offered[0]!;
  if (!offered.includes(algorithm)) {
    return {
      ok: false,
      why: `rotation is due, but the provider does not accept ${algorithm} (it accepts ${offered.join(', ')})`,
    };
  }
  return {
    ok: true,
    rotation: {
      source: policy.byok.source,
      algorithm,
      ...(policy.byok.expiresAfter ? { expiresAfter: policy.byok.expiresAfter.text } : {}),
    },
  };
}

export function summarizePlan(plan: Plan): Record<PlanAction['type'], number> {
  const out = { rotate: 0, set_auto_rotation: 0, rewrap: 0, disable_version: 0, schedule_destroy: 0 };
  for (const a of plan.actions) out[a.type]++;
  return out;
}
