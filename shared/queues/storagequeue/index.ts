export {
  checkQueueName,
  createQueueClient,
  encodeMessage,
  ensureQueue,
  MAX_MESSAGE_BYTES,
} from './client.js';
export {
  type RekeyCloudEvent,
  StorageQueueEventBus,
  type StorageQueueEventBusOptions,
  toCloudEvent,
} from './StorageQueueEventBus.js';
export { StorageQueueWorkQueue, type StorageQueueWorkQueueOptions } from './StorageQueueWorkQueue.js';
