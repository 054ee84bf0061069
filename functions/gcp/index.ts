/**
 * rekey on Google Cloud Functions (2nd gen), one entry for every function of the deployment:
 *   rekeyCycle      Cloud Scheduler -> Pub/Sub cycle topic      (CloudEvent, messagePublished)
 *   rekeyRewrap     Pub/Sub re-wrap topic                        (CloudEvent, messagePublished)
 *   rekeyKeyEvents  Eventarc, Cloud KMS audit logs               (CloudEvent, audit.log.v1.written)
 * Each deployed function names its target (--entry-point); the bundle registers all of them
 * with the Functions Framework and exports them too.
 */
import { cloudEvent } from '@google-cloud/functions-framework';
import { rekeyCycle } from './cycle.js';
import { rekeyKeyEvents } from './keyEvents.js';
import { rekeyRewrap } from './rewrapWorker.js';

cloudEvent('rekeyCycle', rekeyCycle);
cloudEvent('rekeyRewrap', rekeyRewrap);
cloudEvent('rekeyKeyEvents', rekeyKeyEvents);

export { rekeyCycle, rekeyKeyEvents, rekeyRewrap };
