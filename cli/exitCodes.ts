import { RekeyError } from '../shared/core/errors.js';

/** Exit codes scripts can rely on (documented in the README). */
export const EXIT = {
  ok: 0,
  /** The command ran but something it did failed (an action, a DEK, a verification). */
  failed: 1,
  /** Bad input: arguments, policy file, key ref. Nothing was changed. */
  invalid: 2,
  /** An integrity check failed (audit chain, ciphertext). */
  integrity: 3,
  /** A named thing does not exist. */
  notFound: 4,
  /** Someone else holds the lease / a conditional write lost. */
  conflict: 5,
  /** A provider failed (unreachable, throttled past retries, refused). */
  provider: 6,
  /** A bug: unexpected error. */
  internal: 70,
} as const;

export function exitCodeFor(e: unknown): number {
  if (!(e instanceof RekeyError)) return EXIT.internal;
  switch (e.code) {
    case 'VALIDATION':
    case 'POLICY_INVALID':
    case 'CONFIG':
    case 'INVARIANT':
      return EXIT.invalid;
    case 'INTEGRITY':
      return EXIT.integrity;
    case 'NOT_FOUND':
      return EXIT.notFound;
    case 'CONFLICT':
      return EXIT.conflict;
    case 'PROVIDER':
      return EXIT.provider;
    default:
      return EXIT.failed;
  }
}
