import type { ChainSigner, KnownCheckpoint } from '../audit/checkpoints.js';
import { verifyAuditWithCheckpoints } from '../audit/checkpoints.js';
import { NotFoundError } from '../errors.js';
import type { AuditRecord, StateStore } from '../ports/StateStore.js';
import type { RekeyContext } from '../usecases/context.js';
import { takeCensus, takeInventory } from '../usecases/inventory.js';
import { buildComplianceReport, type ComplianceReport, type ReportPeriod } from './compliance.js';

/** Audit records whose timestamp falls in [from, to), read in pages. */
export async function readAuditPeriod(
  state: StateStore,
  period: ReportPeriod,
  pageSize = 1000,
): Promise<AuditRecord[]> {
  const from = Date.parse(period.from);
  const to = Date.parse(period.to);
  const out: AuditRecord[] = [];
  for (let seq = 1; ; ) {
    const page = await state.auditRead(seq, pageSize);
    if (page.length === 0) break;
    for (const r of page) {
      const t = Date.parse(r.ts);
      if (t >= from && t < to) out.push(r);
    }
    seq = page[page.length - 1]!.seq + 1;
  }
  return out;
}

export interface ComplianceRunOptions {
  period: ReportPeriod;
  /** `fresh` (default) lists every provider now and records the snapshot; `latest` uses the last snapshot. */
  inventory?: 'fresh' | 'latest';
  /** When given, the audit log is verified with its checkpoints and the outcome goes in the report. */
  signer?: ChainSigner;
  lastKnown?: KnownCheckpoint;
}

/** Gathers inventory, DEK census and audit records, then builds the report. Changes nothing but the snapshot. */
export async function complianceReport(
  ctx: RekeyContext,
  opts: ComplianceRunOptions,
): Promise<ComplianceReport> {
  let keys = (await ctx.state.latestInventory())?.keys;
  if (opts.inventory !== 'latest' || !keys) {
    if (opts.inventory === 'latest')
      throw new NotFoundError('no inventory snapshot yet: run `rekey plan` first');
    keys = (await takeInventory(ctx)).keys;
  }
  const census = await takeCensus(ctx, keys);
  const records = await readAuditPeriod(ctx.state, opts.period);
  let auditIntegrity: Parameters<typeof buildComplianceReport>[0]['auditIntegrity'];
  if (opts.signer) {
    const v = await verifyAuditWithCheckpoints(
      ctx.state,
      opts.signer,
      opts.lastKnown ? { lastKnown: opts.lastKnown } : {},
    );
    auditIntegrity = {
      ok: v.ok,
      records: v.records,
      checkpoints: v.checkpoints,
      problems: v.problems.map((p) => `${p.kind}: ${p.message}`),
      unsignedRecords: v.unsigned?.count ?? 0,
    };
  }
  // State is judged at the end of the period, or now if the period has not ended yet.
  const now = ctx.clock.now();
  const asOf = Date.parse(opts.period.to) < now.getTime() ? opts.period.to : now.toISOString();
  return buildComplianceReport({
    keys,
    config: ctx.config,
    records,
    census,
    period: opts.period,
    asOf,
    ...(auditIntegrity ? { auditIntegrity } : {}),
  });
}
