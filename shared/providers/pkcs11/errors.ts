import { ProviderError, RekeyError } from '../../core/errors.js';

export const PROVIDER = 'pkcs11';

/**
 * Return values a later attempt can succeed after (device busy, session lost, memory pressure).
 * Everything else (bad PIN, wrong key, refused function, tampered data) is permanent.
 */
const RETRYABLE = new Set([
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_DEVICE_REMOVED',
  'CKR_FUNCTION_FAILED',
  'CKR_HOST_MEMORY',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_COUNT',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_OPERATION_ACTIVE',
]);

const THROTTLED = new Set(['CKR_SESSION_COUNT', 'CKR_DEVICE_MEMORY']);

/** The CKR_* name of a pkcs11js error, or null if the error did not come from the module. */
export function ckrName(e: unknown): string | null {
  if (!(e instanceof Error) || e instanceof RekeyError) return null;
  const m = /\b(CKR_[A-Z0-9_]+)\b/.exec(e.message);
  return m ? m[1]! : null;
}

export function isCkr(e: unknown, ...names: string[]): boolean {
  const n = ckrName(e);
  return n !== null && names.includes(n);
}

/**
 * Translates a module error into a ProviderError whose providerCode is the CKR_* name.
 * `what` says which operation on which key failed; it never holds key material or the PIN.
 */
export function translate(e: unknown, what: string): RekeyError {
  if (e instanceof RekeyError) return e;
  const code = ckrName(e);
  if (code === null) {
    const msg = e instanceof Error ? e.message : String(e);
    return new ProviderError(PROVIDER, 'NATIVE_ERROR', `${what}: ${msg}`, { cause: e });
  }
  return new ProviderError(PROVIDER, code, `${what}: ${code}${hint(code)}`, {
    retryable: RETRYABLE.has(code),
    throttled: THROTTLED.has(code),
    cause: e,
  });
}

function hint(code: string): string {
  switch (code) {
    case 'CKR_PIN_INCORRECT':
      return ' (wrong PIN)';
    case 'CKR_PIN_LOCKED':
      return ' (the user PIN is locked; the security officer must reset it)';
    case 'CKR_MECHANISM_INVALID':
      return ' (the token does not support this mechanism)';
    case 'CKR_KEY_FUNCTION_NOT_PERMITTED':
      return ' (the key version is disabled or scheduled for destruction)';
    default:
      return '';
  }
}
