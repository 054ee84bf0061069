import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { ScheduledEvent } from 'aws-lambda';
import { reportCosts } from '../../shared/core/usecases/reportCosts.js';
import { awsRuntime, errorFields, makeLogger, makeMetrics } from './runtime.js';

/**
 * EventBridge schedule -> what each key of the latest inventory costs this month. Per-key
 * figures go out as EMF metrics (the key ref as metadata, never a dimension) for CloudWatch
 * dashboards; the log line carries the totals and the cost findings.
 */
const logger = makeLogger('costs');
const metrics = makeMetrics();
// Costs come from the inventory (taken from the providers when none is stored), never from DEKs.
const runtime = awsRuntime({ without: { stores: true } });

export interface CostsResult {
  period: string;
  inventoryId: string;
  keys: number;
  currency: string;
  total: number | null;
  knownTotal: number;
  unknownParts: number;
  findings: number;
}

async function run(event: ScheduledEvent): Promise<CostsResult> {
  const ctx = await runtime.context();
  const r = await reportCosts(ctx);
  const result: CostsResult = {
    period: r.period,
    inventoryId: r.inventoryId,
    keys: r.keys,
    currency: r.currency,
    total: r.total,
    knownTotal: r.knownTotal,
    unknownParts: r.unknownParts,
    findings: r.findings.length,
  };
  for (const f of r.findings) logger.warn('cost finding', { ...f });
  for (const e of r.inventoryErrors) logger.warn('provider missing from the inventory', { ...e });
  metrics.addMetric('rekey.costs.runs', MetricUnit.Count, 1);
  logger.info('costs reported', { scheduledAt: event.time, ...result });
  return result;
}

export const handler = middy(run)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }))
  .onError((request) => {
    logger.error('cost report failed', errorFields(request.error));
  });
