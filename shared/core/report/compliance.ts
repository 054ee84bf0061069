import { addDuration, durationDays } from '../domain/duration.js';
import type { Algorithm, ManagedKey, Protection, VersionState } from '../domain/key.js';
import { lastRotatedAt, supersededAt } from '../domain/key.js';
import { RETIRED_STATES } from '../domain/lifecycle.js';
import { ValidationError } from '../errors.js';
import type { DekCensus } from '../plan/evaluate.js';
import type { Severity } from '../plan/types.js';
import { policyFor } from '../policy/match.js';
import type { Policy, RekeyConfig } from '../policy/types.js';
import { inWindow } from '../policy/window.js';
import type { AuditRecord } from '../ports/StateStore.js';
import { type ComplianceReference, REFERENCES } from './references.js';

/**
 * Compliance report data: for each key, what its policy demands and what the inventory, the DEK
 * census and the audit log show, with every gap named and mapped to PCI DSS and NIST SP 800-57.
 * Pure: the caller gathers the inputs (inventory, config, audit records, census).
 */

/** [from, to): ISO-8601 instants. */
export interface ReportPeriod {
  from: string;
  to: string;
}

export interface AuditIntegritySummary {
  ok: boolean;
  records: number;
  checkpoints: number;
  problems: string[];
  /** Records after the last valid signed checkpoint. */
  unsignedRecords?: number;
}

export interface ComplianceInput {
  keys: ManagedKey[];
  config: RekeyConfig;
  /** Audit records; those outside the period are ignored. */
  records: AuditRecord[];
  /** DEK counts per key ref, per store, per version. */
  census: DekCensus;
  period: ReportPeriod;
  /** The instant key state is judged at. Default: the end of the period. */
  asOf?: string;
  /** Outcome of verifyAuditWithCheckpoints, when the caller ran it. */
  auditIntegrity?: AuditIntegritySummary;
}

export type ViolationKind =
  | 'rotation_overdue'
  | 'rotation_outside_window'
  | 'rewrap_overdue'
  | 'retired_but_referenced'
  | 'compromised_version_in_use'
  | 'protection_mismatch'
  | 'algorithm_mismatch';

export const VIOLATION_KINDS: readonly ViolationKind[] = [
  'rotation_overdue',
  'rotation_outside_window',
  'rewrap_overdue',
  'retired_but_referenced',
  'compromised_version_in_use',
  'protection_mismatch',
  'algorithm_mismatch',
];

export interface Violation {
  kind: ViolationKind;
  severity: Severity;
  message: string;
  version?: string;
  /** When it happened (for events) or became true (for states), if known. */
  at?: string;
  references: ComplianceReference[];
}

export interface VersionRow {
  id: string;
  state: VersionState;
  createdAt: string;
  primary: boolean;
  compromised: boolean;
  /** DEKs wrapped under this version, across every store. */
  deks: number;
  destroyAt?: string;
}

export type RewrapStatus = 'no_deks' | 'complete' | 'pending' | 'overdue';

export interface RotationEvent {
  at: string;
  actor: string;
  version?: string;
  onDemand: boolean;
  /** Whether it happened inside the policy's window (absent when there is no window). */
  inWindow?: boolean;
}

export interface ApprovalEvent {
  at: string;
  actor: string;
  action: string;
  version?: string;
  approvalsRequired?: number;
}

export interface KeyReport {
  ref: string;
  name: string;
  provider: string;
  protection: Protection;
  algorithm: Algorithm;
  policy: string | null;
  /** When the current primary was created. */
  lastRotation: string;
  ageDays: number;
  /** The policy's rotation period in days (approximate for months and years); null without one. */
  maxAgeDays: number | null;
  rotationDueAt: string | null;
  rotation: 'ok' | 'overdue' | 'no_rotation_rule' | 'unmanaged';
  versions: VersionRow[];
  rewrap: { status: RewrapStatus; total: number; onPrimary: number; pending: number };
  rotationsInPeriod: RotationEvent[];
  approvals: ApprovalEvent[];
  violations: Violation[];
  compliant: boolean;
}

export interface PolicyReport {
  name: string;
  rotateEvery: string | null;
  window: string | null;
  require: { protection?: Protection; algorithms?: Algorithm[] } | null;
  keys: number;
  compliant: number;
  violations: number;
}

export interface ComplianceReport {
  title: string;
  period: ReportPeriod;
  asOf: string;
  configFile: string;
  configDigest: string;
  summary: {
    keys: number;
    managed: number;
    compliant: number;
    violations: number;
    byKind: Record<ViolationKind, number>;
    rotationsInPeriod: number;
    approvalsInPeriod: number;
  };
  policies: PolicyReport[];
  keys: KeyReport[];
  audit: {
    recordsInPeriod: number;
    actions: Record<string, number>;
    integrity?: AuditIntegritySummary;
  };
  /** Every reference used by a violation, once. */
  references: ComplianceReference[];
}

const DAY_MS = 86_400_000;

function instant(text: string, what: string): number {
  const t = Date.parse(text);
  if (Number.isNaN(t))
    throw new ValidationError(`compliance report: ${what} "${text}" is not an ISO-8601 instant`);
  return t;
}

function dekCounts(census: DekCensus, ref: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const byVersion of Object.values(census.get(ref) ?? {})) {
    for (const [v, n] of Object.entries(byVersion)) out[v] = (out[v] ?? 0) + n;
  }
  return out;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function keyReport(
  key: ManagedKey,
  policy: Policy | undefined,
  input: ComplianceInput,
  asOf: Date,
  events: AuditRecord[],
): KeyReport {
  const violations: Violation[] = [];
  const counts = dekCounts(input.census, key.ref);
  const versions: VersionRow[] = key.versions.map((v) => ({
    id: v.id,
    state: v.state,
    createdAt: v.createdAt,
    primary: v.id === key.primaryVersion,
    compromised: v.compromised === true,
    deks: counts[v.id] ?? 0,
    ...(v.destroyAt ? { destroyAt: v.destroyAt } : {}),
  }));

  const last = lastRotatedAt(key);
  const ageDays = Math.floor((asOf.getTime() - Date.parse(last)) / DAY_MS);
  let rotation: KeyReport['rotation'] = policy ? 'no_rotation_rule' : 'unmanaged';
  let rotationDueAt: string | null = null;
  let maxAgeDays: number | null = null;
  if (policy?.rotate) {
    const due = addDuration(new Date(last), policy.rotate.every);
    rotationDueAt = due.toISOString();
    maxAgeDays = Math.round(durationDays(policy.rotate.every) * 100) / 100;
    rotation = asOf.getTime() > due.getTime() ? 'overdue' : 'ok';
    if (rotation === 'overdue') {
      violations.push({
        kind: 'rotation_overdue',
        severity: 'critical',
        message: `primary ${key.primaryVersion} is ${ageDays} days old; policy ${policy.name} rotates every ${policy.rotate.every.text} (due ${rotationDueAt})`,
        version: key.primaryVersion,
        at: rotationDueAt,
        references: [REFERENCES.pciCryptoperiod, REFERENCES.nistCryptoperiod],
      });
    }
  }

  // Re-wrap: DEKs still under versions other than the primary.
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const onPrimary = counts[key.primaryVersion] ?? 0;
  let rewrapStatus: RewrapStatus = total === 0 ? 'no_deks' : total === onPrimary ? 'complete' : 'pending';
  for (const v of versions) {
    if (v.primary || v.deks === 0) continue;
    const within = policy?.rewrap?.within;
    const since = supersededAt(key, v.id);
    if (within && since) {
      const deadline = addDuration(new Date(since), within);
      if (asOf.getTime() > deadline.getTime()) {
        rewrapStatus = 'overdue';
        violations.push({
          kind: 'rewrap_overdue',
          severity: 'warning',
          message: `${v.deks} DEK(s) still wrapped under version ${v.id}, superseded ${since}; policy ${policy!.name} re-wraps within ${within.text}`,
          version: v.id,
          at: deadline.toISOString(),
          references: [REFERENCES.nistCryptoperiod, REFERENCES.pciCryptoperiod],
        });
      }
    }
    if (RETIRED_STATES.includes(v.state)) {
      violations.push({
        kind: 'retired_but_referenced',
        severity: 'critical',
        message: `version ${v.id} is ${v.state} but ${v.deks} DEK(s) are still wrapped under it; rekey refuses this transition, so it was made outside rekey and those DEKs may be unreadable`,
        version: v.id,
        references: [REFERENCES.nistStates, REFERENCES.pciRetire],
      });
    }
  }
  for (const v of versions) {
    if (!v.compromised || (v.state !== 'enabled' && v.deks === 0)) continue;
    const what = [
      ...(v.primary ? ['is the primary'] : v.state === 'enabled' ? ['is still enabled'] : []),
      ...(v.deks > 0 ? [`still wraps ${v.deks} DEK(s)`] : []),
    ];
    violations.push({
      kind: 'compromised_version_in_use',
      severity: 'critical',
      message: `version ${v.id} is marked compromised but ${what.join(' and ')}`,
      version: v.id,
      references: [REFERENCES.pciRetire, REFERENCES.nistStates],
    });
  }

  const req = policy?.require;
  if (req?.protection && req.protection !== key.protection) {
    violations.push({
      kind: 'protection_mismatch',
      severity: 'critical',
      message: `policy ${policy!.name} requires ${req.protection} protection; the key is ${key.protection}`,
      references: [REFERENCES.pciStorage, REFERENCES.nistProtection],
    });
  }
  if (req?.algorithms && !req.algorithms.includes(key.algorithm)) {
    violations.push({
      kind: 'algorithm_mismatch',
      severity: 'critical',
      message: `policy ${policy!.name} allows ${req.algorithms.join(', ')}; the key is ${key.algorithm}`,
      references: [REFERENCES.nistAlgorithm],
    });
  }

  const rotationsInPeriod: RotationEvent[] = [];
  const approvals: ApprovalEvent[] = [];
  const window = policy?.rotate?.window;
  for (const r of events) {
    if (r.action === 'key.rotated') {
      const ok = window ? inWindow(window, new Date(r.ts)) : undefined;
      const onDemand = r.details.onDemand === true;
      const version = str(r.details.primary);
      rotationsInPeriod.push({
        at: r.ts,
        actor: r.actor,
        onDemand,
        ...(version ? { version } : {}),
        ...(ok !== undefined ? { inWindow: ok } : {}),
      });
      if (ok === false) {
        violations.push({
          kind: 'rotation_outside_window',
          severity: 'warning',
          message: `${onDemand ? 'on-demand ' : ''}rotation to ${version ?? 'a new version'} by ${r.actor} at ${r.ts} was outside the window "${window!.text}"`,
          ...(version ? { version } : {}),
          at: r.ts,
          references: [REFERENCES.pciChange],
        });
      }
    } else if (r.action === 'version.destroy_awaiting_approval' || r.action.startsWith('approval.')) {
      const version = str(r.details.version);
      approvals.push({
        at: r.ts,
        actor: r.actor,
        action: r.action,
        ...(version ? { version } : {}),
        ...(typeof r.details.approvalsRequired === 'number'
          ? { approvalsRequired: r.details.approvalsRequired }
          : {}),
      });
    }
  }

  return {
    ref: key.ref,
    name: key.name,
    provider: key.providerId,
    protection: key.protection,
    algorithm: key.algorithm,
    policy: policy?.name ?? null,
    lastRotation: last,
    ageDays,
    maxAgeDays,
    rotationDueAt,
    rotation,
    versions,
    rewrap: { status: rewrapStatus, total, onPrimary, pending: total - onPrimary },
    rotationsInPeriod,
    approvals,
    violations,
    compliant: violations.length === 0,
  };
}

export function buildComplianceReport(input: ComplianceInput): ComplianceReport {
  const from = instant(input.period.from, 'period.from');
  const to = instant(input.period.to, 'period.to');
  if (to <= from) {
    throw new ValidationError(
      `compliance report: period.to (${input.period.to}) must be after period.from (${input.period.from})`,
    );
  }
  const asOf = new Date(input.asOf ? instant(input.asOf, 'asOf') : to);
  const inPeriod = input.records.filter((r) => {
    const t = Date.parse(r.ts);
    return t >= from && t < to;
  });
  const byTarget = new Map<string, AuditRecord[]>();
  const actionCounts = new Map<string, number>();
  for (const r of inPeriod) {
    actionCounts.set(r.action, (actionCounts.get(r.action) ?? 0) + 1);
    if (!r.target) continue;
    const list = byTarget.get(r.target);
    if (list) list.push(r);
    else byTarget.set(r.target, [r]);
  }

  const keys = [...input.keys]
    .sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0))
    .map((k) => keyReport(k, policyFor(input.config, k).policy, input, asOf, byTarget.get(k.ref) ?? []));

  const byKind = Object.fromEntries(VIOLATION_KINDS.map((k) => [k, 0])) as Record<ViolationKind, number>;
  const refs = new Map<string, ComplianceReference>();
  for (const k of keys) {
    for (const v of k.violations) {
      byKind[v.kind]++;
      for (const r of v.references) refs.set(`${r.standard} ${r.ref}`, r);
    }
  }

  const policies: PolicyReport[] = input.config.policies.map((p) => {
    const mine = keys.filter((k) => k.policy === p.name);
    return {
      name: p.name,
      rotateEvery: p.rotate?.every.text ?? null,
      window: p.rotate?.window?.text ?? null,
      require: p.require ?? null,
      keys: mine.length,
      compliant: mine.filter((k) => k.compliant).length,
      violations: mine.reduce((n, k) => n + k.violations.length, 0),
    };
  });

  return {
    title: 'rekey key management compliance report',
    period: { from: new Date(from).toISOString(), to: new Date(to).toISOString() },
    asOf: asOf.toISOString(),
    configFile: input.config.file,
    configDigest: input.config.digest,
    summary: {
      keys: keys.length,
      managed: keys.filter((k) => k.policy !== null).length,
      compliant: keys.filter((k) => k.policy !== null && k.compliant).length,
      violations: keys.reduce((n, k) => n + k.violations.length, 0),
      byKind,
      rotationsInPeriod: keys.reduce((n, k) => n + k.rotationsInPeriod.length, 0),
      approvalsInPeriod: keys.reduce((n, k) => n + k.approvals.length, 0),
    },
    policies,
    keys,
    audit: {
      recordsInPeriod: inPeriod.length,
      actions: Object.fromEntries(actionCounts),
      ...(input.auditIntegrity ? { integrity: input.auditIntegrity } : {}),
    },
    references: [...refs.values()].sort((a, b) =>
      `${a.standard} ${a.ref}` < `${b.standard} ${b.ref}` ? -1 : 1,
    ),
  };
}

/** The report as JSON (stable key order as built, two-space indent). */
export function toJson(report: ComplianceReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
