import type { InvocationContext, Timer } from '@azure/functions';
import { reportCosts } from '../../shared/core/usecases/reportCosts.js';
import { log } from './log.js';
import { invoke } from './runtime.js';

export interface CostReportResult {
  period: string;
  inventoryId: string;
  keys: number;
  currency: string;
  total: number | null;
  knownTotal: number;
  unknownParts: number;
  findings: number;
}

/**
 * Timer trigger: what each key of the latest inventory costs this month (reportCosts). Every
 * key's figures go out as metric lines (`rekey.cost.monthly`, `rekey.key.billable_versions`...,
 * the key ref as a property, never a dimension); the summary and each finding are logged.
 * A failure throws; the next tick reports again.
 */
export function costReport(timer: Timer, context: InvocationContext) {
  return invoke(context, async ({ ctx }): Promise<CostReportResult> => {
    const r = await reportCosts(ctx);
    for (const f of r.findings) log('warn', 'cost finding', { ...f });
    for (const e of r.inventoryErrors) log('warn', 'provider missing from the inventory', { ...e });
    const result: CostReportResult = {
      period: r.period,
      inventoryId: r.inventoryId,
      keys: r.keys,
      currency: r.currency,
      total: r.total,
      knownTotal: r.knownTotal,
      unknownParts: r.unknownParts,
      findings: r.findings.length,
    };
    log('info', 'costs reported', { pastDue: Boolean(timer?.isPastDue), ...result });
    return result;
  });
}
