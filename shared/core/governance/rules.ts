import { type Duration, durationDays, parseDuration } from '../domain/duration.js';
import type { ApprovalAction, Policy, RekeyConfig } from '../policy/types.js';

/**
 * Which actions need M-of-N approvals, read from the config alone (pure):
 *  - `approvals.require` names actions that need them for every key (and `policy_change`);
 *  - a policy's `approvals.require` names actions on the keys it governs, with its own quorum;
 *  - a policy's `retire.approvals: N` (older form) means destruction needs N approvals.
 * When several apply, the largest quorum wins.
 */
export interface ApprovalRequirement {
  action: ApprovalAction;
  /** M: distinct approvals needed. */
  quorum: number;
  /** Who may approve (N). */
  approvers: string[];
  /** How long a request stays open (and an approved one usable). */
  expiry: Duration;
  /** Where the requirement comes from, for messages. */
  because: string[];
}

export const DEFAULT_QUORUM = 2;
export const DEFAULT_EXPIRY = parseDuration('P3D');

export function policyNamed(config: RekeyConfig, name: string | undefined): Policy | undefined {
  return name === undefined ? undefined : config.policies.find((p) => p.name === name);
}

/** What approving `action` takes, or null when it needs none. */
export function approvalRequirement(
  config: RekeyConfig,
  action: ApprovalAction,
  opts: { policy?: string; minQuorum?: number } = {},
): ApprovalRequirement | null {
  const policy = policyNamed(config, opts.policy);
  const global = config.approvals;
  const quorums: number[] = [];
  const because: string[] = [];
  if (global?.require.includes(action)) {
    quorums.push(global.quorum);
    because.push(`approvals.require names ${action}`);
  }
  if (policy?.approvals?.require.includes(action as never)) {
    quorums.push(policy.approvals.quorum ?? global?.quorum ?? DEFAULT_QUORUM);
    because.push(`policy ${policy.name} requires approvals for ${action}`);
  }
  if (action === 'destroy' && (policy?.retire?.approvals ?? 0) > 0) {
    quorums.push(policy!.retire!.approvals);
    because.push(`policy ${policy!.name} retire.approvals is ${policy!.retire!.approvals}`);
  }
  if ((opts.minQuorum ?? 0) > 0) {
    quorums.push(opts.minQuorum!);
    if (because.length === 0) because.push(`the plan asks for ${opts.minQuorum} approval(s)`);
  }
  if (quorums.length === 0) return null;
  return {
    action,
    quorum: Math.max(...quorums),
    approvers: [...(global?.approvers ?? [])],
    expiry: global?.expiry ?? DEFAULT_EXPIRY,
    because,
  };
}

/** Rotation periods by policy name, in days (the baseline for "lowering a rotation period"). */
export function rotationDays(config: RekeyConfig): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of config.policies) if (p.rotate) out[p.name] = durationDays(p.rotate.every);
  return out;
}

/** The approval gates that guard changes of the config file itself, as the file states them. */
export interface ConfigGates {
  policyChange?: { quorum: number; approvers: string[]; expiry: string };
  /** Policies whose rotation period may only get shorter with approvals. */
  rotationLowered?: { quorum: number; approvers: string[]; expiry: string; policies: string[] };
}

export function configGates(config: RekeyConfig): ConfigGates {
  const out: ConfigGates = {};
  const a = config.approvals;
  if (!a) return out;
  if (a.require.includes('policy_change'))
    out.policyChange = { quorum: a.quorum, approvers: [...a.approvers], expiry: a.expiry.text };
  const lowered = config.policies.filter(
    (p) =>
      a.require.includes('rotation_period_lowered') ||
      p.approvals?.require.includes('rotation_period_lowered'),
  );
  if (lowered.length > 0) {
    out.rotationLowered = {
      quorum: Math.max(
        ...lowered.map((p) =>
          p.approvals?.require.includes('rotation_period_lowered')
            ? (p.approvals.quorum ?? a.quorum)
            : a.quorum,
        ),
      ),
      approvers: [...a.approvers],
      expiry: a.expiry.text,
      policies: lowered.map((p) => p.name),
    };
  }
  return out;
}

/** Policies guarded by `gate` whose rotation period is shorter in `next` than in the baseline. */
export function loweredRotations(
  baseline: Record<string, number>,
  next: RekeyConfig,
  guarded: string[],
): { policy: string; fromDays: number; toDays: number }[] {
  const now = rotationDays(next);
  return guarded
    .filter((name) => baseline[name] !== undefined && now[name] !== undefined && now[name]! < baseline[name]!)
    .map((name) => ({ policy: name, fromDays: baseline[name]!, toDays: now[name]! }));
}
