import type { CloudEvent } from '@google-cloud/functions-framework';
import { ValidationError } from '../../shared/core/errors.js';
import { reportCosts } from '../../shared/core/usecases/reportCosts.js';
import { errorFields, logger } from './log.js';
import { readPubSubEvent } from './pubsubEvent.js';
import { rekey } from './runtime.js';

const log = logger('rekey-costs');

/**
 * Cloud Scheduler -> Pub/Sub (costs topic) -> this function: what each key of the latest
 * inventory costs this month (reportCosts), its figures written as metric log entries
 * (`rekey.cost.monthly`, `rekey.key.billable_versions`..., summed by log-based metrics; the key
 * ref in the entry, never a label), the summary and every finding logged. The message may be
 * empty or `{"period": "YYYY-MM"}`. A failure fails the invocation; the next schedule reports again.
 */
export async function rekeyCosts(event: CloudEvent<unknown>): Promise<void> {
  let period: string | undefined;
  try {
    period = periodFrom(readPubSubEvent(event).data);
  } catch (e) {
    log.write('ERROR', 'scheduler message refused; no cost report', {
      eventId: event?.id,
      ...errorFields(e),
    });
    return;
  }
  const { ctx } = await rekey();
  const r = await reportCosts(ctx, period ? { period } : {});
  for (const f of r.findings) log.write('WARNING', `cost finding ${f.kind}`, { finding: f });
  for (const e of r.inventoryErrors) log.write('WARNING', 'provider missing from the inventory', { ...e });
  log.write('INFO', 'costs reported', {
    eventId: event.id,
    report: {
      period: r.period,
      inventoryId: r.inventoryId,
      keys: r.keys,
      currency: r.currency,
      total: r.total,
      knownTotal: r.knownTotal,
      unknownParts: r.unknownParts,
      findings: r.findings.length,
    },
  });
}

function periodFrom(data: Buffer): string | undefined {
  const text = data.toString('utf8').trim();
  if (text === '') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ValidationError('scheduler message: data is not JSON');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new ValidationError('scheduler message: data must be a JSON object');
  const period = (body as { period?: unknown }).period;
  if (period === undefined) return undefined;
  if (typeof period !== 'string' || !/^\d{4}-(0[1-9]|1[0-2])$/.test(period))
    throw new ValidationError('scheduler message: period must be a month, YYYY-MM');
  return period;
}
