import { describe, expect, it } from 'vitest';
import {
  approvalRequirement,
  configGates,
  loweredRotations,
  rotationDays,
} from '../../../shared/core/governance/rules.js';
import { loadConfig } from '../../../shared/core/policy/load.js';

const config = (approvals: string, policies: string) =>
  loadConfig(
    `version: 1
providers: { local: { type: local } }
${approvals}
policies:
${policies}`,
    'rekey.yaml',
  );

const POLICIES = `  - name: strict
    match: { name: [pay-*] }
    rotate: { every: P30D }
    approvals: { require: [disable, import], quorum: 3 }
    retire: { destroyAfter: P90D, approvals: 2 }
  - name: relaxed
    match: {}
    rotate: { every: P1Y }
`;

describe('approval requirements', () => {
  it('nothing is required without rules', () => {
    const c = config(
      '',
      POLICIES.replace('    approvals: { require: [disable, import], quorum: 3 }\n', '').replace(
        ', approvals: 2',
        '',
      ),
    );
    for (const a of ['destroy', 'disable', 'policy_change', 'import', 'rotation_period_lowered'] as const)
      expect(approvalRequirement(c, a, { policy: 'strict' })).toBeNull();
  });

  it('combines global, policy and retire rules; the largest quorum wins', () => {
    const c = config(
      `approvals:
  approvers: [a, b, c, d]
  quorum: 2
  expiry: P1D
  require: [destroy, policy_change]`,
      POLICIES,
    );
    expect(approvalRequirement(c, 'disable', { policy: 'strict' })).toMatchObject({
      quorum: 3,
      approvers: ['a', 'b', 'c', 'd'],
      because: ['policy strict requires approvals for disable'],
    });
    expect(approvalRequirement(c, 'disable', { policy: 'relaxed' })).toBeNull();
    expect(approvalRequirement(c, 'destroy', { policy: 'relaxed' })).toMatchObject({ quorum: 2 });
    expect(approvalRequirement(c, 'destroy', { policy: 'strict', minQuorum: 4 })?.quorum).toBe(4);
    expect(approvalRequirement(c, 'destroy', { policy: 'strict' })?.because).toEqual([
      'approvals.require names destroy',
      'policy strict retire.approvals is 2',
    ]);
    expect(approvalRequirement(c, 'destroy', { policy: 'strict' })?.expiry.text).toBe('P1D');
    expect(approvalRequirement(c, 'policy_change')?.quorum).toBe(2);
  });

  it('an old-style retire.approvals or a plan minimum alone still requires approvals (with no approvers)', () => {
    const c = config('', POLICIES.replace('    approvals: { require: [disable, import], quorum: 3 }\n', ''));
    expect(approvalRequirement(c, 'destroy', { policy: 'strict' })).toMatchObject({
      quorum: 2,
      approvers: [],
    });
    expect(approvalRequirement(c, 'destroy', { policy: 'relaxed', minQuorum: 1 })).toMatchObject({
      quorum: 1,
    });
  });
});

describe('config change gates', () => {
  it('records what guards the file, and finds lowered rotation periods among guarded policies', () => {
    const c = config(
      `approvals:
  approvers: [a, b, c]
  require: [rotation_period_lowered]`,
      POLICIES,
    );
    expect(configGates(c)).toEqual({
      rotationLowered: {
        quorum: 2,
        approvers: ['a', 'b', 'c'],
        expiry: 'P3D',
        policies: ['strict', 'relaxed'],
      },
    });
    expect(rotationDays(c)).toEqual({ strict: 30, relaxed: 365 });
    const next = config(
      'approvals: { approvers: [a, b, c] }',
      POLICIES.replace('P30D', 'P7D').replace('P1Y', 'P2Y'),
    );
    expect(loweredRotations(rotationDays(c), next, ['strict', 'relaxed'])).toEqual([
      { policy: 'strict', fromDays: 30, toDays: 7 },
    ]);
    expect(loweredRotations(rotationDays(c), next, ['relaxed'])).toEqual([]);
  });
});

describe('config validation of approvals', () => {
  it('names what is wrong, where', () => {
    expect(() =>
      config(
        '',
        `  - name: p
    match: {}
    approvals: { require: [destroy] }
    onCompromise: { destroy: true }`,
      ),
    ).toThrow(
      'rekey.yaml:7:16: policies[0].approvals: needs approvers: add a top-level approvals block (approvers, quorum)\nrekey.yaml:8:30: policies[0].onCompromise.destroy: needs approvers',
    );
    expect(() =>
      config(
        `approvals: { approvers: [a], quorum: 1 }
incidents: { sources: [x], signing: {} }`,
        `  - name: p
    match: {}
    approvals: { require: [import], quorum: 2 }`,
      ),
    ).toThrow(
      /incidents.signing: name exactly one of hmac or jws[\s\S]*policies\[0\].approvals: needs 2 approval\(s\) but approvals.approvers names 1/,
    );
  });
});
