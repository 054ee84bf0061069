import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../../shared/core/errors.js';
import type { RewrapShardMessage, WorkQueue } from '../../shared/core/ports/WorkQueue.js';
import { parseShardMessage } from '../../shared/core/usecases/scheduled.js';

/**
 * What every WorkQueue adapter must do. `setup` returns an empty queue and a way to take
 * what was delivered to it (removing it), as the bodies a worker would receive.
 */
export interface WorkQueueFixture {
  queue: WorkQueue;
  /** Receives and removes every message delivered so far; returns their bodies as text. */
  drain(): Promise<string[]>;
  /** The largest body the queue takes, in bytes (SQS 256 KiB, Storage Queues 64 KiB...). */
  maxMessageBytes: number;
  cleanup(): Promise<void>;
}

const shard = (i: number, extra: Partial<RewrapShardMessage> = {}): RewrapShardMessage => ({
  kind: 'rewrap-shard',
  jobId: `plan-1:2:orders#${String(i).padStart(3, '0')}`,
  providerId: 'aws-prod',
  verify: { sample: 0.01 },
  batchSize: 100,
  ...extra,
});

export function workQueueContract(name: string, setup: () => Promise<WorkQueueFixture>): void {
  describe(`WorkQueue contract: ${name}`, () => {
    let fx: WorkQueueFixture;
    beforeEach(async () => {
      fx = await setup();
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    it('delivers every message once, each body a shard message a worker accepts', async () => {
      const sent = Array.from({ length: 23 }, (_, i) => shard(i, i % 2 ? { ratePerSecond: 50 } : {}));
      await fx.queue.send(sent);
      const got = (await fx.drain()).map((b) => parseShardMessage(b));
      expect(got.map((m) => m.jobId).sort()).toEqual(sent.map((m) => m.jobId).sort());
      const byId = new Map(got.map((m) => [m.jobId, m]));
      for (const m of sent) expect(byId.get(m.jobId)).toEqual(m);
    });

    it('sending nothing delivers nothing', async () => {
      await fx.queue.send([]);
      expect(await fx.drain()).toEqual([]);
    });

    it('refuses a message too large for the queue, naming it, and delivers none of the batch', async () => {
      const huge = shard(1, { jobId: `j-${'x'.repeat(fx.maxMessageBytes)}` });
      const err = await fx.queue.send([shard(0), huge]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(/message 1 .*bytes/);
      expect(await fx.drain()).toEqual([]);
    });
  });
}
