export {
  createDocClient,
  type DocClient,
  type DynamoConnection,
  translateDynamoError,
} from './client.js';
export { DynamoDekStore, type DynamoDekStoreOptions } from './DynamoDekStore.js';
export { DynamoStateStore, type DynamoStateStoreOptions } from './DynamoStateStore.js';
export { ensureDynamoTable } from './ensureTable.js';
export {
  DEFAULT_DEK_ATTRIBUTES,
  DEFAULT_DEK_INDEX,
  dekTableDefinition,
  stateTableDefinition,
} from './tables.js';
