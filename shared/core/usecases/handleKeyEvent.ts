import type { KeyEvent } from '../domain/keyEvent.js';
import { parseKeyRef } from '../domain/keyRef.js';
import { ValidationError } from '../errors.js';
import { policyFor } from '../policy/match.js';
import type { RewrapJob } from '../ports/StateStore.js';
import { providerForRef, type RekeyContext } from './context.js';
import { planKeyRewrap, rewrapKey } from './rewrap.js';
import { rotateKey } from './rotateKey.js';

export interface KeyEventOutcome {
  eventId: string;
  keyRef: string;
  outcome: 'rewrapped' | 'rotated' | 'ignored';
  reason: string;
  rotatedTo?: string;
  jobs: RewrapJob[];
}

/**
 * Reacts to a provider's key event under the policy that governs the key:
 * - a new version appeared (the provider rotated on its own schedule): re-wrap the DEKs in the
 *   policy's stores to it;
 * - the primary is near expiry or expired: rotate now, then re-wrap.
 * Safe to receive twice: a rotation is made only if the primary is still the version the event
 * names, and a re-wrap with nothing left to move changes nothing. Unmanaged keys are ignored.
 */
export async function handleKeyEvent(ctx: RekeyContext, event: KeyEvent): Promise<KeyEventOutcome> {
  const ref = parseKeyRef(event.keyRef);
  if (ref.type !== event.provider) {
    throw new ValidationError(
      `event ${event.eventId}: key ref ${event.keyRef} is not a ${event.provider} key`,
    );
  }
  const { provider } = providerForRef(ctx, ref.uri);
  const key = await provider.getKey(ref);
  const { policy } = policyFor(ctx.config, key);
  const done = async (o: Omit<KeyEventOutcome, 'eventId' | 'keyRef'>): Promise<KeyEventOutcome> => {
    const out = { eventId: event.eventId, keyRef: ref.uri, ...o };
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'event.handled',
      target: ref.uri,
      details: {
        eventId: event.eventId,
        kind: event.kind,
        version: event.version ?? null,
        outcome: o.outcome,
        reason: o.reason,
        rewrapped: o.jobs.reduce((a, j) => a + j.counts.rewrapped, 0),
      },
    });
    return out;
  };
  if (!policy) return done({ outcome: 'ignored', reason: 'no policy governs this key', jobs: [] });

  let rotatedTo: string | undefined;
  if (event.kind === 'near_expiry' || event.kind === 'expired') {
    if (event.version && event.version !== key.primaryVersion) {
      return done({
        outcome: 'ignored',
        reason: `version ${event.version} is no longer the primary (${key.primaryVersion}): already rotated`,
        jobs: [],
      });
    }
    const r = await rotateKey(ctx, ref.uri, {
      provider: provider.id,
      reason: `${event.kind} event ${event.eventId}`,
    });
    rotatedTo = r.version.id;
  }
  const rw = policy.rewrap;
  if (!rw) {
    return done({
      outcome: rotatedTo ? 'rotated' : 'ignored',
      reason: rotatedTo
        ? `rotated to ${rotatedTo}; the policy names no DEK stores`
        : 'the policy names no DEK stores',
      ...(rotatedTo ? { rotatedTo } : {}),
      jobs: [],
    });
  }
  const pending = (
    await planKeyRewrap(ctx, { keyRef: ref.uri, provider: provider.id, stores: rw.stores })
  ).reduce((a, p) => a + p.pending, 0);
  if (pending === 0) {
    return done({
      outcome: rotatedTo ? 'rotated' : 'ignored',
      reason: `${rotatedTo ? `rotated to ${rotatedTo}; ` : ''}no DEK is left under an older version`,
      ...(rotatedTo ? { rotatedTo } : {}),
      jobs: [],
    });
  }
  const jobs = await rewrapKey(ctx, {
    keyRef: ref.uri,
    provider: provider.id,
    stores: rw.stores,
    verify: rw.verify.mode === 'sample' ? { sample: rw.verify.fraction } : rw.verify.mode,
    batchSize: rw.batchSize,
    ...(rw.rate ? { ratePerSecond: rw.rate.perSecond } : {}),
  });
  const moved = jobs.reduce((a, j) => a + j.counts.rewrapped, 0);
  return done({
    outcome: rotatedTo ? 'rotated' : 'rewrapped',
    reason: `${rotatedTo ? `rotated to ${rotatedTo}, ` : ''}${moved} DEK(s) re-wrapped to the primary`,
    ...(rotatedTo ? { rotatedTo } : {}),
    jobs,
  });
}
