import { createHash } from 'node:crypto';
import { hashRecord } from '../audit/auditLog.js';
import { addDuration, parseDuration } from '../domain/duration.js';
import { ConflictError, NotFoundError, RekeyError, ValidationError } from '../errors.js';
import { type ApprovalRequirement, approvalRequirement } from '../governance/rules.js';
import type { ApprovalAction } from '../policy/types.js';
import type { StateRecord } from '../ports/StateStore.js';
import { canonicalJson } from '../util/canonicalJson.js';
import type { RekeyContext } from './context.js';

/**
 * Dual control. An action that needs M-of-N approvals is refused (and the refusal audited) until
 * a request for exactly that action has M approvals from distinct configured approvers, none of
 * them the requester. Requests are StateStore records (kind `approval`); every change is a
 * conditional write, so concurrent approvers never lose each other's approvals.
 *
 * Use cases for runtimes and the CLI: gateAction (ask before acting), consumeApproval (after
 * acting), approve, deny, getApproval, listApprovals. docs/governance.md has the details.
 */
export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'used';

export interface ApprovalGrant {
  by: string;
  at: string;
  /** The `approval.granted` audit record that vouches for this approval. */
  auditSeq: number;
  auditHash: string;
  comment?: string;
}

export interface ApprovalRequest {
  /** `apr-<hash of action, target, subject>-<n>`: the same action always finds the same request. */
  id: string;
  action: ApprovalAction;
  /** Key ref, or `config` for a change of the config file. */
  target: string;
  /** What exactly is approved: `{version}` for destroy/disable, `{digest, from}` for a config change. */
  subject: Record<string, string>;
  /** Why it was asked for. */
  reason: string;
  requestedBy: string;
  requestedAt: string;
  /** Pending: when it can no longer be approved. Approved: until when it can be used. */
  expiresAt: string;
  /** ISO-8601 duration the request was made with. */
  expiry: string;
  quorum: number;
  /** Who may approve, fixed when the request is made. */
  approvers: string[];
  status: ApprovalStatus;
  approvals: ApprovalGrant[];
  approvedAt?: string;
  denied?: { by: string; at: string; reason: string };
  used?: { at: string; by: string; for: string };
  /** Stored revision (conditional writes). */
  rev: number;
}

export type RefusalKind =
  | 'identity'
  | 'unknown_approver'
  | 'requester'
  | 'duplicate'
  | 'expired'
  | 'closed'
  | 'integrity';

/** An approve or deny that is not allowed. Nothing was changed; the refusal is in the audit log. */
export class ApprovalRefused extends RekeyError {
  readonly kind: RefusalKind;
  readonly requestId: string;
  constructor(kind: RefusalKind, requestId: string, message: string) {
    super('APPROVAL_REFUSED', message);
    this.kind = kind;
    this.requestId = requestId;
  }
}

/** An action needs approvals it does not have (yet). */
export class ApprovalRequired extends RekeyError {
  readonly requestId: string | undefined;
  constructor(message: string, requestId?: string) {
    super('APPROVAL_REQUIRED', message);
    this.requestId = requestId;
  }
}

const KIND = 'approval';
const MAX_CAS_ATTEMPTS = 20;

export function requestIdBase(
  action: ApprovalAction,
  target: string,
  subject: Record<string, string>,
): string {
  return createHash('sha256').update(canonicalJson({ action, target, subject })).digest('hex').slice(0, 16);
}

function fromRecord(rec: StateRecord): ApprovalRequest {
  return { ...(rec.body as unknown as Omit<ApprovalRequest, 'rev'>), rev: rec.rev };
}

function bodyOf(req: ApprovalRequest): Record<string, unknown> {
  const { rev: _rev, ...body } = req;
  return body as unknown as Record<string, unknown>;
}

/** Status as of `now`: an open or approved request past its expiry is expired. */
export function effectiveStatus(req: ApprovalRequest, now: Date): ApprovalStatus {
  if ((req.status === 'pending' || req.status === 'approved') && now.getTime() >= Date.parse(req.expiresAt))
    return 'expired';
  return req.status;
}

export async function getApproval(ctx: RekeyContext, id: string): Promise<ApprovalRequest> {
  const rec = await ctx.state.getRecord(KIND, id);
  if (!rec) throw new NotFoundError(`approval request ${id} not found`);
  const req = fromRecord(rec);
  return { ...req, status: effectiveStatus(req, ctx.clock.now()) };
}

/** Every request (oldest id first), optionally only those with one status as of now. */
export async function listApprovals(
  ctx: RekeyContext,
  opts: { status?: ApprovalStatus } = {},
): Promise<ApprovalRequest[]> {
  const out: ApprovalRequest[] = [];
  const now = ctx.clock.now();
  let afterId: string | undefined;
  for (;;) {
    const page = await ctx.state.listRecords(KIND, { limit: 200, ...(afterId ? { afterId } : {}) });
    for (const rec of page) {
      const req = fromRecord(rec);
      const status = effectiveStatus(req, now);
      if (!opts.status || opts.status === status) out.push({ ...req, status });
    }
    if (page.length < 200) break;
    afterId = page[page.length - 1]!.id;
  }
  return out.sort((a, b) => a.requestedAt.localeCompare(b.requestedAt) || a.id.localeCompare(b.id));
}

/** The newest request for this exact action (open or not), and the number the next one takes. */
async function latestFor(
  ctx: RekeyContext,
  base: string,
): Promise<{ latest: ApprovalRequest | null; next: number }> {
  let latest: ApprovalRequest | null = null;
  for (let n = 1; ; n++) {
    const rec = await ctx.state.getRecord(KIND, `apr-${base}-${n}`);
    if (!rec) return { latest, next: n };
    latest = fromRecord(rec);
  }
}

export interface RequestSpec {
  action: ApprovalAction;
  target: string;
  subject: Record<string, string>;
  reason: string;
  /** Default: ctx.actor. */
  requester?: string;
}

/**
 * The open (or approved, unused) request for this action, or a new one. Idempotent: two
 * processes asking at once get the same request.
 */
export async function requestApproval(
  ctx: RekeyContext,
  spec: RequestSpec,
  req: Pick<ApprovalRequirement, 'quorum' | 'approvers' | 'expiry'>,
): Promise<ApprovalRequest> {
  const base = requestIdBase(spec.action, spec.target, spec.subject);
  const now = ctx.clock.now();
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const { latest, next } = await latestFor(ctx, base);
    if (latest) {
      const status = effectiveStatus(latest, now);
      if (status === 'pending' || status === 'approved') return { ...latest, status };
    }
    const request: ApprovalRequest = {
      id: `apr-${base}-${next}`,
      action: spec.action,
      target: spec.target,
      subject: { ...spec.subject },
      reason: spec.reason,
      requestedBy: spec.requester ?? ctx.actor,
      requestedAt: now.toISOString(),
      expiresAt: addDuration(now, req.expiry).toISOString(),
      expiry: req.expiry.text,
      quorum: req.quorum,
      approvers: [...req.approvers],
      status: 'pending',
      approvals: [],
      rev: 1,
    };
    const ok = await ctx.state.putRecord(
      { kind: KIND, id: request.id, body: bodyOf(request), updatedAt: request.requestedAt },
      0,
    );
    if (!ok) continue;
    await ctx.audit.append({
      actor: request.requestedBy,
      action: 'approval.requested',
      target: request.target,
      details: {
        requestId: request.id,
        approvalAction: request.action,
        ...request.subject,
        approvalsRequired: request.quorum,
        approvers: request.approvers,
        expiresAt: request.expiresAt,
        reason: request.reason,
      },
    });
    return request;
  }
  throw new ConflictError(`could not record an approval request for ${spec.action} on ${spec.target}`);
}

/** Why `by` cannot approve `req` now, or null. */
function whyNot(req: ApprovalRequest, by: string, now: Date): { kind: RefusalKind; message: string } | null {
  const status = effectiveStatus(req, now);
  if (status === 'expired')
    return { kind: 'expired', message: `approval request ${req.id} expired at ${req.expiresAt}` };
  if (status !== 'pending') {
    const how =
      status === 'approved' ? 'already has its approvals' : status === 'denied' ? 'was denied' : 'was used';
    return { kind: 'closed', message: `approval request ${req.id} ${how}; it takes no more approvals` };
  }
  if (by === req.requestedBy)
    return { kind: 'requester', message: `${by} made request ${req.id} and cannot approve it` };
  if (!req.approvers.includes(by))
    return {
      kind: 'unknown_approver',
      message: `${by} is not one of the approvers of request ${req.id} (${req.approvers.join(', ')})`,
    };
  if (req.approvals.some((a) => a.by === by))
    return { kind: 'duplicate', message: `${by} has already approved request ${req.id}` };
  return null;
}

function checkIdentity(by: string, id: string): void {
  if (typeof by !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,127}$/.test(by))
    throw new ApprovalRefused(
      'identity',
      id,
      'an approver identity is required (1-128 letters, digits or . _ @ : / + -)',
    );
}

async function refuse(
  ctx: RekeyContext,
  by: string,
  req: { id: string; target?: string },
  kind: RefusalKind,
  message: string,
  verb: 'approve' | 'deny',
): Promise<never> {
  await ctx.audit.append({
    actor: by || 'unknown',
    action: 'approval.refused',
    target: req.target ?? null,
    details: { requestId: req.id, attempted: verb, refusal: kind, message },
  });
  throw new ApprovalRefused(kind, req.id, message);
}

/**
 * Records `by`'s approval. Refused (ApprovalRefused, audited, nothing changed) for an identity
 * outside the request's approvers, the requester, a second approval by the same identity, an
 * expired request, or a request already approved, denied or used.
 */
export async function approve(
  ctx: RekeyContext,
  id: string,
  opts: { by: string; comment?: string },
): Promise<ApprovalRequest> {
  const { by } = opts;
  try {
    checkIdentity(by, id);
  } catch (e) {
    if (e instanceof ApprovalRefused)
      await refuse(ctx, String(by ?? ''), { id }, e.kind, e.message, 'approve');
    throw e;
  }
  let grant: ApprovalGrant | undefined;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const rec = await ctx.state.getRecord(KIND, id);
    if (!rec) {
      await ctx.audit.append({
        actor: by,
        action: 'approval.refused',
        target: null,
        details: { requestId: id, attempted: 'approve', refusal: 'not_found' },
      });
      throw new NotFoundError(`approval request ${id} not found`);
    }
    const req = fromRecord(rec);
    const now = ctx.clock.now();
    const no = whyNot(req, by, now);
    if (no) {
      if (grant) {
        // Our audit record is written but the approval did not land: say so in the log.
        await ctx.audit.append({
          actor: by,
          action: 'approval.void',
          target: req.target,
          details: { requestId: id, grantSeq: grant.auditSeq, why: no.message },
        });
      }
      return refuse(ctx, by, req, no.kind, no.message, 'approve');
    }
    if (!grant) {
      const audit = await ctx.audit.append({
        actor: by,
        action: 'approval.granted',
        target: req.target,
        details: {
          requestId: id,
          approvalAction: req.action,
          ...req.subject,
          approvals: req.approvals.length + 1,
          approvalsRequired: req.quorum,
          ...(opts.comment ? { comment: opts.comment } : {}),
        },
      });
      grant = {
        by,
        at: audit.ts,
        auditSeq: audit.seq,
        auditHash: audit.hash,
        ...(opts.comment ? { comment: opts.comment } : {}),
      };
    }
    const approvals = [...req.approvals, grant];
    const reached = approvals.length >= req.quorum;
    const next: ApprovalRequest = {
      ...req,
      approvals,
      ...(reached
        ? {
            status: 'approved' as const,
            approvedAt: now.toISOString(),
            // An approval is usable for as long again as the request was open.
            expiresAt: addDuration(now, parseDuration(req.expiry)).toISOString(),
          }
        : {}),
      rev: req.rev + 1,
    };
    if (
      await ctx.state.putRecord({ kind: KIND, id, body: bodyOf(next), updatedAt: now.toISOString() }, req.rev)
    ) {
      if (reached) {
        await ctx.audit.append({
          actor: by,
          action: 'approval.approved',
          target: req.target,
          details: {
            requestId: id,
            approvalAction: req.action,
            ...req.subject,
            approvedBy: approvals.map((a) => a.by),
            approvalsRequired: req.quorum,
            usableUntil: next.expiresAt,
          },
        });
      }
      return next;
    }
  }
  throw new ConflictError(`approval request ${id} kept changing; try again`);
}

/**
 * Closes a request: no approval can be added and it can never be used. Allowed for its
 * approvers and its requester (who withdraws it), while it is pending or approved and unused.
 */
export async function deny(
  ctx: RekeyContext,
  id: string,
  opts: { by: string; reason?: string },
): Promise<ApprovalRequest> {
  const { by } = opts;
  try {
    checkIdentity(by, id);
  } catch (e) {
    if (e instanceof ApprovalRefused) await refuse(ctx, String(by ?? ''), { id }, e.kind, e.message, 'deny');
    throw e;
  }
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const rec = await ctx.state.getRecord(KIND, id);
    if (!rec) throw new NotFoundError(`approval request ${id} not found`);
    const req = fromRecord(rec);
    const now = ctx.clock.now();
    const status = effectiveStatus(req, now);
    if (!req.approvers.includes(by) && by !== req.requestedBy)
      return refuse(
        ctx,
        by,
        req,
        'unknown_approver',
        `${by} is neither an approver nor the requester of request ${req.id}`,
        'deny',
      );
    if (status !== 'pending' && status !== 'approved')
      return refuse(
        ctx,
        by,
        req,
        status === 'expired' ? 'expired' : 'closed',
        `approval request ${id} is ${status}`,
        'deny',
      );
    const reason = (opts.reason ?? '').slice(0, 1000);
    const next: ApprovalRequest = {
      ...req,
      status: 'denied',
      denied: { by, at: now.toISOString(), reason },
      rev: req.rev + 1,
    };
    if (
      await ctx.state.putRecord({ kind: KIND, id, body: bodyOf(next), updatedAt: now.toISOString() }, req.rev)
    ) {
      await ctx.audit.append({
        actor: by,
        action: 'approval.denied',
        target: req.target,
        details: { requestId: id, approvalAction: req.action, ...req.subject, reason },
      });
      return next;
    }
  }
  throw new ConflictError(`approval request ${id} kept changing; try again`);
}

/**
 * The approvals of a request that the audit log vouches for: each must point at an unedited
 * `approval.granted` record by the same identity for the same request, come from a distinct
 * configured approver, and not from the requester. An approval written into the state store
 * by hand counts for nothing.
 */
export async function vouchedApprovals(
  ctx: RekeyContext,
  req: ApprovalRequest,
): Promise<{ valid: ApprovalGrant[]; invalid: { by: string; why: string }[] }> {
  const valid: ApprovalGrant[] = [];
  const invalid: { by: string; why: string }[] = [];
  const seen = new Set<string>();
  for (const g of req.approvals) {
    const bad = (why: string) => invalid.push({ by: String(g.by), why });
    if (seen.has(g.by)) {
      bad('approved twice');
      continue;
    }
    if (!req.approvers.includes(g.by) || g.by === req.requestedBy) {
      bad('not an eligible approver');
      continue;
    }
    const [rec] = Number.isInteger(g.auditSeq) ? await ctx.state.auditRead(g.auditSeq, 1) : [];
    if (!rec || rec.seq !== g.auditSeq) {
      bad(`audit record ${g.auditSeq} is missing`);
      continue;
    }
    const { hash, ...rest } = rec;
    if (
      hash !== g.auditHash ||
      hashRecord(rest) !== hash ||
      rec.action !== 'approval.granted' ||
      rec.actor !== g.by ||
      rec.details.requestId !== req.id
    ) {
      bad(`audit record ${g.auditSeq} does not vouch for it`);
      continue;
    }
    seen.add(g.by);
    valid.push(g);
  }
  return { valid, invalid };
}

export interface GateSpec extends RequestSpec {
  /** The policy governing the key, for policy-level requirements. */
  policy?: string;
  /** At least this many approvals (e.g. a plan action's approvalsRequired). */
  minQuorum?: number;
  /** Use this requirement instead of reading it from the config (config changes). */
  requirement?: ApprovalRequirement;
}

export type GateResult =
  | { allowed: true; request: ApprovalRequest | null; approvedBy: string[] }
  | { allowed: false; request: ApprovalRequest | null; message: string };

/**
 * Asks whether an action may run. When the config requires approvals for it, finds or opens
 * the request; allowed only once the request is approved and every counted approval is
 * vouched for by the audit log. A refusal is audited (`approval.quorum_missing`). Call
 * consumeApproval after the action succeeded.
 */
export async function gateAction(ctx: RekeyContext, spec: GateSpec): Promise<GateResult> {
  const requirement =
    spec.requirement ??
    approvalRequirement(ctx.config, spec.action, {
      ...(spec.policy ? { policy: spec.policy } : {}),
      ...(spec.minQuorum ? { minQuorum: spec.minQuorum } : {}),
    });
  if (!requirement) return { allowed: true, request: null, approvedBy: [] };
  const refused = async (request: ApprovalRequest | null, message: string): Promise<GateResult> => {
    await ctx.audit.append({
      actor: spec.requester ?? ctx.actor,
      action: 'approval.quorum_missing',
      target: spec.target,
      details: {
        approvalAction: spec.action,
        ...spec.subject,
        ...(request ? { requestId: request.id, approvals: request.approvals.length } : {}),
        approvalsRequired: requirement.quorum,
        message,
      },
    });
    return { allowed: false, request, message };
  };
  const eligible = requirement.approvers.filter((a) => a !== (spec.requester ?? ctx.actor));
  if (eligible.length < requirement.quorum) {
    return refused(
      null,
      `${spec.action} of ${spec.target} needs ${requirement.quorum} approval(s) (${requirement.because.join('; ')}) but only ${eligible.length} approver(s) other than ${spec.requester ?? ctx.actor} are configured (approvals.approvers in ${ctx.config.file})`,
    );
  }
  const request = await requestApproval(ctx, spec, requirement);
  if (request.status !== 'approved') {
    return refused(
      request,
      `${spec.action} of ${spec.target} needs ${request.quorum} approval(s); request ${request.id} has ${request.approvals.length}`,
    );
  }
  const { valid, invalid } = await vouchedApprovals(ctx, request);
  if (valid.length < request.quorum) {
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'approval.integrity_failed',
      target: request.target,
      details: { requestId: request.id, invalid },
    });
    return refused(
      request,
      `request ${request.id} is marked approved but only ${valid.length} of its approvals are vouched for by the audit log (${invalid.map((i) => `${i.by}: ${i.why}`).join('; ')})`,
    );
  }
  return { allowed: true, request, approvedBy: valid.map((g) => g.by) };
}

/** Marks an approved request used by the action it allowed; a used request allows nothing more. */
export async function consumeApproval(
  ctx: RekeyContext,
  request: ApprovalRequest,
  usedFor: string,
): Promise<void> {
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const rec = await ctx.state.getRecord(KIND, request.id);
    if (!rec) throw new NotFoundError(`approval request ${request.id} not found`);
    const req = fromRecord(rec);
    if (req.status === 'used') return;
    if (req.status !== 'approved')
      throw new ValidationError(`approval request ${req.id} is ${req.status}, not approved`);
    const now = ctx.clock.now().toISOString();
    const next: ApprovalRequest = {
      ...req,
      status: 'used',
      used: { at: now, by: ctx.actor, for: usedFor },
      rev: req.rev + 1,
    };
    if (await ctx.state.putRecord({ kind: KIND, id: req.id, body: bodyOf(next), updatedAt: now }, req.rev)) {
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'approval.used',
        target: req.target,
        details: {
          requestId: req.id,
          approvalAction: req.action,
          ...req.subject,
          for: usedFor,
          approvedBy: req.approvals.map((a) => a.by),
        },
      });
      return;
    }
  }
  throw new ConflictError(`approval request ${request.id} kept changing; try again`);
}
