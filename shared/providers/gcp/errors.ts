import { NotFoundError, ProviderError, type RekeyError } from '../../core/errors.js';

/** gRPC status codes by number (google.rpc.Code), so this module needs no gRPC import. */
const CODE_NAMES: Record<number, string> = {
  0: 'OK',
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};
const RETRYABLE = new Set(['UNAVAILABLE', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'INTERNAL']);

interface GrpcLikeError {
  code?: number | string;
  details?: string;
  message?: string;
}

/**
 * Translates a Cloud KMS client failure into the core's errors: NOT_FOUND becomes a
 * NotFoundError (whose cause is the ProviderError); everything else a ProviderError whose
 * providerCode is the gRPC status name. UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL and
 * RESOURCE_EXHAUSTED (throttled) are retryable; the rest are not.
 */
export function toRekeyError(providerId: string, e: unknown, what: string): RekeyError {
  const err = (e ?? {}) as GrpcLikeError;
  const name =
    typeof err.code === 'number'
      ? (CODE_NAMES[err.code] ?? `CODE_${err.code}`)
      : String(err.code ?? 'UNKNOWN');
  // Status details name resources, never payloads; the client library's message repeats them.
  const detail = err.details || err.message || '';
  const message = `${what}: ${name}${detail ? `: ${detail}` : ''}`;
  const throttled = name === 'RESOURCE_EXHAUSTED';
  const pe = new ProviderError(providerId, name, message, {
    retryable: RETRYABLE.has(name),
    throttled,
    cause: e,
  });
  if (name === 'NOT_FOUND') return new NotFoundError(`${providerId}: ${message}`, { cause: pe });
  return pe;
}

/** A response whose CRC32C fields do not check out: discard it and retry a limited number of times. */
export function integrityFailure(providerId: string, message: string): ProviderError {
  return new ProviderError(providerId, 'IntegrityCheckFailed', message, { retryable: true });
}
