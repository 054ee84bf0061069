export { AzureTableStateStore, type AzureTableStateStoreOptions } from './AzureTableStateStore.js';
export {
  type AzureStorageConnection,
  createTableClient,
  isLoopback,
  translateStorageError,
} from './client.js';
export { escapeKey, unescapeKey } from './keys.js';
