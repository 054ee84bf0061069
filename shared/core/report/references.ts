/**
 * Where a finding sits in the standards auditors ask about. Short pointers, not quotations:
 * the report names the clause so an assessor can look it up.
 */
export interface ComplianceReference {
  standard: 'PCI DSS' | 'NIST SP 800-57';
  /** Clause, with the older numbering where PCI DSS renumbered it. */
  ref: string;
  /** A few words saying what the clause is about. */
  topic: string;
}

export const REFERENCES = {
  pciCryptoperiod: {
    standard: 'PCI DSS',
    ref: 'v4.0 3.7.4 (v3.2.1 3.6.4)',
    topic: 'key changes at the end of the defined cryptoperiod',
  },
  pciRetire: {
    standard: 'PCI DSS',
    ref: 'v4.0 3.7.5 (v3.2.1 3.6.5)',
    topic: 'retirement or replacement of keys that are weakened, compromised or past their cryptoperiod',
  },
  pciStorage: {
    standard: 'PCI DSS',
    ref: 'v4.0 3.6.1.2 (v3.2.1 3.5.3)',
    topic: 'secret keys stored encrypted under a KEK or inside a secure cryptographic device (HSM)',
  },
  pciChange: {
    standard: 'PCI DSS',
    ref: 'v4.0 6.5.1',
    topic: 'changes to system components follow change control',
  },
  nistCryptoperiod: {
    standard: 'NIST SP 800-57',
    ref: 'Part 1 Rev. 5, 5.3',
    topic: 'cryptoperiods (originator-usage and recipient-usage periods)',
  },
  nistStates: {
    standard: 'NIST SP 800-57',
    ref: 'Part 1 Rev. 5, 7',
    topic: 'key states and transitions (active, suspended, deactivated, compromised, destroyed)',
  },
  nistProtection: {
    standard: 'NIST SP 800-57',
    ref: 'Part 1 Rev. 5, 6',
    topic: 'protection requirements for key information',
  },
  nistAlgorithm: {
    standard: 'NIST SP 800-57',
    ref: 'Part 1 Rev. 5, 5.6',
    topic: 'algorithm and key-size selection (security strength)',
  },
} as const satisfies Record<string, ComplianceReference>;
