import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConfigError, ConflictError, ProviderError, RekeyError } from '../../core/errors.js';

export type DocClient = DynamoDBDocumentClient;

export interface DynamoConnection {
  region?: string;
  /** Endpoint override (DynamoDB Local, dynalite, a VPC endpoint). */
  endpoint?: string;
  /** SDK attempts per call, including the first (the SDK backs off between them). Default 3. */
  maxAttempts?: number;
  /** Extra SDK client settings (credentials for tests, a custom request handler...). */
  client?: Omit<DynamoDBClientConfig, 'region' | 'endpoint' | 'maxAttempts'>;
}

/** A document client: plain JS values in and out; Uint8Array maps to binary. */
export function createDocClient(c: DynamoConnection = {}): DocClient {
  const client = new DynamoDBClient({
    ...(c.client ?? {}),
    ...(c.region ? { region: c.region } : {}),
    ...(c.endpoint ? { endpoint: c.endpoint } : {}),
    maxAttempts: c.maxAttempts ?? 3,
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertEmptyValues: false },
    unmarshallOptions: { wrapNumbers: false },
  });
}

const THROTTLED = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
]);
const TRANSIENT = new Set([
  'InternalServerError',
  'ServiceUnavailable',
  'TransactionConflictException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
]);

interface SdkLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** True for the error DynamoDB returns when a ConditionExpression does not hold. */
export function isConditionFailure(e: unknown): boolean {
  return (e as SdkLikeError | undefined)?.name === 'ConditionalCheckFailedException';
}

/**
 * Turns an SDK failure into a rekey error. Throttling is retryable and flagged as such;
 * 5xx and network failures are retryable; a missing table is a configuration error; a failed
 * condition that reaches here is a conflict. Messages hold the error name and the service's
 * message, never item values.
 */
export function translateDynamoError(e: unknown, what: string): Error {
  if (e instanceof RekeyError) return e;
  const err = (e ?? {}) as SdkLikeError;
  const code = err.code && /^E[A-Z]+$/.test(err.code) ? err.code : (err.name ?? 'UnknownError');
  const msg = typeof err.message === 'string' ? err.message : String(e);
  if (code === 'ConditionalCheckFailedException')
    return new ConflictError(`${what}: condition failed`, { cause: e });
  if (code === 'ResourceNotFoundException') return new ConfigError(`${what}: ${msg}`, { cause: e });
  if (code === 'CredentialsProviderError' || code === 'UnrecognizedClientException') {
    return new ConfigError(`${what}: no usable AWS credentials (${code})`, { cause: e });
  }
  const throttled = THROTTLED.has(code);
  const status = err.$metadata?.httpStatusCode ?? 0;
  const retryable = throttled || TRANSIENT.has(code) || status >= 500;
  return new ProviderError('dynamodb', code, `${what}: ${msg}`, { retryable, throttled, cause: e });
}

export async function guarded<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw translateDynamoError(e, what);
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep the input order. */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}
