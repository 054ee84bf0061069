import { addDuration } from '../domain/duration.js';
import type { Policy } from '../policy/types.js';
import type { CostKey } from './types.js';

/**
 * Rotation compliance of a key known from a cost inventory: how old its primary is against the
 * rotation period of the policy that governs it. The primary is the newest version that is not
 * destroyed at `now`.
 */
export type RotationStatus = 'ok' | 'overdue' | 'no_rotation_rule' | 'unmanaged';

export interface KeyRotation {
  status: RotationStatus;
  /** Whole days since the primary was created. */
  ageDays: number;
  primaryCreatedAt: string;
  /** When the next rotation is due under the policy; null without a rotation rule. */
  dueAt: string | null;
}

const DAY_MS = 86_400_000;

export function keyRotation(key: CostKey, policy: Policy | undefined, now: string): KeyRotation {
  const t = Date.parse(now);
  const alive = key.versions.filter(
    (v) =>
      Date.parse(v.createdAt) <= t &&
      !(v.destroyedAt && Date.parse(v.destroyedAt) <= t) &&
      !(v.states ?? []).some((s) => s.state === 'destroyed' && Date.parse(s.at) <= t),
  );
  const primary = alive[alive.length - 1] ?? key.versions[key.versions.length - 1]!;
  const created = Date.parse(primary.createdAt);
  const ageDays = Math.max(0, Math.floor((t - created) / DAY_MS));
  if (!policy) return { status: 'unmanaged', ageDays, primaryCreatedAt: primary.createdAt, dueAt: null };
  if (!policy.rotate) {
    return { status: 'no_rotation_rule', ageDays, primaryCreatedAt: primary.createdAt, dueAt: null };
  }
  const due = addDuration(new Date(created), policy.rotate.every);
  return {
    status: due.getTime() < t ? 'overdue' : 'ok',
    ageDays,
    primaryCreatedAt: primary.createdAt,
    dueAt: due.toISOString(),
  };
}
