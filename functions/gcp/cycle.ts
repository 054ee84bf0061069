import type { CloudEvent } from '@google-cloud/functions-framework';
import { ValidationError } from '../../shared/core/errors.js';
import { type CycleReport, runScheduledCycle } from '../../shared/core/usecases/scheduled.js';
import { errorFields, logger } from './log.js';
import { readPubSubEvent } from './pubsubEvent.js';
import { rekey } from './runtime.js';

const log = logger('rekey-cycle');

/**
 * Cloud Scheduler -> Pub/Sub (cycle topic) -> this function: one scheduled cycle (inventory,
 * plan, apply), its re-wraps sent as shards to the re-wrap topic. The scheduler's message may
 * be empty or `{"shards": n}`. A cycle that finds another one running reports `busy` and ends.
 */
export async function rekeyCycle(event: CloudEvent<unknown>): Promise<void> {
  let shards: number | undefined;
  try {
    shards = shardsFrom(readPubSubEvent(event).data);
  } catch (e) {
    log.write('ERROR', 'scheduler message refused; no cycle run', { eventId: event?.id, ...errorFields(e) });
    return;
  }
  const { ctx, settings } = await rekey();
  const report = await runScheduledCycle(ctx, { shards: shards ?? settings.shards });
  log.write(report.apply?.status === 'failed' ? 'WARNING' : 'INFO', `cycle ${report.status}`, {
    eventId: event.id,
    report: summary(report),
  });
  ctx.metrics?.record([
    {
      name: 'rekey.cycle.actions',
      value: report.actions ?? 0,
      unit: 'Count',
      dimensions: { status: report.status },
    },
    { name: 'rekey.cycle.queued', value: report.queued, unit: 'Count', dimensions: {} },
    { name: 'rekey.cycle.rotated', value: report.apply?.totals.rotated ?? 0, unit: 'Count', dimensions: {} },
    { name: 'rekey.cycle.failed', value: report.apply?.totals.failed ?? 0, unit: 'Count', dimensions: {} },
  ]);
}

function shardsFrom(data: Buffer): number | undefined {
  const text = data.toString('utf8').trim();
  if (text === '') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ValidationError('scheduler message: data is not JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ValidationError('scheduler message: data must be a JSON object');
  }
  const shards = (body as { shards?: unknown }).shards;
  if (shards === undefined) return undefined;
  if (!Number.isInteger(shards) || (shards as number) < 1 || (shards as number) > 1000) {
    throw new ValidationError('scheduler message: shards must be an integer from 1 to 1000');
  }
  return shards as number;
}

/** The cycle report for the log: totals and one line per action (ids and refs, no secrets). */
function summary(r: CycleReport): Record<string, unknown> {
  return {
    status: r.status,
    planId: r.planId,
    actions: r.actions,
    findings: r.findings,
    queued: r.queued,
    ...(r.apply
      ? {
          apply: { runId: r.apply.runId, status: r.apply.status, totals: r.apply.totals },
          outcomes: r.apply.outcomes.slice(0, 100).map((o) => ({
            type: o.type,
            keyRef: o.keyRef,
            status: o.status,
            ...(o.error ? { error: o.error } : {}),
          })),
        }
      : {}),
  };
}
