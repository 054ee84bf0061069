import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ManagedKey, VersionState } from '../../../shared/core/domain/key.js';
import {
  applyRotation,
  applyTransition,
  assertTransition,
  checkKey,
} from '../../../shared/core/domain/lifecycle.js';
import { InvariantViolation } from '../../../shared/core/errors.js';

const T0 = '2026-01-01T00:00:00.000Z';

function newKey(): ManagedKey {
  return {
    ref: 'local://k',
    providerType: 'local',
    providerId: 'local',
    name: 'k',
    tags: {},
    protection: 'software',
    algorithm: 'AES_256',
    enabled: true,
    primaryVersion: '1',
    versions: [{ id: '1', state: 'enabled', createdAt: T0 }],
    createdAt: T0,
  };
}

describe('lifecycle rules', () => {
  it('refuses to disable or destroy the primary', () => {
    const k = newKey();
    expect(() => assertTransition({ key: k, version: '1', to: 'disabled', dekReferences: 0 })).toThrow(
      'is the primary and cannot become disabled',
    );
  });

  it('refuses to disable a version that still wraps DEKs, naming the count', () => {
    const k = applyRotation(newKey(), '2', T0);
    expect(() => assertTransition({ key: k, version: '1', to: 'disabled', dekReferences: 3 })).toThrow(
      'still wraps 3 DEK(s)',
    );
    expect(() => assertTransition({ key: k, version: '1', to: 'disabled', dekReferences: 0 })).not.toThrow();
  });

  it('only moves along allowed edges (destroy needs disable first; destroyed is final)', () => {
    let k = applyRotation(newKey(), '2', T0);
    expect(() =>
      assertTransition({ key: k, version: '1', to: 'destroy_scheduled', dekReferences: 0 }),
    ).toThrow('cannot move from enabled to destroy_scheduled');
    k = applyTransition({ key: k, version: '1', to: 'disabled', dekReferences: 0 }, T0);
    k = applyTransition({ key: k, version: '1', to: 'destroy_scheduled', dekReferences: 0 }, T0);
    k = applyTransition({ key: k, version: '1', to: 'destroyed', dekReferences: 0 }, T0);
    expect(() => assertTransition({ key: k, version: '1', to: 'enabled', dekReferences: 0 })).toThrow(
      InvariantViolation,
    );
  });

  it('checkKey rejects a missing or disabled primary and duplicate ids', () => {
    const k = newKey();
    expect(() => checkKey({ ...k, primaryVersion: '9' })).toThrow('does not exist');
    expect(() => checkKey({ ...k, versions: [{ ...k.versions[0]!, state: 'disabled' }] })).toThrow(
      'not enabled',
    );
    expect(() => checkKey({ ...k, versions: [k.versions[0]!, k.versions[0]!] })).toThrow(
      'duplicate version id',
    );
  });

  /**
   * Property: whatever sequence of rotations, transitions and DEK movements is attempted, the
   * checked operations never produce a key whose primary is not enabled, nor a retired
   * version that any DEK references. Refused operations leave the key unchanged.
   */
  it('no operation sequence breaks the invariants', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('rotate' as const) }),
      fc.record({
        kind: fc.constant('move' as const),
        version: fc.integer({ min: 1, max: 8 }),
        to: fc.constantFrom<VersionState>('enabled', 'disabled', 'destroy_scheduled', 'destroyed'),
      }),
      fc.record({
        kind: fc.constant('addDeks' as const),
        version: fc.integer({ min: 1, max: 8 }),
        n: fc.integer({ min: 1, max: 5 }),
      }),
      fc.record({ kind: fc.constant('rewrapAll' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        let key = newKey();
        const deks = new Map<string, number>();
        let next = 2;
        for (const o of ops) {
          const before = JSON.stringify(key);
          try {
            if (o.kind === 'rotate') key = applyRotation(key, String(next++), T0);
            else if (o.kind === 'move') {
              key = applyTransition(
                {
                  key,
                  version: String(o.version),
                  to: o.to,
                  dekReferences: deks.get(String(o.version)) ?? 0,
                },
                T0,
              );
            } else if (o.kind === 'addDeks') {
              // Applications only wrap under an enabled version.
              const v = key.versions.find((x) => x.id === String(o.version));
              if (v?.state === 'enabled') deks.set(v.id, (deks.get(v.id) ?? 0) + o.n);
            } else {
              const total = [...deks.values()].reduce((a, b) => a + b, 0);
              deks.clear();
              deks.set(key.primaryVersion, total);
            }
          } catch (e) {
            if (
              !(e instanceof InvariantViolation) &&
              !(e instanceof Error && /has no version/.test(e.message))
            )
              throw e;
            expect(JSON.stringify(key)).toBe(before);
          }
          checkKey(key);
          for (const v of key.versions) {
            if (v.state !== 'enabled') expect(deks.get(v.id) ?? 0).toBe(0);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
