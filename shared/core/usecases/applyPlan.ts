import { createHash, randomUUID } from 'node:crypto';
import { parseKeyRef } from '../domain/keyRef.js';
import { assertTransition } from '../domain/lifecycle.js';
import { ConfigError, errorMessage, RekeyError } from '../errors.js';
import { checkConfigChange } from '../governance/configChange.js';
import { COMPROMISED_KIND, compromisedId } from '../governance/marks.js';
import type { ActionRecord, ActionStatus, Plan, PlanAction, RewrapAction } from '../plan/types.js';
import type { ApplyRun, RewrapJob } from '../ports/StateStore.js';
import type { WorkMessage } from '../ports/WorkQueue.js';
import { consumeApproval, type GateResult, gateAction } from './approvals.js';
import { acquireLease, providerById, publishEvents, type RekeyContext } from './context.js';
import { dekReferences } from './inventory.js';
import {
  prepareRewrapJob,
  rewrapCompletedEvent,
  settleRewrapJob,
  sumCounts,
  workJobs,
  workOnRewrapJob,
} from './rewrap.js';

export interface ActionOutcome {
  index: number;
  type: PlanAction['type'];
  keyRef: string;
  status: ActionStatus;
  result?: Record<string, unknown>;
  error?: string;
}

export interface ApplyReport {
  runId: string;
  planId: string;
  status: ApplyRun['status'];
  outcomes: ActionOutcome[];
  totals: {
    rotated: number;
    rewrapped: number;
    verified: number;
    failed: number;
    retired: number;
    destroyScheduled: number;
    awaitingApproval: number;
  };
}

/** Statuses that mean "nothing left to do for this action". */
const FINISHED: ActionStatus[] = ['done', 'already_done', 'awaiting_approval'];

class ActionSkipped extends RekeyError {
  constructor(message: string) {
    super('SKIPPED', message);
  }
}

/**
 * Executes a plan. Idempotent: finished actions are never repeated, each action checks its
 * precondition against the provider before acting (a rotation whose primary already moved on
 * is recorded as already done), and a half-done re-wrap resumes from its checkpoint.
 * A failed action stops the remaining actions of the same key, not of other keys.
 */
export interface ApplyOptions {
  runId?: string;
  /**
   * `inline` (default): re-wrap actions run to the end inside this call. `queue`: they are split
   * into shards and sent to ctx.queue for workers (runRewrapShard); the action and the key's later
   * actions wait (`awaiting_rewrap`) and finish on a later apply once the job is done.
   */
  rewrap?: 'inline' | 'queue';
  /** Shards per queued re-wrap job (default 4). */
  shards?: number;
}

export async function applyPlan(
  ctx: RekeyContext,
  plan: Plan,
  opts: ApplyOptions = {},
): Promise<ApplyReport> {
  if (opts.rewrap === 'queue' && !ctx.queue) {
    throw new ConfigError('queued re-wraps need a work queue, and none is configured');
  }
  // A changed config that needs approvals (policy_change, rotation_period_lowered) stops here.
  await checkConfigChange(ctx);
  const run: ApplyRun = {
    id:
      opts.runId ??
      `run-${ctx.clock.now().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomUUID().slice(0, 8)}`,
    planId: plan.id,
    startedAt: ctx.clock.now().toISOString(),
    status: 'running',
  };
  await ctx.state.saveRun(run);
  await ctx.audit.append({
    actor: ctx.actor,
    action: 'apply.started',
    target: plan.id,
    details: { runId: run.id },
  });

  const records = new Map<number, ActionRecord>();
  for (const r of await ctx.state.getActionRecords(plan.id)) records.set(r.index, r);
  const failedKeys = new Map<string, number>();
  const waitingKeys = new Map<string, number>();
  const outcomes: ActionOutcome[] = [];

  for (let index = 0; index < plan.actions.length; index++) {
    const action = plan.actions[index]!;
    const prev = records.get(index);
    // An action waiting for approvals is asked again: the approvals may have arrived.
    if (prev && FINISHED.includes(prev.status) && prev.status !== 'awaiting_approval') {
      outcomes.push(outcomeOf(index, action, prev));
      continue;
    }
    const base: ActionRecord = {
      planId: plan.id,
      index,
      status: 'running',
      attempts: (prev?.attempts ?? 0) + 1,
      updatedAt: ctx.clock.now().toISOString(),
    };
    const waitingOn = waitingKeys.get(action.keyRef);
    if (waitingOn !== undefined) {
      const rec: ActionRecord = {
        ...base,
        status: 'awaiting_rewrap',
        error: `waiting for the queued re-wrap (action ${waitingOn})`,
      };
      await ctx.state.putActionRecord(rec);
      records.set(index, rec);
      outcomes.push(outcomeOf(index, action, rec));
      continue;
    }
    const blockedBy = failedKeys.get(action.keyRef);
    if (blockedBy !== undefined) {
      const rec: ActionRecord = {
        ...base,
        status: 'skipped',
        error: `skipped: action ${blockedBy} on this key failed`,
      };
      await ctx.state.putActionRecord(rec);
      records.set(index, rec);
      outcomes.push(outcomeOf(index, action, rec));
      continue;
    }
    ctx.onProgress?.({
      kind: 'action_start',
      index,
      total: plan.actions.length,
      type: action.type,
      keyRef: action.keyRef,
    });
    await ctx.state.putActionRecord(base);
    let rec: ActionRecord;
    const leaseName = `key:${action.keyRef}`;
    try {
      if (!(await acquireLease(ctx, leaseName))) {
        throw new ActionSkipped('another rekey process holds the lease on this key; try again later');
      }
      const result = await executeAction(ctx, plan, index, action, records, opts);
      rec = { ...base, status: result.status, updatedAt: ctx.clock.now().toISOString() };
      if (result.status === 'awaiting_rewrap') waitingKeys.set(action.keyRef, index);
      if (result.result) rec.result = result.result;
      if (result.error) {
        rec.error = result.error;
        failedKeys.set(action.keyRef, index);
      }
    } catch (e) {
      const skipped = e instanceof ActionSkipped;
      rec = {
        ...base,
        status: skipped ? 'skipped' : 'failed',
        error: errorMessage(e),
        updatedAt: ctx.clock.now().toISOString(),
      };
      failedKeys.set(action.keyRef, index);
      await ctx.audit.append({
        actor: ctx.actor,
        action: `action.${rec.status}`,
        target: action.keyRef,
        details: { planId: plan.id, index, type: action.type, error: rec.error },
      });
    } finally {
      await ctx.state.releaseLease(leaseName, ctx.instanceId);
    }
    await ctx.state.putActionRecord(rec);
    records.set(index, rec);
    outcomes.push(outcomeOf(index, action, rec));
    ctx.onProgress?.({
      kind: 'action_end',
      index,
      total: plan.actions.length,
      type: action.type,
      keyRef: action.keyRef,
      status: rec.status,
    });
  }

  const anyFailed = outcomes.some(
    (o) => o.status === 'failed' || o.status === 'skipped' || o.status === 'awaiting_rewrap',
  );
  const finished: ApplyRun = {
    ...run,
    finishedAt: ctx.clock.now().toISOString(),
    status: anyFailed
      ? outcomes.some((o) => FINISHED.includes(o.status))
        ? 'partial'
        : 'failed'
      : 'completed',
  };
  await ctx.state.saveRun(finished);
  const totals = totalsOf(outcomes);
  await ctx.audit.append({
    actor: ctx.actor,
    action: 'apply.finished',
    target: plan.id,
    details: { runId: run.id, status: finished.status, ...totals },
  });
  return { runId: run.id, planId: plan.id, status: finished.status, outcomes, totals };
}

function outcomeOf(index: number, action: PlanAction, rec: ActionRecord): ActionOutcome {
  return {
    index,
    type: action.type,
    keyRef: action.keyRef,
    status: rec.status,
    ...(rec.result ? { result: rec.result } : {}),
    ...(rec.error ? { error: rec.error } : {}),
  };
}

function totalsOf(outcomes: ActionOutcome[]): ApplyReport['totals'] {
  const t = {
    rotated: 0,
    rewrapped: 0,
    verified: 0,
    failed: 0,
    retired: 0,
    destroyScheduled: 0,
    awaitingApproval: 0,
  };
  for (const o of outcomes) {
    const ok = o.status === 'done' || o.status === 'already_done';
    if (o.type === 'rotate' && ok) t.rotated++;
    if (o.type === 'disable_version' && ok) t.retired++;
    if (o.type === 'schedule_destroy' && ok) t.destroyScheduled++;
    if (o.status === 'awaiting_approval') t.awaitingApproval++;
    if (o.type === 'rewrap' && o.result) {
      t.rewrapped += Number(o.result.rewrapped ?? 0);
      t.verified += Number(o.result.verified ?? 0);
      t.failed += Number(o.result.failed ?? 0);
    }
  }
  return t;
}

type Executed = { status: ActionStatus; result?: Record<string, unknown>; error?: string };

/** The version a disable/destroy action names: literal, or the primary this plan's rotation replaced. */
function resolveVersion(
  plan: Plan,
  index: number,
  keyRef: string,
  version: string,
  records: Map<number, ActionRecord>,
): string {
  if (version !== 'previous-primary') return version;
  for (let i = index - 1; i >= 0; i--) {
    const a = plan.actions[i]!;
    if (a.type === 'rotate' && a.keyRef === keyRef) {
      const r = records.get(i);
      if (!r || !FINISHED.includes(r.status))
        throw new ActionSkipped(`the rotation (action ${i}) has not completed`);
      return a.expectPrimary;
    }
  }
  throw new RekeyError(
    'PLAN_INVALID',
    `action ${index}: previous-primary without a rotation of ${keyRef} before it`,
  );
}

async function executeAction(
  ctx: RekeyContext,
  plan: Plan,
  index: number,
  action: PlanAction,
  records: Map<number, ActionRecord>,
  opts: ApplyOptions,
): Promise<Executed> {
  const provider = providerById(ctx, action.provider);
  const ref = parseKeyRef(action.keyRef);
  const audit = (what: string, details: Record<string, unknown>) =>
    ctx.audit.append({
      actor: ctx.actor,
      action: what,
      target: action.keyRef,
      details: { planId: plan.id, index, ...details },
    });

  switch (action.type) {
    case 'rotate': {
      const key = await provider.getKey(ref);
      if (key.primaryVersion !== action.expectPrimary) {
        await audit('key.rotation_already_done', {
          expectPrimary: action.expectPrimary,
          primary: key.primaryVersion,
        });
        return {
          status: 'already_done',
          result: { previousPrimary: action.expectPrimary, primary: key.primaryVersion },
        };
      }
      // Imported material: the new version is new material from the policy's BYOK source. Few
      // rotations are BYOK ones, so that module loads with the first (a bundle keeps it apart).
      const imported = action.byok
        ? await (await import('./byok.js')).rotateImportedKey(ctx, provider, key, action.byok)
        : undefined;
      const v = imported ? imported.version : await provider.rotate(ref);
      await audit('key.rotated', {
        previousPrimary: action.expectPrimary,
        primary: v.id,
        policy: action.policy,
        ...(imported ? { source: imported.sourceRef, algorithm: imported.algorithm } : {}),
      });
      await publishEvents(ctx, [
        {
          type: 'KeyRotated',
          id: `${plan.id}:${index}`,
          time: ctx.clock.now().toISOString(),
          detail: {
            keyRef: action.keyRef,
            providerId: action.provider,
            previousVersion: action.expectPrimary,
            newVersion: v.id,
            reason: 'policy',
            policy: action.policy,
            planId: plan.id,
          },
        },
      ]);
      return { status: 'done', result: { previousPrimary: action.expectPrimary, primary: v.id } };
    }
    case 'set_auto_rotation': {
      await provider.setAutoRotation(ref, action.periodDays);
      await audit('key.auto_rotation_set', { periodDays: action.periodDays });
      return { status: 'done', result: { periodDays: action.periodDays } };
    }
    case 'rewrap':
      return opts.rewrap === 'queue'
        ? queueRewrapAction(ctx, plan, index, action, opts.shards ?? 4)
        : runRewrapAction(ctx, plan, index, action);
    case 'disable_version': {
      const version = resolveVersion(plan, index, action.keyRef, action.version, records);
      const key = await provider.getKey(ref);
      const v = key.versions.find((x) => x.id === version);
      if (v && v.state !== 'enabled') return { status: 'already_done', result: { version, state: v.state } };
      const refs = await dekReferences(ctx, action.keyRef, version);
      assertTransition({ key, version, to: 'disabled', dekReferences: refs });
      await requireVerifiedRewrap(ctx, plan, index, action.keyRef, records);
      // Disabling a compromised version is containment, never held back by approvals.
      const compromised = await ctx.state.getRecord(COMPROMISED_KIND, compromisedId(action.keyRef, version));
      const gate: GateResult = compromised
        ? { allowed: true, request: null, approvedBy: [] }
        : await gateAction(ctx, {
            action: 'disable',
            target: action.keyRef,
            subject: { version },
            reason: action.reason,
            policy: action.policy,
          });
      if (!gate.allowed) {
        await audit('version.disable_awaiting_approval', {
          version,
          requestId: gate.request?.id ?? null,
          approvals: gate.request?.approvals.length ?? 0,
          approvalsRequired: gate.request?.quorum ?? null,
        });
        return {
          status: 'awaiting_approval',
          result: {
            version,
            requestId: gate.request?.id ?? null,
            approvalsRequired: gate.request?.quorum ?? null,
          },
        };
      }
      await provider.setVersionState(ref, version, 'disabled');
      if (gate.request) await consumeApproval(ctx, gate.request, `${plan.id}:${index}`);
      await audit('version.disabled', {
        version,
        policy: action.policy,
        ...(gate.request ? { requestId: gate.request.id, approvedBy: gate.approvedBy } : {}),
      });
      await publishEvents(ctx, [
        {
          type: 'VersionRetired',
          id: `${plan.id}:${index}`,
          time: ctx.clock.now().toISOString(),
          detail: {
            keyRef: action.keyRef,
            providerId: action.provider,
            version,
            state: 'disabled',
            ...(gate.request ? { approvedBy: gate.approvedBy } : {}),
          },
        },
      ]);
      return { status: 'done', result: { version } };
    }
    case 'schedule_destroy': {
      const version = resolveVersion(plan, index, action.keyRef, action.version, records);
      const key = await provider.getKey(ref);
      const v = key.versions.find((x) => x.id === version);
      if (v && (v.state === 'destroy_scheduled' || v.state === 'destroyed')) {
        return { status: 'already_done', result: { version, state: v.state } };
      }
      const refs = await dekReferences(ctx, action.keyRef, version);
      assertTransition({ key, version, to: 'destroy_scheduled', dekReferences: refs });
      const gate = await gateAction(ctx, {
        action: 'destroy',
        target: action.keyRef,
        subject: { version },
        reason: action.reason,
        policy: action.policy,
        minQuorum: action.approvalsRequired,
      });
      if (!gate.allowed) {
        const required = gate.request?.quorum ?? action.approvalsRequired;
        await audit('version.destroy_awaiting_approval', {
          version,
          approvalsRequired: required,
          requestId: gate.request?.id ?? null,
          approvals: gate.request?.approvals.length ?? 0,
        });
        return {
          status: 'awaiting_approval',
          result: { version, approvalsRequired: required, requestId: gate.request?.id ?? null },
        };
      }
      const { destroyAt } = await provider.scheduleDestroy(ref, version, action.delayDays);
      if (gate.request) await consumeApproval(ctx, gate.request, `${plan.id}:${index}`);
      await audit('version.destroy_scheduled', {
        version,
        destroyAt,
        delayDays: action.delayDays,
        ...(gate.request ? { requestId: gate.request.id, approvedBy: gate.approvedBy } : {}),
      });
      await publishEvents(ctx, [
        {
          type: 'VersionRetired',
          id: `${plan.id}:${index}`,
          time: ctx.clock.now().toISOString(),
          detail: {
            keyRef: action.keyRef,
            providerId: action.provider,
            version,
            state: 'destroy_scheduled',
            destroyAt,
            ...(gate.request ? { approvedBy: gate.approvedBy } : {}),
          },
        },
      ]);
      return { status: 'done', result: { version, destroyAt } };
    }
  }
}

/** A version is only retired after the re-wrap that emptied it in this plan verified cleanly. */
async function requireVerifiedRewrap(
  ctx: RekeyContext,
  plan: Plan,
  index: number,
  keyRef: string,
  records: Map<number, ActionRecord>,
): Promise<void> {
  for (let i = 0; i < index; i++) {
    const a = plan.actions[i]!;
    if (a.type !== 'rewrap' || a.keyRef !== keyRef) continue;
    const queued = records.get(i)?.result?.jobs as Record<string, string> | undefined;
    for (const storeId of a.stores) {
      const job = await ctx.state.getRewrapJob(queued?.[storeId] ?? rewrapJobId(plan.id, i, storeId));
      if (job?.status !== 'done' || job.counts.failed > 0) {
        throw new ActionSkipped(`the re-wrap of ${storeId} (action ${i}) has not completed cleanly`);
      }
    }
  }
}

export function rewrapJobId(planId: string, index: number, storeId: string): string {
  return `${planId}:${index}:${storeId}`;
}

/**
 * Queued jobs are named by what they move, not by the plan: each scheduled cycle makes a new
 * plan, and all of them must find the one job already under way instead of starting another.
 */
export function queuedRewrapJobId(
  keyRef: string,
  storeId: string,
  toVersion: string,
  fromVersions: string[],
): string {
  const h = createHash('sha256')
    .update(JSON.stringify([keyRef, storeId, toVersion, [...fromVersions].sort()]))
    .digest('hex')
    .slice(0, 24);
  return `rewrap-${h}`;
}

async function queueRewrapAction(
  ctx: RekeyContext,
  plan: Plan,
  index: number,
  action: RewrapAction,
  shards: number,
): Promise<Executed> {
  const provider = providerById(ctx, action.provider);
  const key = await provider.getKey(parseKeyRef(action.keyRef));
  const toVersion = key.primaryVersion;
  const jobs: Record<string, string> = {};
  const perStore: Record<string, RewrapJob['counts']> = {};
  const messages: WorkMessage[] = [];
  const settled: RewrapJob[] = [];
  for (const storeId of action.stores) {
    const jobId = queuedRewrapJobId(action.keyRef, storeId, toVersion, action.fromVersions);
    jobs[storeId] = jobId;
    const spec = {
      jobId,
      keyRef: action.keyRef,
      providerId: action.provider,
      storeId,
      fromVersions: action.fromVersions,
      toVersion,
    };
    await prepareRewrapJob(ctx, spec, shards);
    const job = await settleRewrapJob(ctx, jobId);
    perStore[storeId] = job.counts;
    settled.push(job);
    if (job.status === 'done' && job.counts.failed === 0) continue;
    for (const part of await workJobs(ctx, job)) {
      if (part.status === 'done' && part.counts.failed === 0) continue;
      messages.push({
        kind: 'rewrap-shard',
        jobId: part.id,
        providerId: action.provider,
        verify: action.verify,
        batchSize: action.batchSize,
        ...(action.ratePerSecond ? { ratePerSecond: action.ratePerSecond } : {}),
      });
    }
  }
  const totals = sumCounts(settled);
  const result = { toVersion, ...totals, stores: perStore, jobs };
  if (messages.length === 0) return { status: 'done', result };
  if (settled.every((j) => j.status === 'done') && totals.failed > 0) {
    return {
      status: 'failed',
      result,
      error: `${totals.failed} DEK(s) could not be re-wrapped; see the re-wrap job failures`,
    };
  }
  await ctx.queue!.send(messages);
  await ctx.audit.append({
    actor: ctx.actor,
    action: 'rewrap.queued',
    target: action.keyRef,
    details: { planId: plan.id, index, toVersion, jobs, shards: messages.map((m) => m.jobId) },
  });
  return { status: 'awaiting_rewrap', result: { ...result, queued: messages.length } };
}

async function runRewrapAction(
  ctx: RekeyContext,
  plan: Plan,
  index: number,
  action: RewrapAction,
): Promise<Executed> {
  const provider = providerById(ctx, action.provider);
  const key = await provider.getKey(parseKeyRef(action.keyRef));
  const toVersion = key.primaryVersion;
  const perStore: Record<string, RewrapJob['counts']> = {};
  const jobs: RewrapJob[] = [];
  for (const storeId of action.stores) {
    const startedAt = ctx.clock.now();
    const jobId = rewrapJobId(plan.id, index, storeId);
    const spec = {
      jobId,
      keyRef: action.keyRef,
      providerId: action.provider,
      storeId,
      fromVersions: action.fromVersions,
      toVersion,
    };
    await prepareRewrapJob(ctx, spec);
    await workOnRewrapJob(ctx, jobId, action.provider, {
      verify: action.verify,
      batchSize: action.batchSize,
      ...(action.ratePerSecond ? { ratePerSecond: action.ratePerSecond } : {}),
      onBatch: async () => {
        if (!(await acquireLease(ctx, `key:${action.keyRef}`)))
          throw new ActionSkipped('lost the lease on this key during re-wrap');
      },
    });
    const job = await settleRewrapJob(ctx, jobId);
    perStore[storeId] = job.counts;
    jobs.push(job);
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'rewrap.completed',
      target: action.keyRef,
      details: {
        planId: plan.id,
        index,
        store: storeId,
        toVersion,
        ...job.counts,
        failures: job.failures.slice(0, 10),
      },
    });
    await publishEvents(ctx, [
      rewrapCompletedEvent(job, provider, { startedAt, finishedAt: ctx.clock.now() }),
    ]);
  }
  const totals = sumCounts(jobs);
  const result = { toVersion, ...totals, stores: perStore };
  if (totals.failed > 0) {
    return {
      status: 'failed',
      result,
      error: `${totals.failed} DEK(s) could not be re-wrapped; see the re-wrap job failures`,
    };
  }
  return { status: 'done', result };
}
