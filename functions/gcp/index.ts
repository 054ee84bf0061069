/**
 * rekey on Google Cloud Functions (2nd gen), one entry for every function of the deployment:
 *   rekeyCycle       Cloud Scheduler -> Pub/Sub cycle topic     (CloudEvent, messagePublished)
 *   rekeyRewrap      Pub/Sub re-wrap topic (push)               (CloudEvent, messagePublished)
 *   rekeyKeyEvents   Eventarc, Cloud KMS audit logs             (CloudEvent, audit.log.v1.written)
 *   rekeyCompromise  Pub/Sub incidents topic (push)             (CloudEvent, messagePublished)
 *   rekeyApprovals   HTTPS, approver JWTs                       (HTTP)
 *   rekeyCosts       Cloud Scheduler -> Pub/Sub costs topic     (CloudEvent, messagePublished)
 * Each deployed function names its target (--entry-point); the bundle registers all of them
 * with the Functions Framework and exports them too.
 */
import { cloudEvent, http } from '@google-cloud/functions-framework';
import { rekeyApprovals } from './approvals.js';
import { rekeyCompromise } from './compromise.js';
import { rekeyCosts } from './costs.js';
import { rekeyCycle } from './cycle.js';
import { rekeyKeyEvents } from './keyEvents.js';
import { rekeyRewrap } from './rewrapWorker.js';

cloudEvent('rekeyCycle', rekeyCycle);
cloudEvent('rekeyRewrap', rekeyRewrap);
cloudEvent('rekeyKeyEvents', rekeyKeyEvents);
cloudEvent('rekeyCompromise', rekeyCompromise);
http('rekeyApprovals', rekeyApprovals);
cloudEvent('rekeyCosts', rekeyCosts);

export { rekeyApprovals, rekeyCompromise, rekeyCosts, rekeyCycle, rekeyKeyEvents, rekeyRewrap };
