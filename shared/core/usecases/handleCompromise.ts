import { createHash } from 'node:crypto';
import { type CompromiseEvent, parseCompromiseEvent, signingBytes } from '../domain/compromiseEvent.js';
import { addDuration, durationDays, parseDuration } from '../domain/duration.js';
import { type ManagedKey, versionOf } from '../domain/key.js';
import { parseKeyRef } from '../domain/keyRef.js';
import { assertTransition } from '../domain/lifecycle.js';
import {
  ConfigError,
  ConflictError,
  errorMessage,
  NotFoundError,
  RekeyError,
  ValidationError,
} from '../errors.js';
import { COMPROMISED_KIND, compromisedId } from '../governance/marks.js';
import type { EventVerifier } from '../governance/signature.js';
import { matchesPolicy, policyFor } from '../policy/match.js';
import type { Policy } from '../policy/types.js';
import type { KeyProvider } from '../ports/KeyProvider.js';
import type { StateRecord } from '../ports/StateStore.js';
import { consumeApproval, gateAction } from './approvals.js';
import { acquireLease, providerForRef, publishEvents, type RekeyContext } from './context.js';
import { dekReferences } from './inventory.js';
import { pendingDeks, prepareRewrapJob, settleRewrapJob, workOnRewrapJob } from './rewrap.js';

/**
 * Compromise response for one key version:
 *  1. mark the version compromised (a `compromised` record; audited);
 *  2. rotate at once if it is the primary (maintenance windows do not apply);
 *  3. re-wrap every DEK under it, and only those, to the new primary in every store the key's
 *     policies name (and any other store that holds such DEKs), verify: full, with no rate cap
 *     (the adaptive limiter still backs off when the provider throttles);
 *  4. disable it once no DEK references it (the lifecycle rules apply);
 *  5. publish CompromiseContained; optionally request its destruction behind approvals.
 * The incident (a record of kind `incident`) holds a timeline of every step with its time, the
 * DEKs moved per store, failures and time to contain (reported -> disabled).
 *
 * Idempotent and resumable: running the same incident again continues where it stopped. A
 * rotation happens only while the compromised version is still the primary, so one incident
 * never rotates twice, even after a crash between the rotation and its record.
 * DEKs under older, non-compromised versions are left to the normal plan.
 */
export interface CompromiseInput {
  keyRef: string;
  /** Configured provider id, when several of the ref's type exist. */
  provider?: string;
  /** The compromised version; default: the primary (or the open incident's version for this key). */
  version?: string;
  reason: string;
  /** When it was reported (time to contain counts from here); default: now. */
  reportedAt?: string;
  /** Default: the key's open incident, else one derived from the key and version. */
  incidentId?: string;
  /** Who acts: recorded in the audit log and as the requester of any approval. */
  actor: string;
  /** Who reported it, if not the actor (a detector named in an event). */
  reportedBy?: string;
  /** The event that reported it. */
  origin?: { source: string; eventId: string };
}

export type IncidentStep =
  | 'reported'
  | 'opened'
  | 'marked'
  | 'resumed'
  | 'rotated'
  | 'rotation_found_done'
  | 'rotation_not_needed'
  | 'rewrapped'
  | 'disabled'
  | 'contained'
  | 'published'
  | 'destroy_requested'
  | 'destroy_scheduled'
  | 'failed';

export interface IncidentStoreResult {
  /** The last re-wrap job (null: the store held no DEK under the version). */
  jobId: string | null;
  toVersion: string | null;
  /** DEKs moved off the compromised version (counted in the store, across runs). */
  rewrapped: number;
  /** DEKs verified (every moved DEK: the incident re-wraps with verify: full). */
  verified: number;
  /** DEKs the last run could not re-wrap. */
  failed: number;
  /** Writes lost to application writes, re-read and retried. */
  conflicts: number;
  /** DEKs under the version when the current run started (cleared when it ends). */
  pendingAtRunStart?: number;
}

export interface IncidentReport {
  id: string;
  keyRef: string;
  providerId: string;
  /** The compromised version. */
  version: string;
  reason: string;
  reportedAt: string;
  reportedBy: string;
  origin?: { source: string; eventId: string };
  status: 'open' | 'contained';
  /** The primary when the incident opened. */
  previousPrimary: string;
  /** The primary DEKs were moved to. */
  newVersion?: string;
  rotation?: { at: string; from: string; to: string; how: 'rotated' | 'found_done' | 'not_needed' };
  stores: Record<string, IncidentStoreResult>;
  deksMoved: number;
  timeline: { at: string; step: IncidentStep; detail: string }[];
  failures: { at: string; step: string; error: string }[];
  containedAt?: string;
  /** containedAt - reportedAt. */
  timeToContainMs?: number;
  destroy?: {
    status: 'awaiting_approval' | 'scheduled' | 'not_possible';
    requestId?: string;
    destroyAt?: string;
    message?: string;
  };
  /** DEKs still under other non-primary versions when contained: the next plan re-wraps them. */
  remainingOlderDeks?: number;
  published?: boolean;
  /** Times the incident was run (1 + resumptions). */
  runs: number;
  openedAt: string;
  updatedAt: string;
}

const KIND = 'incident';
/** Calls in flight during incident re-wraps (the policy's rate does not apply). */
export const INCIDENT_CONCURRENCY = 32;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const DEFAULT_DESTROY_DELAY = parseDuration('P30D');

/** The id an incident for (key, version) gets when none is given: the same report finds the same incident. */
export function incidentIdFor(keyRef: string, version: string): string {
  return `inc-${createHash('sha256').update(`${keyRef}#${version}`).digest('hex').slice(0, 16)}`;
}

export async function getIncident(ctx: RekeyContext, id: string): Promise<IncidentReport> {
  const rec = await ctx.state.getRecord(KIND, id);
  if (!rec) throw new NotFoundError(`incident ${id} not found`);
  return rec.body as unknown as IncidentReport;
}

/** Every incident, newest first. */
export async function listIncidents(ctx: RekeyContext): Promise<IncidentReport[]> {
  const out: IncidentReport[] = [];
  let afterId: string | undefined;
  for (;;) {
    const page = await ctx.state.listRecords(KIND, { limit: 200, ...(afterId ? { afterId } : {}) });
    out.push(...page.map((r) => r.body as unknown as IncidentReport));
    if (page.length < 200) break;
    afterId = page[page.length - 1]!.id;
  }
  return out.sort((a, b) => b.openedAt.localeCompare(a.openedAt));
}

/** Stores to clean: every store a policy matching the key names, then any other holding such DEKs. */
async function storesFor(
  ctx: RekeyContext,
  key: ManagedKey,
  version: string,
): Promise<{ named: string[]; extra: string[] }> {
  const named = new Set<string>();
  for (const p of ctx.config.policies)
    if (matchesPolicy(p, key)) for (const s of p.rewrap?.stores ?? []) if (ctx.stores.has(s)) named.add(s);
  const extra: string[] = [];
  for (const [id, store] of ctx.stores) {
    if (named.has(id)) continue;
    if (((await store.countByVersion(key.ref))[version] ?? 0) > 0) extra.push(id);
  }
  return { named: [...named], extra };
}

async function openIncidentFor(ctx: RekeyContext, keyRef: string): Promise<IncidentReport | undefined> {
  return (await listIncidents(ctx)).find((i) => i.keyRef === keyRef && i.status === 'open');
}

/** Runs (or resumes) the response to a compromised key version and returns the incident report. */
export async function handleCompromise(ctx: RekeyContext, input: CompromiseInput): Promise<IncidentReport> {
  const actx: RekeyContext = { ...ctx, actor: input.actor };
  const refuse = async (target: string, message: string, err: Error): Promise<never> => {
    await actx.audit.append({
      actor: input.actor,
      action: 'incident.refused',
      target,
      details: {
        message,
        ...(input.version ? { version: input.version } : {}),
        ...(input.origin ? { eventId: input.origin.eventId, source: input.origin.source } : {}),
      },
    });
    throw err;
  };
  if (typeof input.reason !== 'string' || input.reason.trim() === '')
    throw new ValidationError('a compromise needs a reason (--reason)');
  if (input.incidentId !== undefined && !ID_PATTERN.test(input.incidentId))
    throw new ValidationError(`incident id "${input.incidentId}" must be 1-128 letters, digits, . _ : -`);
  let reportedAt = ctx.clock.now().toISOString();
  if (input.reportedAt !== undefined) {
    const t = Date.parse(input.reportedAt);
    if (Number.isNaN(t)) throw new ValidationError(`reportedAt "${input.reportedAt}" is not a date-time`);
    reportedAt = new Date(t).toISOString();
  }
  const { ref, provider } = providerForRef(actx, input.keyRef, input.provider);
  let key: ManagedKey;
  try {
    key = await provider.getKey(ref);
  } catch (e) {
    if (e instanceof NotFoundError)
      return refuse(
        ref.uri,
        `unknown key: ${e.message}`,
        new NotFoundError(`no key ${ref.uri} on provider ${provider.id}: ${e.message}`),
      );
    throw e;
  }

  // Which incident: the one named, the key's open one, or the one for (key, version).
  let existing: StateRecord | null = null;
  if (input.incidentId) existing = await ctx.state.getRecord(KIND, input.incidentId);
  else {
    const open = await openIncidentFor(ctx, ref.uri);
    if (open && (!input.version || input.version === open.version))
      existing = await ctx.state.getRecord(KIND, open.id);
  }
  if (!existing && !input.incidentId) {
    existing = await ctx.state.getRecord(KIND, incidentIdFor(ref.uri, input.version ?? key.primaryVersion));
  }
  let inc: IncidentReport;
  let rev: number;
  if (existing) {
    inc = existing.body as unknown as IncidentReport;
    rev = existing.rev;
    if (inc.keyRef !== ref.uri)
      throw new ValidationError(`incident ${inc.id} is about ${inc.keyRef}, not ${ref.uri}`);
    if (input.version && input.version !== inc.version)
      throw new ValidationError(`incident ${inc.id} is about version ${inc.version}, not ${input.version}`);
  } else {
    const version = input.version ?? key.primaryVersion;
    const v = versionOf(key, version);
    if (!v)
      return refuse(
        ref.uri,
        `key ${ref.uri} has no version ${version}`,
        new ValidationError(
          `key ${ref.uri} has no version ${version} (versions: ${key.versions.map((x) => x.id).join(', ')})`,
        ),
      );
    if (v.state === 'destroyed')
      return refuse(
        ref.uri,
        `version ${version} is already destroyed`,
        new ValidationError(
          `version ${version} of ${ref.uri} is already destroyed: there is nothing left to contain`,
        ),
      );
    const now = ctx.clock.now().toISOString();
    inc = {
      id: input.incidentId ?? incidentIdFor(ref.uri, version),
      keyRef: ref.uri,
      providerId: provider.id,
      version,
      reason: input.reason.slice(0, 1000),
      reportedAt,
      reportedBy: input.reportedBy ?? input.actor,
      ...(input.origin ? { origin: input.origin } : {}),
      status: 'open',
      previousPrimary: key.primaryVersion,
      stores: {},
      deksMoved: 0,
      timeline: [
        {
          at: reportedAt,
          step: 'reported',
          detail: `reported by ${input.reportedBy ?? input.actor}: ${input.reason.slice(0, 200)}`,
        },
        { at: now, step: 'opened', detail: `incident opened by ${input.actor}` },
      ],
      failures: [],
      runs: 1,
      openedAt: now,
      updatedAt: now,
    };
    rev = 0;
  }

  const save = async (): Promise<void> => {
    inc.updatedAt = ctx.clock.now().toISOString();
    inc.deksMoved = Object.values(inc.stores).reduce((a, s) => a + s.rewrapped, 0);
    const body = inc as unknown as Record<string, unknown>;
    if (!(await ctx.state.putRecord({ kind: KIND, id: inc.id, body, updatedAt: inc.updatedAt }, rev))) {
      throw new ConflictError(`incident ${inc.id} was changed by another process; run it again to resume`);
    }
    rev++;
  };
  const step = (s: IncidentStep, detail: string) =>
    inc.timeline.push({ at: ctx.clock.now().toISOString(), step: s, detail });

  if (rev === 0) {
    await save();
    await actx.audit.append({
      actor: input.actor,
      action: 'incident.opened',
      target: inc.keyRef,
      details: {
        incidentId: inc.id,
        version: inc.version,
        reason: inc.reason,
        reportedAt: inc.reportedAt,
        reportedBy: inc.reportedBy,
        ...(inc.origin ? { eventId: inc.origin.eventId, source: inc.origin.source } : {}),
      },
    });
  } else if (inc.status === 'open') {
    inc.runs++;
    step('resumed', `run ${inc.runs} by ${input.actor}`);
    await save();
  }

  // 1. Mark (before the lease: even a busy key has its compromise on record).
  if (!inc.timeline.some((t) => t.step === 'marked')) {
    const now = ctx.clock.now().toISOString();
    await ctx.state.putRecord(
      {
        kind: COMPROMISED_KIND,
        id: compromisedId(inc.keyRef, inc.version),
        body: { keyRef: inc.keyRef, version: inc.version, incidentId: inc.id, at: now },
        updatedAt: now,
      },
      0,
    );
    await actx.audit.append({
      actor: input.actor,
      action: 'version.compromised',
      target: inc.keyRef,
      details: { incidentId: inc.id, version: inc.version, reason: inc.reason },
    });
    step('marked', `version ${inc.version} marked compromised`);
    await save();
  }

  const lease = `key:${inc.keyRef}`;
  if (!(await acquireLease(actx, lease))) {
    const holder = await ctx.state.leaseOwner(lease, ctx.clock.now().getTime());
    inc.failures.push({
      at: ctx.clock.now().toISOString(),
      step: 'lease',
      error: `another rekey process (${holder?.owner ?? 'unknown'}) holds the lease on this key; run the incident again to continue`,
    });
    await save();
    throw new ConflictError(
      `incident ${inc.id}: another rekey process holds the lease on ${inc.keyRef}; run it again to continue`,
    );
  }
  try {
    await advance(actx, provider, inc, { save, step });
  } catch (e) {
    if (e instanceof ConflictError && /changed by another process/.test(e.message)) throw e;
    inc.failures.push({ at: ctx.clock.now().toISOString(), step: currentStep(inc), error: errorMessage(e) });
    step('failed', errorMessage(e));
    await save();
    await actx.audit.append({
      actor: input.actor,
      action: 'incident.step_failed',
      target: inc.keyRef,
      details: { incidentId: inc.id, step: currentStep(inc), error: errorMessage(e) },
    });
  } finally {
    await ctx.state.releaseLease(lease, ctx.instanceId);
  }
  return inc;
}

function currentStep(inc: IncidentReport): string {
  if (!inc.rotation) return 'rotate';
  if (!inc.containedAt) return 'rewrap_or_disable';
  if (!inc.published) return 'publish';
  return 'destroy';
}

interface Steps {
  save: () => Promise<void>;
  step: (s: IncidentStep, detail: string) => void;
}

async function advance(
  ctx: RekeyContext,
  provider: KeyProvider,
  inc: IncidentReport,
  s: Steps,
): Promise<void> {
  const ref = parseKeyRef(inc.keyRef);
  const lease = `key:${inc.keyRef}`;
  const caps = provider.capabilities();
  const now = () => ctx.clock.now().toISOString();
  let key = await provider.getKey(ref);
  const policy: Policy | undefined = policyFor(ctx.config, key).policy;

  // 2. Rotate, only while the compromised version is still the primary.
  if (!inc.rotation) {
    if (key.primaryVersion === inc.version) {
      if (caps.maxVersions !== undefined && key.versions.length >= caps.maxVersions) {
        throw new ValidationError(
          `key ${inc.keyRef} already has ${key.versions.length} versions (provider limit ${caps.maxVersions}): it cannot rotate; replace the key`,
        );
      }
      const v = await provider.rotate(ref);
      inc.rotation = { at: now(), from: inc.version, to: v.id, how: 'rotated' };
      await s.save();
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'key.rotated',
        target: inc.keyRef,
        details: {
          previousPrimary: inc.version,
          primary: v.id,
          onDemand: true,
          reason: 'compromise',
          incidentId: inc.id,
        },
      });
      await publishEvents(ctx, [
        {
          type: 'KeyRotated',
          id: `${inc.id}:rotated`,
          time: inc.rotation.at,
          detail: {
            keyRef: inc.keyRef,
            providerId: inc.providerId,
            previousVersion: inc.version,
            newVersion: v.id,
            reason: 'compromise',
            ...(policy ? { policy: policy.name } : {}),
          },
        },
      ]);
      s.step('rotated', `rotated ${inc.version} -> ${v.id}`);
      key = await provider.getKey(ref);
    } else if (inc.previousPrimary === inc.version) {
      // The version was the primary when the incident opened and no longer is: the rotation
      // happened (before a crash, or by another run); never rotate again.
      inc.rotation = { at: now(), from: inc.version, to: key.primaryVersion, how: 'found_done' };
      s.step('rotation_found_done', `primary already moved from ${inc.version} to ${key.primaryVersion}`);
    } else {
      inc.rotation = { at: now(), from: key.primaryVersion, to: key.primaryVersion, how: 'not_needed' };
      s.step('rotation_not_needed', `version ${inc.version} is not the primary (${key.primaryVersion})`);
    }
    inc.newVersion = inc.rotation.to;
    await s.save();
  }

  // 3 and 4. Re-wrap what the compromised version wraps, then disable it.
  if (!inc.containedAt) {
    const target = key.primaryVersion;
    const { named, extra } = await storesFor(ctx, key, inc.version);
    const batchSize = policy?.rewrap?.batchSize ?? 1000;
    for (const storeId of [...named, ...extra]) {
      const jobId = `${inc.id}:${storeId}:${target}`;
      const spec = {
        jobId,
        keyRef: inc.keyRef,
        providerId: inc.providerId,
        storeId,
        fromVersions: [inc.version],
        toVersion: target,
      };
      // DEKs moved are counted from the store (before minus after), so a run killed between
      // a batch's writes and its checkpoint still reports exactly what moved.
      const pending = await pendingDeks(ctx, spec);
      const entry: IncidentStoreResult = inc.stores[storeId] ?? {
        jobId: null,
        toVersion: null,
        rewrapped: 0,
        verified: 0,
        failed: 0,
        conflicts: 0,
      };
      inc.stores[storeId] = entry;
      if (entry.pendingAtRunStart !== undefined) {
        entry.rewrapped += Math.max(0, entry.pendingAtRunStart - pending);
        delete entry.pendingAtRunStart;
      }
      let job = await ctx.state.getRewrapJob(jobId);
      if (!job && pending === 0) {
        entry.verified = entry.rewrapped;
        await s.save();
        continue;
      }
      entry.pendingAtRunStart = pending;
      entry.jobId = jobId;
      entry.toVersion = target;
      await s.save();
      job = await prepareRewrapJob(ctx, spec);
      if (job.status === 'done' && job.counts.failed === 0 && pending > 0) {
        job = { ...job, status: 'running', cursor: null, updatedAt: now() };
        await ctx.state.saveRewrapJob(job);
      }
      await workOnRewrapJob(ctx, jobId, inc.providerId, {
        verify: 'full',
        batchSize,
        concurrency: INCIDENT_CONCURRENCY,
        onBatch: async () => {
          if (!(await acquireLease(ctx, lease))) throw new ConflictError(`lost the lease on ${inc.keyRef}`);
        },
      });
      job = await settleRewrapJob(ctx, jobId);
      const remaining = await pendingDeks(ctx, spec);
      entry.rewrapped += Math.max(0, pending - remaining);
      delete entry.pendingAtRunStart;
      // verify: full: a DEK is written only after its new ciphertext unwrapped to the original.
      entry.verified = entry.rewrapped;
      entry.failed = job.counts.failed;
      entry.conflicts = job.counts.conflicts;
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'rewrap.completed',
        target: inc.keyRef,
        details: {
          incidentId: inc.id,
          jobId,
          store: storeId,
          fromVersions: [inc.version],
          toVersion: target,
          ...job.counts,
          failures: job.failures.slice(0, 10),
        },
      });
      s.step(
        'rewrapped',
        `${storeId}: ${entry.rewrapped} DEK(s) moved to ${target}, each verified; ${remaining} left (failed ${job.counts.failed})${extra.includes(storeId) ? '; no policy names this store but it held DEKs under the compromised version' : ''}`,
      );
      await s.save();
      if (job.counts.failed > 0) {
        throw new Error(
          `${job.counts.failed} DEK(s) in ${storeId} could not be re-wrapped (${job.failures
            .slice(0, 3)
            .map((f) => `${f.id}: ${f.error}`)
            .join('; ')}); they stay under version ${inc.version}, which therefore stays enabled`,
        );
      }
    }

    key = await provider.getKey(ref);
    const v = versionOf(key, inc.version);
    if (!v) throw new NotFoundError(`key ${inc.keyRef} no longer has version ${inc.version}`);
    if (v.state === 'enabled') {
      if (caps.versionControl?.disable === false) {
        throw new ValidationError(
          `provider ${inc.providerId} cannot disable a single version of ${inc.keyRef}; its DEKs are moved, retire the whole key to finish containment`,
        );
      }
      const refs = await dekReferences(ctx, inc.keyRef, inc.version);
      assertTransition({ key, version: inc.version, to: 'disabled', dekReferences: refs });
      await provider.setVersionState(ref, inc.version, 'disabled');
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'version.disabled',
        target: inc.keyRef,
        details: { version: inc.version, reason: 'compromise', incidentId: inc.id },
      });
      await publishEvents(ctx, [
        {
          type: 'VersionRetired',
          id: `${inc.id}:disabled`,
          time: now(),
          detail: { keyRef: inc.keyRef, providerId: inc.providerId, version: inc.version, state: 'disabled' },
        },
      ]);
      s.step('disabled', `version ${inc.version} disabled`);
    } else {
      s.step('disabled', `version ${inc.version} was already ${v.state}`);
    }
    inc.containedAt = now();
    inc.timeToContainMs = Math.max(0, Date.parse(inc.containedAt) - Date.parse(inc.reportedAt));
    inc.status = 'contained';
    inc.remainingOlderDeks = await olderDeks(ctx, key, inc.version);
    s.step(
      'contained',
      `contained in ${(inc.timeToContainMs / 1000).toFixed(3)} s; ${inc.remainingOlderDeks} DEK(s) under older versions are left to the next plan`,
    );
    await s.save();
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'incident.contained',
      target: inc.keyRef,
      details: {
        incidentId: inc.id,
        version: inc.version,
        newVersion: inc.newVersion ?? null,
        deksMoved: inc.deksMoved,
        timeToContainMs: inc.timeToContainMs,
      },
    });
  }

  // 5. Announce once.
  if (!inc.published) {
    await publishEvents(ctx, [
      {
        type: 'CompromiseContained',
        id: inc.id,
        time: inc.containedAt!,
        detail: {
          keyRef: inc.keyRef,
          providerId: inc.providerId,
          compromisedVersion: inc.version,
          newVersion: inc.newVersion ?? key.primaryVersion,
          incidentId: inc.origin?.eventId ?? inc.id,
          reportedAt: inc.reportedAt,
          containedAt: inc.containedAt!,
          timeToContainMs: inc.timeToContainMs!,
          rewrapped: inc.deksMoved,
        },
      },
    ]);
    inc.published = true;
    s.step('published', 'CompromiseContained published');
    await s.save();
  }

  // 6. Destruction, only if the policy asks and only with approvals.
  if (
    policy?.onCompromise?.destroy &&
    inc.destroy?.status !== 'scheduled' &&
    inc.destroy?.status !== 'not_possible'
  ) {
    await requestDestroy(ctx, provider, inc, policy, s);
  }
}

async function olderDeks(ctx: RekeyContext, key: ManagedKey, compromised: string): Promise<number> {
  let n = 0;
  for (const store of ctx.stores.values()) {
    for (const [v, count] of Object.entries(await store.countByVersion(key.ref)))
      if (v !== key.primaryVersion && v !== compromised) n += count;
  }
  return n;
}

async function requestDestroy(
  ctx: RekeyContext,
  provider: KeyProvider,
  inc: IncidentReport,
  policy: Policy,
  s: Steps,
): Promise<void> {
  const ref = parseKeyRef(inc.keyRef);
  const caps = provider.capabilities();
  if (caps.versionControl?.destroy === false) {
    inc.destroy = {
      status: 'not_possible',
      message: `provider ${inc.providerId} cannot destroy a single version`,
    };
    s.step('destroy_requested', inc.destroy.message!);
    await s.save();
    return;
  }
  const gate = await gateAction(ctx, {
    action: 'destroy',
    target: inc.keyRef,
    subject: { version: inc.version },
    reason: `compromise incident ${inc.id}: ${inc.reason.slice(0, 200)}`,
    policy: policy.name,
    // Never without approvals: at least the configured quorum, even where no rule names destroy.
    minQuorum: ctx.config.approvals?.quorum ?? 1,
  });
  if (!gate.allowed) {
    const first = inc.destroy?.status !== 'awaiting_approval' || inc.destroy.requestId !== gate.request?.id;
    inc.destroy = {
      status: 'awaiting_approval',
      ...(gate.request ? { requestId: gate.request.id } : {}),
      message: gate.message,
    };
    if (first) s.step('destroy_requested', gate.message);
    await s.save();
    return;
  }
  const key = await provider.getKey(ref);
  const v = versionOf(key, inc.version);
  let destroyAt = v?.destroyAt;
  if (v && v.state !== 'destroy_scheduled' && v.state !== 'destroyed') {
    const refs = await dekReferences(ctx, inc.keyRef, inc.version);
    assertTransition({ key, version: inc.version, to: 'destroy_scheduled', dekReferences: refs });
    const days = Math.max(
      caps.destroyDelayDays.min,
      Math.min(
        Math.round(durationDays(policy.retire?.destroyDelay ?? DEFAULT_DESTROY_DELAY)),
        caps.destroyDelayDays.max,
      ),
    );
    destroyAt = (await provider.scheduleDestroy(ref, inc.version, days)).destroyAt;
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'version.destroy_scheduled',
      target: inc.keyRef,
      details: {
        version: inc.version,
        destroyAt,
        delayDays: days,
        incidentId: inc.id,
        requestId: gate.request?.id ?? null,
        approvedBy: gate.approvedBy,
      },
    });
    await publishEvents(ctx, [
      {
        type: 'VersionRetired',
        id: `${inc.id}:destroy`,
        time: ctx.clock.now().toISOString(),
        detail: {
          keyRef: inc.keyRef,
          providerId: inc.providerId,
          version: inc.version,
          state: 'destroy_scheduled',
          ...(destroyAt ? { destroyAt } : {}),
          approvedBy: gate.approvedBy,
        },
      },
    ]);
  }
  if (gate.request) await consumeApproval(ctx, gate.request, `incident ${inc.id}`);
  inc.destroy = {
    status: 'scheduled',
    ...(gate.request ? { requestId: gate.request.id } : {}),
    ...(destroyAt ? { destroyAt } : {}),
  };
  s.step(
    'destroy_scheduled',
    `destruction of ${inc.version} scheduled${destroyAt ? ` for ${destroyAt}` : ''} (approved by ${gate.approvedBy.join(', ')})`,
  );
  await s.save();
}

/** Why a `key.compromised` event was refused. Runtimes acknowledge these (a retry cannot help). */
export type EventRefusal =
  | 'malformed'
  | 'not_configured'
  | 'source'
  | 'signature'
  | 'replayed'
  | 'stale'
  | 'future'
  | 'unknown_key'
  | 'unknown_version';

export class EventRefused extends RekeyError {
  readonly refusal: EventRefusal;
  constructor(refusal: EventRefusal, message: string) {
    super('EVENT_REFUSED', message);
    this.refusal = refusal;
  }
}

export interface CompromiseEventOutcome {
  eventId: string;
  source: string;
  /** handled: acted on now; duplicate: seen before, nothing done again (the earlier incident is returned). */
  outcome: 'handled' | 'duplicate';
  incident: IncidentReport;
}

const EVENT_KIND = 'incident-event';
/** Clock skew tolerated for events stamped in the future. */
const MAX_FUTURE_MS = 5 * 60_000;

/**
 * Handles one `key.compromised` CloudEvent (already taken out of its envelope, see
 * governance/envelopes.ts). Checked in this order, each refusal audited and leaving state as it
 * was: well-formed, incidents configured, source listed, signature valid; then the event id
 * (per source): the same event again returns the earlier outcome and never acts twice, a
 * different event reusing a seen id is refused; then age (incidents.maxAge, default 1 h) and
 * the key and version. Accepted events are recorded (putRecord, rev 0) before acting, so a
 * redelivery after a crash resumes the same incident.
 */
export async function handleCompromiseEvent(
  ctx: RekeyContext,
  input: unknown,
  opts: { verify: EventVerifier },
): Promise<CompromiseEventOutcome> {
  const raw = (input ?? {}) as Record<string, unknown>;
  const refuse = async (refusal: EventRefusal, message: string, keyRef?: string): Promise<never> => {
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'incident.event_refused',
      target: keyRef ?? null,
      details: {
        refusal,
        message: message.slice(0, 500),
        eventId: typeof raw.id === 'string' ? raw.id.slice(0, 256) : null,
        source: typeof raw.source === 'string' ? raw.source.slice(0, 512) : null,
      },
    });
    throw new EventRefused(refusal, message);
  };
  let parsed: CompromiseEvent;
  try {
    parsed = parseCompromiseEvent(input);
  } catch (e) {
    if (e instanceof ValidationError) return refuse('malformed', e.message);
    throw e;
  }
  const { event, data } = parsed;
  const cfg = ctx.config.incidents;
  if (!cfg)
    return refuse(
      'not_configured',
      `compromise events are not accepted: ${ctx.config.file} has no incidents block`,
    );
  if (!cfg.sources.includes(event.source))
    return refuse(
      'source',
      `event source "${event.source.slice(0, 200)}" is not one of incidents.sources`,
      data.keyRef,
    );
  if (!(await opts.verify.verify(event)))
    return refuse(
      'signature',
      `event ${event.id} from ${event.source}: the ${opts.verify.scheme} signature does not verify`,
      data.keyRef,
    );

  const digest = createHash('sha256').update(signingBytes(event)).digest('hex');
  const recId = `evt-${createHash('sha256').update(`${event.source}\n${event.id}`).digest('hex').slice(0, 32)}`;
  for (let attempt = 0; attempt < 5; attempt++) {
    const seen = await ctx.state.getRecord(EVENT_KIND, recId);
    if (seen) {
      const b = seen.body as { digest: string; status: string; incidentId?: string };
      if (b.digest !== digest)
        return refuse(
          'replayed',
          `event id ${event.id} from ${event.source} was already used by a different event`,
          data.keyRef,
        );
      if (b.status === 'done' && b.incidentId) {
        return {
          eventId: event.id,
          source: event.source,
          outcome: 'duplicate',
          incident: await getIncident(ctx, b.incidentId),
        };
      }
      // Accepted before but not finished (a crash, a failure): continue the same incident.
      return finishEvent(ctx, parsed, recId, seen.rev, b.incidentId);
    }
    const now = ctx.clock.now().getTime();
    const t = Date.parse(parsed.time);
    const maxAgeMs = addDuration(new Date(0), cfg.maxAge).getTime();
    if (now - t > maxAgeMs)
      return refuse(
        'stale',
        `event ${event.id} is from ${parsed.time}, older than incidents.maxAge ${cfg.maxAge.text}`,
        data.keyRef,
      );
    if (t - now > MAX_FUTURE_MS)
      return refuse('future', `event ${event.id} is dated ${parsed.time}, in the future`, data.keyRef);
    let key: ManagedKey;
    try {
      const { ref, provider } = providerForRef(ctx, data.keyRef);
      key = await provider.getKey(ref);
    } catch (e) {
      if (e instanceof NotFoundError || e instanceof ConfigError)
        return refuse('unknown_key', `event ${event.id}: ${e.message}`, data.keyRef);
      throw e;
    }
    if (data.version !== undefined && !versionOf(key, data.version))
      return refuse(
        'unknown_version',
        `event ${event.id}: key ${key.ref} has no version ${data.version}`,
        key.ref,
      );
    const at = ctx.clock.now().toISOString();
    const claimed = await ctx.state.putRecord(
      {
        kind: EVENT_KIND,
        id: recId,
        body: {
          eventId: event.id,
          source: event.source,
          digest,
          keyRef: key.ref,
          status: 'processing',
          receivedAt: at,
        },
        updatedAt: at,
      },
      0,
    );
    if (claimed) {
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'incident.event_accepted',
        target: key.ref,
        details: {
          eventId: event.id,
          source: event.source,
          version: data.version ?? null,
          reportedBy: data.reportedBy,
        },
      });
      return finishEvent(ctx, parsed, recId, 1, undefined);
    }
  }
  throw new ConflictError(`event ${event.id}: its record kept changing; deliver it again`);
}

async function finishEvent(
  ctx: RekeyContext,
  parsed: CompromiseEvent,
  recId: string,
  rev: number,
  incidentId: string | undefined,
): Promise<CompromiseEventOutcome> {
  const { event, data } = parsed;
  const incident = await handleCompromise(ctx, {
    keyRef: data.keyRef,
    ...(data.version ? { version: data.version } : {}),
    reason: data.reason,
    reportedAt: parsed.time,
    ...(incidentId ? { incidentId } : {}),
    actor: ctx.actor,
    reportedBy: data.reportedBy,
    origin: { source: event.source, eventId: event.id },
  });
  const rec = await ctx.state.getRecord(EVENT_KIND, recId);
  if (rec && rec.rev === rev) {
    await ctx.state.putRecord(
      {
        kind: EVENT_KIND,
        id: recId,
        body: {
          ...rec.body,
          incidentId: incident.id,
          status: incident.status === 'contained' ? 'done' : 'processing',
          incidentStatus: incident.status,
        },
        updatedAt: ctx.clock.now().toISOString(),
      },
      rev,
    );
  }
  return { eventId: event.id, source: event.source, outcome: 'handled', incident };
}
