export { pubsubClient, pubsubError, topicProject } from './client.js';
export { PubSubWorkQueue, type PubSubWorkQueueOptions } from './PubSubWorkQueue.js';
