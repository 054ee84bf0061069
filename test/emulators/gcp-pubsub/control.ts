import type { SimClock } from '../aws/clock.js';
import { startControlServer } from '../gcp-kms/control.js';
import type { GcpFaults } from '../gcp-kms/faults.js';
import type { PubSubState } from './state.js';

interface Controlled {
  clock: SimClock;
  faults: GcpFaults;
  state: PubSubState;
  requestCounts: Record<string, number>;
  reset(): void;
}

/**
 * HTTP side port for driving the Pub/Sub emulator when it runs in another process (main.ts):
 * the Cloud KMS emulator's endpoints (health, clock, faults, requests, reset) plus
 *   GET /subscriptions   backlog and delivery counters per subscription.
 */
export function startPubSubControlServer(
  port: number,
  c: Controlled,
): Promise<{ url: string; close(): Promise<void> }> {
  return startControlServer(port, c, {
    subscriptions: () => ({
      subscriptions: [...c.state.subscriptions.values()].map((s) => ({
        name: s.name,
        topic: s.topic,
        push: s.push?.endpoint ?? null,
        backlog: s.backlog.length,
        outstanding: s.backlog.filter((d) => d.ackId !== null).length,
        ...s.stats,
        pushResults: s.stats.pushResults.slice(-50),
      })),
    }),
  });
}
