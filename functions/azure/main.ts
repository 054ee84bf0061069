import { app } from '@azure/functions';
import { approvals } from './approvals.js';
import { compromiseEvents } from './compromiseEvents.js';
import { costReport } from './costReport.js';
import { keyVaultEvents } from './keyVaultEvents.js';
import { rewrapWorker } from './rewrapWorker.js';
import { scheduledCycle } from './scheduledCycle.js';
import { STORAGE_CONNECTION } from './settings.js';

/**
 * rekey's Azure Functions (v4 programming model). `%NAME%` is resolved by the host from the
 * app settings, so the schedules and the queue name live in one place (infra/azure).
 */
app.timer('scheduledCycle', {
  schedule: '%REKEY_SCHEDULE%',
  handler: scheduledCycle,
});

app.storageQueue('rewrapWorker', {
  queueName: '%REKEY_WORK_QUEUE%',
  connection: STORAGE_CONNECTION,
  handler: rewrapWorker,
});

app.eventGrid('keyVaultEvents', {
  handler: keyVaultEvents,
});

/** rekey's incidents topic (key.compromised CloudEvents). */
app.eventGrid('compromiseEvents', {
  handler: compromiseEvents,
});

/**
 * /api/approvals, /api/approvals/{id}, /api/approvals/{id}/approve|deny. Anonymous at the host:
 * the handler authenticates every request with an approver's bearer JWT.
 */
app.http('approvals', {
  route: 'approvals/{*rest}',
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  handler: approvals,
});

app.timer('costReport', {
  schedule: '%REKEY_COST_SCHEDULE%',
  handler: costReport,
});
