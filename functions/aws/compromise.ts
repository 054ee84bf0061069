import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { ValidationError } from '../../shared/core/errors.js';
import { extractCloudEvents } from '../../shared/core/governance/envelopes.js';
import type { EventVerifier } from '../../shared/core/governance/signature.js';
import { EventRefused, handleCompromiseEvent } from '../../shared/core/usecases/handleCompromise.js';
import { dekReferences } from '../../shared/core/usecases/inventory.js';
import { type AwsRuntime, errorFields } from './runtime.js';
import { compromiseVerifier } from './verifiers.js';

/** What the events function answers for a `key.compromised` event. */
export interface CompromiseResult {
  eventId: string;
  /**
   * contained: the version is disabled; retire_key: every DEK moved, the key must go whole;
   * duplicate: the event was handled before; rejected: not a key.compromised event in an
   * EventBridge envelope; refused: the use case refused it (source, signature, replay, age...).
   */
  outcome: 'contained' | 'retire_key' | 'duplicate' | 'rejected' | 'refused';
  keyRef?: string;
  incidentId?: string;
  reason: string;
  rotatedTo?: string;
  rewrapped?: number;
}

type Raw = { id?: unknown; source?: unknown };

/**
 * `key.compromised` CloudEvents carried by EventBridge (the event's `detail`). Refusals are
 * answered, not retried (the use case audited them). An incident left open throws, so the event
 * comes again and resumes it; except where the provider cannot disable one version (AWS KMS
 * acts on whole keys): once every DEK is moved, retiring the whole key is an operator's
 * decision, answered as `retire_key` and logged as an error.
 */
export function compromiseHandler(deps: { runtime: AwsRuntime; logger: Logger; metrics: Metrics }) {
  const { runtime, logger, metrics } = deps;
  let verifier: Promise<EventVerifier> | undefined;
  return async (raw: Raw): Promise<CompromiseResult> => {
    const eventId = typeof raw?.id === 'string' ? raw.id : '(none)';
    const refused = (outcome: 'rejected' | 'refused', e: Error): CompromiseResult => {
      metrics.addMetric(`rekey.incidents.${outcome}`, MetricUnit.Count, 1);
      logger.error('compromise event refused', { eventId, source: String(raw?.source), ...errorFields(e) });
      return { eventId, outcome, reason: e.message };
    };
    let event: unknown;
    try {
      // EventBridge delivers one event per invocation.
      event = extractCloudEvents(raw, 'eventbridge')[0]!.event;
    } catch (e) {
      if (e instanceof ValidationError) return refused('rejected', e);
      throw e;
    }
    const ctx = await runtime.context();
    verifier ??= compromiseVerifier(ctx.config, ctx.baseDir, runtime.publicKeys()).catch((e: unknown) => {
      verifier = undefined;
      throw e;
    });
    let out: Awaited<ReturnType<typeof handleCompromiseEvent>>;
    try {
      out = await handleCompromiseEvent(ctx, event, { verify: await verifier });
    } catch (e) {
      if (e instanceof EventRefused || e instanceof ValidationError) return refused('refused', e);
      throw e;
    }
    const inc = out.incident;
    const result: CompromiseResult = {
      eventId,
      outcome: out.outcome === 'duplicate' ? 'duplicate' : 'contained',
      keyRef: inc.keyRef,
      incidentId: inc.id,
      reason: `version ${inc.version}: ${inc.status}`,
      ...(inc.newVersion ? { rotatedTo: inc.newVersion } : {}),
      rewrapped: inc.deksMoved,
    };
    if (inc.status === 'open' && out.outcome !== 'duplicate') {
      const provider = ctx.providers.get(inc.providerId);
      const wholeKey = provider?.capabilities().versionControl?.disable === false;
      if (!inc.rotation || !wholeKey || (await dekReferences(ctx, inc.keyRef, inc.version)) > 0) {
        logger.error('incident still open: the event will come again', {
          ...result,
          failures: inc.failures.slice(-3),
        });
        throw new Error(`incident ${inc.id} is still open: ${inc.failures.at(-1)?.error ?? 'unfinished'}`);
      }
      result.outcome = 'retire_key';
      result.reason = `version ${inc.version}: every DEK moved to ${inc.newVersion}; AWS KMS cannot disable one version, retire the whole key to finish`;
    }
    metrics.addMetric(`rekey.incidents.${result.outcome}`, MetricUnit.Count, 1);
    if (result.outcome === 'retire_key') logger.error('compromise handled: retire the key', { ...result });
    else logger.info('compromise event handled', { ...result, timeToContainMs: inc.timeToContainMs });
    return result;
  };
}
