import type { InvocationContext, Timer } from '@azure/functions';
import { runScheduledCycle } from '../../shared/core/usecases/scheduled.js';
import { log } from './log.js';
import { invoke } from './runtime.js';

/**
 * Timer trigger: one scheduled cycle (inventory -> plan -> apply, re-wraps queued as shards).
 * A cycle that finds another one running reports `busy` and does nothing.
 */
export function scheduledCycle(timer: Timer, context: InvocationContext) {
  return invoke(context, async ({ ctx, settings }) => {
    const report = await runScheduledCycle(ctx, { shards: settings.shards });
    const apply = report.apply;
    log('info', 'scheduled cycle', {
      status: report.status,
      pastDue: Boolean(timer?.isPastDue),
      planId: report.planId ?? null,
      actions: report.actions ?? 0,
      findings: report.findings ?? 0,
      queued: report.queued,
      ...(apply
        ? {
            run: apply.runId,
            runStatus: apply.status,
            totals: apply.totals,
            outcomes: apply.outcomes.map((o) => ({
              index: o.index,
              type: o.type,
              keyRef: o.keyRef,
              status: o.status,
              ...(o.error ? { error: o.error } : {}),
            })),
          }
        : {}),
    });
    ctx.metrics?.record([
      {
        name: 'rekey.cycle.actions',
        value: report.actions ?? 0,
        unit: 'Count',
        dimensions: { status: report.status },
      },
      {
        name: 'rekey.cycle.queued',
        value: report.queued,
        unit: 'Count',
        dimensions: { status: report.status },
      },
    ]);
    return report;
  });
}
