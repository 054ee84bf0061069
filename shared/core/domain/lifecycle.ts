import { InvariantViolation, ValidationError } from '../errors.js';
import type { ManagedKey, VersionState } from './key.js';

/**
 * The lifecycle rules, in one place. Every state change rekey makes, whatever the provider,
 * is checked here before the provider is called:
 *  - a key has exactly one primary, and it is enabled;
 *  - the primary is never disabled, scheduled for destruction or destroyed;
 *  - a version that any DEK still references is never disabled or destroyed;
 *  - states move only along the allowed edges below.
 */
const EDGES: Record<VersionState, readonly VersionState[]> = {
  enabled: ['disabled'],
  disabled: ['enabled', 'destroy_scheduled'],
  destroy_scheduled: ['disabled', 'destroyed'],
  destroyed: [],
};

/** States in which a version can no longer unwrap. */
export const RETIRED_STATES: readonly VersionState[] = ['disabled', 'destroy_scheduled', 'destroyed'];

export function canMove(from: VersionState, to: VersionState): boolean {
  return EDGES[from].includes(to);
}

/** Structural invariants of a key; throws InvariantViolation naming the key. */
export function checkKey(key: ManagedKey): void {
  const ids = new Set<string>();
  for (const v of key.versions) {
    if (ids.has(v.id)) throw new InvariantViolation(`key ${key.ref}: duplicate version id ${v.id}`);
    ids.add(v.id);
  }
  const primary = key.versions.find((v) => v.id === key.primaryVersion);
  if (!primary)
    throw new InvariantViolation(`key ${key.ref}: primary version ${key.primaryVersion} does not exist`);
  if (primary.state !== 'enabled') {
    throw new InvariantViolation(
      `key ${key.ref}: primary version ${primary.id} is ${primary.state}, not enabled`,
    );
  }
}

export interface TransitionRequest {
  key: ManagedKey;
  version: string;
  to: VersionState;
  /** How many DEKs, across every configured store, are still wrapped under this version. */
  dekReferences: number;
}

/** Throws if the transition would break an invariant; returns normally otherwise. */
export function assertTransition({ key, version, to, dekReferences }: TransitionRequest): void {
  const v = key.versions.find((x) => x.id === version);
  if (!v) throw new ValidationError(`key ${key.ref} has no version ${version}`);
  if (v.state === to) return;
  if (version === key.primaryVersion && to !== 'enabled') {
    throw new InvariantViolation(`key ${key.ref}: version ${version} is the primary and cannot become ${to}`);
  }
  if (!canMove(v.state, to)) {
    throw new InvariantViolation(`key ${key.ref}: version ${version} cannot move from ${v.state} to ${to}`);
  }
  if (RETIRED_STATES.includes(to) && dekReferences > 0) {
    throw new InvariantViolation(
      `key ${key.ref}: version ${version} still wraps ${dekReferences} DEK(s); re-wrap them before it becomes ${to}`,
    );
  }
}

/** Pure: the key after a checked transition. */
export function applyTransition(req: TransitionRequest, at: string, destroyAt?: string): ManagedKey {
  assertTransition(req);
  const key = req.key;
  return {
    ...key,
    versions: key.versions.map((v) =>
      v.id === req.version
        ? {
            ...v,
            state: req.to,
            ...(req.to === 'destroy_scheduled' ? { destroyAt: destroyAt ?? at } : { destroyAt: undefined }),
          }
        : v,
    ),
  };
}

/** Pure: the key after a new primary version was added (rotation). */
export function applyRotation(key: ManagedKey, newVersion: string, at: string): ManagedKey {
  if (key.versions.some((v) => v.id === newVersion)) {
    throw new InvariantViolation(`key ${key.ref}: version ${newVersion} already exists`);
  }
  const next: ManagedKey = {
    ...key,
    primaryVersion: newVersion,
    versions: [...key.versions, { id: newVersion, state: 'enabled', createdAt: at }],
  };
  checkKey(next);
  return next;
}
