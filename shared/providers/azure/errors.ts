import { NotFoundError, ProviderError, type RekeyError } from '../../core/errors.js';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
]);

interface RestLikeError {
  name?: string;
  message?: string;
  /** Key Vault's error code (from `{error: {code}}`) or a network code. */
  code?: string;
  statusCode?: number;
}

/**
 * Translates an Azure SDK failure into the core's errors: 404 becomes NotFoundError (whose
 * cause is the ProviderError), 429 is retryable and throttled, 408/5xx and network failures
 * are retryable, everything else (400 BadParameter, 401, 403 Forbidden, 409 Conflict) is not.
 * Key Vault error messages name keys and operations, never key material.
 */
export function toRekeyError(providerId: string, e: unknown, what: string): RekeyError {
  const err = (e ?? {}) as RestLikeError;
  const status = typeof err.statusCode === 'number' ? err.statusCode : undefined;
  const network = err.code !== undefined && NETWORK_CODES.has(err.code);
  const code =
    err.code ??
    (status !== undefined ? `HTTP${status}` : err.name === 'RestError' ? 'RestError' : 'ClientError');
  const throttled = status === 429;
  const retryable = throttled || network || status === 408 || (status !== undefined && status >= 500);
  const message = `${what}: ${status !== undefined ? `${status} ` : ''}${code}${err.message ? `: ${firstLine(err.message)}` : ''}`;
  const pe = new ProviderError(providerId, code, message, { retryable, throttled, cause: e });
  if (status === 404) return new NotFoundError(`${providerId}: ${message}`, { cause: pe });
  return pe;
}

/** A request Key Vault has no way to express (deleting a single version...). */
export function unsupported(providerId: string, message: string): ProviderError {
  return new ProviderError(providerId, 'UnsupportedOperation', message, { retryable: false });
}

function firstLine(s: string): string {
  const line = s.split('\n')[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}
