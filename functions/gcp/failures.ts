import {
  ConfigError,
  IntegrityError,
  NotFoundError,
  PolicyError,
  ProviderError,
  ValidationError,
} from '../../shared/core/errors.js';

/**
 * Whether delivering the same event again could end differently. A malformed message, a job or
 * key that does not exist, a provider's definite refusal: no. Those are logged and acknowledged
 * (the function returns), so Pub/Sub does not retry them for days. Anything else (a database
 * or provider that is briefly away, a lease held elsewhere) fails the invocation, and the
 * trigger's retry policy delivers it again, up to the dead-letter topic.
 */
export function isPermanent(e: unknown): boolean {
  if (e instanceof ProviderError) return !e.retryable;
  return (
    e instanceof ValidationError ||
    e instanceof NotFoundError ||
    e instanceof ConfigError ||
    e instanceof PolicyError ||
    e instanceof IntegrityError
  );
}
