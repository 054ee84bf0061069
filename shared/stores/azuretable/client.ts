import type { TokenCredential } from '@azure/core-auth';
import { TableClient, type TableServiceClientOptions } from '@azure/data-tables';
import { ConfigError, ProviderError, RekeyError } from '../../core/errors.js';

/**
 * How to reach a storage account: a connection string (Azurite, keys kept in app settings) or
 * an endpoint with an Entra ID credential (managed identity, the production choice).
 */
export type AzureStorageConnection =
  | { connectionString: string }
  | { endpoint: string; credential: TokenCredential };

/** Loopback endpoints (Azurite) are plain http; anything else must be https. */
export function isLoopback(url: string): boolean {
  try {
    const h = new URL(url).hostname;
    return h === '127.0.0.1' || h === 'localhost' || h === '[::1]';
  } catch {
    return false;
  }
}

/** The table endpoint a connection string names (explicit TableEndpoint or account + suffix). */
function tableEndpointOf(connectionString: string): string | undefined {
  const parts = new Map(
    connectionString
      .split(';')
      .filter(Boolean)
      .map((p) => {
        const i = p.indexOf('=');
        return [p.slice(0, i).toLowerCase(), p.slice(i + 1)] as const;
      }),
  );
  return parts.get('tableendpoint');
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9]{2,62}$/;

export function checkTableName(table: unknown, what: string): string {
  if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
    throw new ConfigError(
      `${what}: table must be 3-63 letters and digits starting with a letter (Table Storage names), got ${JSON.stringify(table)}`,
    );
  }
  return table;
}

export function createTableClient(
  c: AzureStorageConnection,
  table: string,
  options: TableServiceClientOptions = {},
): TableClient {
  if ('connectionString' in c) {
    if (typeof c.connectionString !== 'string' || !c.connectionString.includes('=')) {
      throw new ConfigError('azure table store: the storage connection string is empty or malformed');
    }
    const endpoint = tableEndpointOf(c.connectionString);
    return TableClient.fromConnectionString(c.connectionString, table, {
      ...options,
      ...(endpoint && isLoopback(endpoint) ? { allowInsecureConnection: true } : {}),
    });
  }
  let url: URL;
  try {
    url = new URL(c.endpoint);
  } catch {
    throw new ConfigError(`azure table store: endpoint ${JSON.stringify(c.endpoint)} is not a URL`);
  }
  if (url.protocol !== 'https:' && !isLoopback(c.endpoint)) {
    throw new ConfigError(`azure table store: endpoint ${c.endpoint} must be https`);
  }
  return new TableClient(c.endpoint, table, c.credential, {
    ...options,
    ...(isLoopback(c.endpoint) ? { allowInsecureConnection: true } : {}),
  });
}

interface RestLikeError {
  name?: string;
  code?: string;
  statusCode?: number;
  message?: string;
  details?: { odataError?: { code?: string } };
}

const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND']);

export function statusOf(e: unknown): number {
  return (e as RestLikeError | undefined)?.statusCode ?? 0;
}

/** The service's error code (`EntityAlreadyExists`, `UpdateConditionNotSatisfied`...), when it sent one. */
function serviceCode(e: RestLikeError): string | undefined {
  if (e.code && !NETWORK.has(e.code)) return e.code;
  const odata = e.details?.odataError?.code;
  if (odata) return odata;
  const m = /"code"\s*:\s*"([A-Za-z]+)"/.exec(e.message ?? '');
  return m?.[1];
}

/**
 * Turns a storage SDK failure into a rekey error. Throttling (429, 503 ServerBusy) and 5xx or
 * network failures are retryable; a missing table or refused authorization is configuration.
 * Messages carry the status and the service's code, never entity values.
 */
export function translateStorageError(e: unknown, what: string, service = 'azure-table'): Error {
  if (e instanceof RekeyError) return e;
  const err = (e ?? {}) as RestLikeError;
  const status = err.statusCode ?? 0;
  const code = (err.code && NETWORK.has(err.code) ? err.code : serviceCode(err)) ?? `HTTP${status}`;
  const msg = `${what}: ${status ? `HTTP ${status} ` : ''}${code}`;
  if (code === 'TableNotFound' || code === 'QueueNotFound') {
    return new ConfigError(`${msg} (create it, or check the name in the app settings)`, { cause: e });
  }
  if (status === 401 || status === 403) {
    return new ConfigError(`${msg}: the identity is not allowed (check its storage role assignment)`, {
      cause: e,
    });
  }
  const throttled = status === 429 || (status === 503 && code === 'ServerBusy');
  const retryable = throttled || status >= 500 || status === 408 || NETWORK.has(code) || status === 0;
  return new ProviderError(service, code, msg, { retryable, throttled, cause: e });
}

export async function guarded<T>(what: string, fn: () => Promise<T>, service = 'azure-table'): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw translateStorageError(e, what, service);
  }
}
