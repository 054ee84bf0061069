import { NotFoundError, ProviderError, type RekeyError } from '../../core/errors.js';

/** KMS error names that a later attempt can fix. */
const RETRYABLE = new Set([
  'ThrottlingException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'InternalFailure',
  'ServiceUnavailable',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);
const THROTTLED = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

interface SdkLikeError {
  name?: string;
  message?: string;
  code?: string;
  $fault?: 'client' | 'server';
  $metadata?: { httpStatusCode?: number };
}

/**
 * Translates an AWS SDK failure into the core's errors. `NotFoundException` becomes a
 * NotFoundError (what the port promises for a missing key) whose cause is the ProviderError;
 * everything else becomes a ProviderError whose providerCode is the AWS error name.
 */
export function toRekeyError(providerId: string, e: unknown, what: string): RekeyError {
  const err = (e ?? {}) as SdkLikeError;
  const name = err.name && err.name !== 'Error' ? err.name : (err.code ?? 'UnknownError');
  const status = err.$metadata?.httpStatusCode;
  const network = err.code !== undefined && NETWORK_CODES.has(err.code);
  const throttled = THROTTLED.has(name) || status === 429;
  const retryable = throttled || network || RETRYABLE.has(name) || (status !== undefined && status >= 500);
  // SDK messages carry no key material; they can name the key, which is fine.
  const message = `${what}: ${name}${err.message ? `: ${err.message}` : ''}`;
  const pe = new ProviderError(providerId, name, message, { retryable, throttled, cause: e });
  if (name === 'NotFoundException') return new NotFoundError(`${providerId}: ${message}`, { cause: pe });
  return pe;
}

/** A request AWS KMS has no way to express (per-version state, per-version deletion...). */
export function unsupported(providerId: string, message: string): ProviderError {
  return new ProviderError(providerId, 'UnsupportedOperation', message, { retryable: false });
}
