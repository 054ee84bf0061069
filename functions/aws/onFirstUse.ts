import type { EventBus } from '../../shared/core/ports/EventBus.js';
import type { WorkQueue } from '../../shared/core/ports/WorkQueue.js';

/**
 * Ports whose adapter is built by its first use: the adapter's module, and the SDK client it
 * brings, are then a chunk of their own (scripts/bundle/aws.mjs), loaded by the first publish or
 * send of the execution environment. For what most invocations of a function never do: the
 * scheduler sends shards and publishes events only in cycles that act, a worker publishes
 * only when its shard is the one that completes a job, and the events function only when it
 * responds to a compromise. A failed load is tried again next time.
 */
function once<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () => {
    loaded ??= load().catch((e: unknown) => {
      loaded = undefined;
      throw e;
    });
    return loaded;
  };
}

export function eventBusOnFirstUse(load: () => Promise<EventBus>): EventBus {
  const bus = once(load);
  return { publish: async (events) => (await bus()).publish(events) };
}

export function workQueueOnFirstUse(load: () => Promise<WorkQueue>): WorkQueue {
  const queue = once(load);
  return { send: async (messages) => (await queue()).send(messages) };
}

/** rekey's EventBridge bus: the adapter and its SDK client load with the first publish. */
export function eventBridgeBusOnFirstUse(eventBusName: string): EventBus {
  return eventBusOnFirstUse(async () => {
    const { EventBridgeEventBus } = await import('../../shared/telemetry/eventbridge/EventBridgeEventBus.js');
    return new EventBridgeEventBus({ eventBusName });
  });
}
