import { app } from '@azure/functions';
import { keyVaultEvents } from './keyVaultEvents.js';
import { rewrapWorker } from './rewrapWorker.js';
import { scheduledCycle } from './scheduledCycle.js';
import { STORAGE_CONNECTION } from './settings.js';

/**
 * rekey's Azure Functions (v4 programming model). `%NAME%` is resolved by the host from the
 * app settings, so the schedule and the queue name live in one place (infra/azure).
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
