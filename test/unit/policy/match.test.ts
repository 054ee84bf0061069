import { describe, expect, it } from 'vitest';
import type { ManagedKey } from '../../../shared/core/domain/key.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { globMatcher } from '../../../shared/core/policy/glob.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { matchesPolicy, policyFor } from '../../../shared/core/policy/match.js';
import type { Policy, PolicyMatch } from '../../../shared/core/policy/types.js';

function key(over: Partial<ManagedKey> = {}): ManagedKey {
  return {
    ref: 'local://orders-2024',
    providerType: 'local',
    providerId: 'local-dev',
    name: 'orders-2024',
    tags: { 'data-class': 'pci', team: 'payments/core' },
    protection: 'software',
    algorithm: 'AES_256',
    enabled: true,
    primaryVersion: '1',
    versions: [{ id: '1', state: 'enabled', createdAt: '2026-01-01T00:00:00Z' }],
    createdAt: '2026-01-01T00:00:00Z',
    ...over,
  };
}

const policy = (match: PolicyMatch, name = 'p', index = 0): Policy => ({ name, index, match });

describe('matchesPolicy', () => {
  it('matches every key with an empty match', () => {
    expect(matchesPolicy(policy({}), key())).toBe(true);
  });

  it('matches on provider id, protection and exact key refs', () => {
    expect(matchesPolicy(policy({ provider: ['aws', 'local-dev'] }), key())).toBe(true);
    expect(matchesPolicy(policy({ provider: ['aws'] }), key())).toBe(false);
    expect(matchesPolicy(policy({ protection: ['hsm', 'software'] }), key())).toBe(true);
    expect(matchesPolicy(policy({ protection: ['hsm'] }), key())).toBe(false);
    expect(matchesPolicy(policy({ keys: ['local://orders-2024'] }), key())).toBe(true);
    expect(matchesPolicy(policy({ keys: ['local://orders'] }), key())).toBe(false);
  });

  it('matches name globs (any of them); * spans slashes and dots', () => {
    expect(matchesPolicy(policy({ name: ['billing-*', 'orders-*'] }), key())).toBe(true);
    expect(matchesPolicy(policy({ name: ['billing-*'] }), key())).toBe(false);
    expect(matchesPolicy(policy({ name: ['orders-20??'] }), key())).toBe(true);
    expect(matchesPolicy(policy({ name: ['orders-{2023,2024}'] }), key())).toBe(true);
    expect(matchesPolicy(policy({ name: ['web/*'] }), key({ name: 'web/session/a' }))).toBe(true);
    expect(matchesPolicy(policy({ name: ['*'] }), key({ name: '.hidden' }))).toBe(true);
    // A glob matches the whole name, not a substring.
    expect(matchesPolicy(policy({ name: ['orders'] }), key())).toBe(false);
  });

  it('requires every listed tag, with glob values', () => {
    expect(matchesPolicy(policy({ tags: { 'data-class': 'pci' } }), key())).toBe(true);
    expect(matchesPolicy(policy({ tags: { 'data-class': 'p*', team: 'payments*' } }), key())).toBe(true);
    expect(matchesPolicy(policy({ tags: { 'data-class': 'pci', team: 'search' } }), key())).toBe(false);
    expect(matchesPolicy(policy({ tags: { owner: '*' } }), key())).toBe(false);
    // Inherited object properties are not tags.
    expect(matchesPolicy(policy({ tags: { constructor: '*' } }), key())).toBe(false);
    expect(matchesPolicy(policy({ tags: { env: '*' } }), key({ tags: { env: '' } }))).toBe(false);
  });

  it('requires every criterion to hold', () => {
    const m: PolicyMatch = { provider: ['local-dev'], tags: { 'data-class': 'pci' }, name: ['orders-*'] };
    expect(matchesPolicy(policy(m), key())).toBe(true);
    expect(matchesPolicy(policy(m), key({ providerId: 'other' }))).toBe(false);
    expect(matchesPolicy(policy(m), key({ tags: {} }))).toBe(false);
    expect(matchesPolicy(policy(m), key({ name: 'users' }))).toBe(false);
  });
});

describe('policyFor', () => {
  const config = loadConfig(
    [
      'version: 1',
      'providers: { local-dev: { type: local }, aws: { type: aws-kms, regions: [us-east-1] } }',
      'policies:',
      '  - { name: pci, match: { tags: { data-class: pci } } }',
      '  - { name: orders, match: { name: ["orders-*"] } }',
      '  - { name: aws-only, match: { provider: [aws] } }',
      '  - { name: all, match: {} }',
    ].join('\n'),
    'rekey.yaml',
  );

  it('returns the first matching policy in file order and the shadowed ones', () => {
    const r = policyFor(config, key());
    expect(r.policy?.name).toBe('pci');
    expect(r.shadowed.map((p) => p.name)).toEqual(['orders', 'all']);
    const plain = policyFor(config, key({ name: 'users', tags: {} }));
    expect(plain.policy?.name).toBe('all');
    expect(plain.shadowed).toEqual([]);
  });

  it('returns no policy when nothing matches', () => {
    const none = loadConfig(
      [
        'version: 1',
        'providers: { a: { type: local } }',
        'policies: [{ name: x, match: { name: [nope] } }]',
      ].join('\n'),
      'f',
    );
    expect(policyFor(none, key())).toEqual({ shadowed: [] });
  });
});

describe('globMatcher', () => {
  it('compiles once per glob', () => {
    expect(globMatcher('cache-*')).toBe(globMatcher('cache-*'));
  });
  it('rejects invalid globs with a ValidationError', () => {
    expect(() => globMatcher('a[')).toThrow(ValidationError);
    expect(() => globMatcher('')).toThrow(ValidationError);
  });
});
