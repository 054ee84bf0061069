import { describe, expect, it } from 'vitest';
import { eventBusOnFirstUse, workQueueOnFirstUse } from '../../../functions/aws/onFirstUse.js';
import type { EventBus, RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import type { WorkMessage, WorkQueue } from '../../../shared/core/ports/WorkQueue.js';

describe('ports built on first use', () => {
  it('load nothing until used, then once, however many calls come at once', async () => {
    const sent: WorkMessage[][] = [];
    let loads = 0;
    const queue = workQueueOnFirstUse(async () => {
      loads++;
      return { send: async (m) => void sent.push(m) } satisfies WorkQueue;
    });
    expect(loads).toBe(0);
    const msg = { kind: 'rewrap-shard', body: {} } as unknown as WorkMessage;
    await Promise.all([queue.send([msg]), queue.send([msg]), queue.send([msg])]);
    await queue.send([msg]);
    expect(loads).toBe(1);
    expect(sent).toHaveLength(4);
  });

  it('a load that fails fails that call, and the next call loads again', async () => {
    const published: RekeyEvent[][] = [];
    let loads = 0;
    const bus = eventBusOnFirstUse(async () => {
      loads++;
      if (loads === 1) throw new Error('chunk not found');
      return { publish: async (e) => void published.push(e) } satisfies EventBus;
    });
    await expect(bus.publish([])).rejects.toThrow('chunk not found');
    await bus.publish([]);
    await bus.publish([]);
    expect(loads).toBe(2);
    expect(published).toHaveLength(2);
  });
});
