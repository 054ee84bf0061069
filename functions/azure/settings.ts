import { ConfigError } from '../../shared/core/errors.js';
import type { AzureStorageConnection } from '../../shared/stores/azuretable/client.js';

/**
 * What a Function App's settings tell rekey. The storage connection follows the Functions
 * convention for a connection named `REKEY_STORAGE`: either a connection string in
 * `REKEY_STORAGE`, or identity-based settings `REKEY_STORAGE__accountName` (or
 * `__tableServiceUri` and `__queueServiceUri`) with the app's managed identity, plus
 * `REKEY_STORAGE__clientId` for a user-assigned one. The queue trigger reads the same settings.
 */
export interface AzureSettings {
  /** rekey.yaml: REKEY_CONFIG, default the file bundled beside the functions. */
  configPath: string;
  storage: StorageSetting;
  stateTable: string;
  workQueue: string;
  /** Where rekey's events go (CloudEvents messages); none when unset. */
  eventsQueue?: string;
  /** Re-wrap shards per job (REKEY_SHARDS, default 4). */
  shards: number;
  actor: string;
}

export type StorageSetting =
  | { connectionString: string }
  | { tableEndpoint: string; queueEndpoint: string; clientId?: string };

export const STORAGE_CONNECTION = 'REKEY_STORAGE';

function required(env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name]?.trim();
  if (!v) throw new ConfigError(`app setting ${name} is not set`);
  return v;
}

function storageSetting(env: NodeJS.ProcessEnv): StorageSetting {
  const cs = env[STORAGE_CONNECTION]?.trim();
  if (cs) return { connectionString: cs };
  const account = env[`${STORAGE_CONNECTION}__accountName`]?.trim();
  const table =
    env[`${STORAGE_CONNECTION}__tableServiceUri`]?.trim() ??
    (account && `https://${account}.table.core.windows.net`);
  const queue =
    env[`${STORAGE_CONNECTION}__queueServiceUri`]?.trim() ??
    (account && `https://${account}.queue.core.windows.net`);
  if (!table || !queue) {
    throw new ConfigError(
      `app setting ${STORAGE_CONNECTION} (a connection string) or ${STORAGE_CONNECTION}__accountName (managed identity) is not set`,
    );
  }
  const clientId = env[`${STORAGE_CONNECTION}__clientId`]?.trim();
  return { tableEndpoint: table, queueEndpoint: queue, ...(clientId ? { clientId } : {}) };
}

export function readSettings(env: NodeJS.ProcessEnv, defaultConfigPath: string): AzureSettings {
  const shardsText = env.REKEY_SHARDS?.trim() || '4';
  const shards = Number(shardsText);
  if (!Number.isInteger(shards) || shards < 1 || shards > 256) {
    throw new ConfigError(
      `app setting REKEY_SHARDS must be an integer 1-256, got ${JSON.stringify(shardsText)}`,
    );
  }
  const eventsQueue = env.REKEY_EVENTS_QUEUE?.trim();
  return {
    configPath: env.REKEY_CONFIG?.trim() || defaultConfigPath,
    storage: storageSetting(env),
    stateTable: required(env, 'REKEY_STATE_TABLE'),
    workQueue: required(env, 'REKEY_WORK_QUEUE'),
    ...(eventsQueue ? { eventsQueue } : {}),
    shards,
    actor: env.REKEY_ACTOR?.trim() || `azure-function:${env.WEBSITE_SITE_NAME ?? 'rekey'}`,
  };
}

/** Table and queue connections from the storage setting (identity: one credential for both). */
export async function storageConnections(
  s: StorageSetting,
): Promise<{ table: AzureStorageConnection; queue: AzureStorageConnection }> {
  if ('connectionString' in s) return { table: s, queue: s };
  const { DefaultAzureCredential, ManagedIdentityCredential } = await import('@azure/identity');
  const credential = s.clientId
    ? new ManagedIdentityCredential({ clientId: s.clientId })
    : new DefaultAzureCredential();
  return {
    table: { endpoint: s.tableEndpoint, credential },
    queue: { endpoint: s.queueEndpoint, credential },
  };
}
