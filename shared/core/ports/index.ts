export * from './Clock.js';
export type * from './DekStore.js';
export * from './EventBus.js';
export type * from './KeyProvider.js';
export type * from './StateStore.js';
export type * from './WorkQueue.js';
