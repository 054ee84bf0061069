import type { Command } from 'commander';
import { parseDuration } from '../../shared/core/domain/duration.js';
import { ConfigError, ValidationError } from '../../shared/core/errors.js';
import {
  type ApprovalRequest,
  type ApprovalStatus,
  approve,
  deny,
  getApproval,
  listApprovals,
} from '../../shared/core/usecases/approvals.js';
import { hmacSecretFromEnv } from '../../shared/governance/signing.js';
import { MAX_TOKEN_SECONDS, mintApproverToken } from '../../shared/governance/tokens.js';
import { type Output, table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

const STATUSES: ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired', 'used'];

/** The approver: --as, else $REKEY_ACTOR. Never a default: an approval names who gave it. */
function identityOf(as: string | undefined): string {
  const id = as ?? process.env.REKEY_ACTOR;
  if (!id) throw new ValidationError('say who you are: --as IDENTITY or REKEY_ACTOR=IDENTITY');
  return id;
}

function subjectText(r: ApprovalRequest): string {
  return Object.entries(r.subject)
    .map(([k, v]) => `${k}=${k === 'digest' || k === 'from' ? v.slice(0, 12) : v}`)
    .join(' ');
}

export function printApproval(out: Output, r: ApprovalRequest): void {
  out.line(`Approval request ${r.id}: ${r.status}`);
  out.line(`  action     ${r.action} of ${r.target} (${subjectText(r)})`);
  out.line(`  reason     ${r.reason}`);
  out.line(
    `  requested  ${r.requestedAt} by ${r.requestedBy}; ${r.status === 'approved' ? 'usable' : 'open'} until ${r.expiresAt}`,
  );
  out.line(`  approvals  ${r.approvals.length} of ${r.quorum} (approvers: ${r.approvers.join(', ')})`);
  for (const a of r.approvals) out.line(`             ${a.at} ${a.by}${a.comment ? `: ${a.comment}` : ''}`);
  if (r.denied)
    out.line(`  denied     ${r.denied.at} by ${r.denied.by}${r.denied.reason ? `: ${r.denied.reason}` : ''}`);
  if (r.used) out.line(`  used       ${r.used.at} for ${r.used.for}`);
}

export function registerApprovals(program: Command, globals: () => GlobalOptions): void {
  const cmd = program
    .command('approvals')
    .description('dual control: list, approve and deny requests for actions that need M-of-N approvals');
  cmd
    .command('list')
    .description('pending requests (or --status S, or --all)')
    .option('--status <status>', `one of ${STATUSES.join(', ')}`)
    .option('--all', 'every request', false)
    .action(async (o: { status?: string; all: boolean }) => {
      if (o.status && !STATUSES.includes(o.status as ApprovalStatus))
        throw new ValidationError(`--status must be one of ${STATUSES.join(', ')}`);
      await withSession(globals(), async (ctx, out) => {
        const status = o.all ? undefined : ((o.status as ApprovalStatus | undefined) ?? 'pending');
        const list = await listApprovals(ctx, status ? { status } : {});
        out.result(list, () =>
          out.line(
            list.length
              ? table(
                  ['request', 'action', 'target', 'subject', 'status', 'approvals', 'expires'],
                  list.map((r) => [
                    r.id,
                    r.action,
                    r.target,
                    subjectText(r),
                    r.status,
                    `${r.approvals.length}/${r.quorum}`,
                    r.expiresAt,
                  ]),
                )
              : `No ${status ?? ''} approval requests.`.replace('  ', ' '),
          ),
        );
      });
    });
  cmd
    .command('show <id>')
    .description('one request with its approvals')
    .action(async (id: string) => {
      await withSession(globals(), async (ctx, out) => {
        const r = await getApproval(ctx, id);
        out.result(r, () => printApproval(out, r));
      });
    });
  cmd
    .command('approve <id>')
    .description(
      'approve as --as IDENTITY (or $REKEY_ACTOR); refused for the requester, twice, or after expiry',
    )
    .option('--as <identity>', 'approver identity (default: $REKEY_ACTOR)')
    .option('--comment <text>', 'recorded with the approval')
    .action(async (id: string, o: { as?: string; comment?: string }) => {
      const by = identityOf(o.as);
      await withSession(globals(), async (ctx, out) => {
        const r = await approve(ctx, id, { by, ...(o.comment ? { comment: o.comment } : {}) });
        out.result(r, () => printApproval(out, r));
      });
    });
  cmd
    .command('deny <id>')
    .description('deny (close) a request as --as IDENTITY (or $REKEY_ACTOR)')
    .option('--as <identity>', 'approver identity (default: $REKEY_ACTOR)')
    .option('--reason <text>', 'recorded with the denial')
    .action(async (id: string, o: { as?: string; reason?: string }) => {
      const by = identityOf(o.as);
      await withSession(globals(), async (ctx, out) => {
        const r = await deny(ctx, id, { by, ...(o.reason ? { reason: o.reason } : {}) });
        out.result(r, () => printApproval(out, r));
      });
    });
  cmd
    .command('token')
    .description('print a bearer token for the approvals HTTP API (approvals.tokens.hmac)')
    .option('--as <identity>', 'the approver the token names (default: $REKEY_ACTOR)')
    .option('--ttl <duration>', `lifetime, ISO-8601 (at most PT${MAX_TOKEN_SECONDS / 60}M)`, 'PT15M')
    .action(async (o: { as?: string; ttl: string }) => {
      const identity = identityOf(o.as);
      const d = parseDuration(o.ttl);
      const ttl = ((d.days * 24 + d.hours) * 60 + d.minutes) * 60 + d.seconds;
      if (d.years || d.months || d.weeks || !(ttl > 0 && ttl <= MAX_TOKEN_SECONDS))
        throw new ValidationError(`--ttl must be between PT1S and PT${MAX_TOKEN_SECONDS / 60}M`);
      await withSession(globals(), async (ctx, out) => {
        const hmac = ctx.config.approvals?.tokens?.hmac;
        if (!hmac)
          throw new ConfigError(
            `${ctx.config.file}: approvals.tokens.hmac is not set (with jws, tokens come from whoever holds the private key)`,
          );
        if (!ctx.config.approvals!.approvers.includes(identity))
          throw new ValidationError(`${identity} is not one of approvals.approvers`);
        const secret = hmacSecretFromEnv(hmac.secretEnv, 'approvals.tokens.hmac');
        try {
          const token = await mintApproverToken({
            key: secret,
            alg: 'HS256',
            identity,
            now: ctx.clock.now(),
            ttlSeconds: ttl,
          });
          out.result({ token, identity, ttlSeconds: ttl }, () => out.line(token));
        } finally {
          secret.fill(0);
        }
      });
    });
}
