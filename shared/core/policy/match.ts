import type { ManagedKey } from '../domain/key.js';
import { globMatcher } from './glob.js';
import type { Policy, RekeyConfig } from './types.js';

/**
 * Whether a policy governs a key. Every criterion the policy gives must hold (an empty match
 * governs every key); within a list, any entry may match.
 */
export function matchesPolicy(policy: Policy, key: ManagedKey): boolean {
  const m = policy.match;
  if (m.provider && !m.provider.includes(key.providerId)) return false;
  if (m.protection && !m.protection.includes(key.protection)) return false;
  if (m.keys && !m.keys.includes(key.ref)) return false;
  if (m.name && !m.name.some((g) => globMatcher(g)(key.name))) return false;
  if (m.tags) {
    for (const [tag, glob] of Object.entries(m.tags)) {
      const value = Object.hasOwn(key.tags, tag) ? key.tags[tag] : undefined;
      if (value === undefined || !globMatcher(glob)(value)) return false;
    }
  }
  return true;
}

/**
 * The policy that governs a key: the first match in file order. Later policies that also match
 * are returned as shadowed, so the plan can point out rules that never take effect for a key.
 */
export function policyFor(config: RekeyConfig, key: ManagedKey): { policy?: Policy; shadowed: Policy[] } {
  const matching = config.policies.filter((p) => matchesPolicy(p, key));
  const [policy, ...shadowed] = matching;
  return policy ? { policy, shadowed } : { shadowed };
}
