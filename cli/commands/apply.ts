import type { Command } from 'commander';
import { NotFoundError } from '../../shared/core/errors.js';
import { type ApplyReport, applyPlan } from '../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { EXIT } from '../exitCodes.js';
import { type Output, table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';
import { printPlan } from './plan.js';

export function printReport(out: Output, r: ApplyReport): void {
  out.line();
  out.line(`Run ${r.runId} of ${r.planId}: ${r.status}`);
  if (r.outcomes.length) {
    out.line(
      table(
        ['#', 'action', 'key', 'status', 'detail'],
        r.outcomes.map((o) => [
          o.index + 1,
          o.type,
          o.keyRef,
          o.status,
          o.error ?? (o.result ? summarize(o.result) : ''),
        ]),
        90,
      ),
    );
  }
  const t = r.totals;
  out.line(
    `rotated ${t.rotated}, re-wrapped ${t.rewrapped} (verified ${t.verified}, failed ${t.failed}), retired ${t.retired}, destroy scheduled ${t.destroyScheduled}, awaiting approval ${t.awaitingApproval}`,
  );
}

function summarize(result: Record<string, unknown>): string {
  return Object.entries(result)
    .filter(([, v]) => typeof v !== 'object')
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

export function registerApply(program: Command, globals: () => GlobalOptions): void {
  program
    .command('apply')
    .description('execute a plan: a saved one (--plan ID, resumes where it stopped) or a fresh one')
    .option('--plan <id>', 'apply (or resume) this saved plan')
    .action(async (opts: { plan?: string }) => {
      const code = await withSession(globals(), async (ctx, out) => {
        let plan = opts.plan ? await ctx.state.getPlan(opts.plan) : null;
        if (opts.plan && !plan) throw new NotFoundError(`plan ${opts.plan} not found in the state store`);
        if (!plan) {
          // A run that never finished (crash, kill) is resumed before anything new is planned.
          const [last] = await ctx.state.listRuns(1);
          if (last?.status === 'running') {
            plan = await ctx.state.getPlan(last.planId);
            if (plan) out.note(`resuming plan ${plan.id}: run ${last.id} did not finish`);
          }
        }
        if (!plan) {
          plan = (await makePlan(ctx)).plan;
          if (!out.json) printPlan(out, plan);
        }
        const report = await applyPlan(ctx, plan);
        out.result(report, () => printReport(out, report));
        return report.status === 'completed' ? EXIT.ok : EXIT.failed;
      });
      process.exitCode = code;
    });
}
