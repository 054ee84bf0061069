import type { Command } from 'commander';
import { summarizePlan } from '../../shared/core/plan/evaluate.js';
import type { CostDelta, Plan } from '../../shared/core/plan/types.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { type Output, table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

function signed(x: number, currency: string): string {
  const v = Math.round(x * 100) / 100;
  const cur = currency === 'USD' ? '$' : `${currency} `;
  return `${v < 0 ? '-' : v > 0 ? '+' : ''}${cur}${Math.abs(v).toFixed(2)}`;
}

function money(d: CostDelta | undefined): string {
  if (!d) return '';
  if (d.monthly === null) return 'unknown';
  return signed(d.monthly, d.currency);
}

export function printPlan(out: Output, plan: Plan): void {
  const s = summarizePlan(plan);
  out.line(`Plan ${plan.id} (${plan.createdAt})`);
  out.line(
    `  ${plan.actions.length} action(s): ${s.rotate} rotate, ${s.rewrap} re-wrap, ${s.disable_version} disable, ${s.schedule_destroy} destroy, ${s.set_auto_rotation} schedule`,
  );
  if (plan.actions.length) {
    out.line();
    out.line(
      table(
        ['#', 'action', 'key', 'policy', 'cost/month', 'why'],
        plan.actions.map((a, i) => [
          i + 1,
          a.type + ('version' in a ? ` ${a.version}` : ''),
          a.keyRef,
          a.policy,
          money(a.costDelta),
          a.reason,
        ]),
        100,
      ),
    );
    const priced = plan.actions.map((a) => a.costDelta).filter((d) => d !== undefined);
    if (priced.length) {
      const unknown = priced.filter((d) => d.monthly === null).length;
      const total = priced.reduce((t, d) => t + (d.monthly ?? 0), 0);
      const oneOff = priced.reduce((t, d) => t + (d.oneOff ?? 0), 0);
      out.line(
        `  cost: ${signed(total, priced[0]!.currency)}/month once applied, ${signed(oneOff, priced[0]!.currency)} one-off${unknown ? ` (${unknown} action(s) priced unknown)` : ''}; prices: catalog ${priced[0]!.catalogVersion}`,
      );
    }
  }
  const notable = plan.findings.filter((f) => f.severity !== 'info' || f.kind === 'outside_window');
  if (notable.length) {
    out.line();
    out.line('Findings:');
    for (const f of notable) out.line(`  ${f.severity.toUpperCase().padEnd(8)} ${f.keyRef}: ${f.message}`);
  }
}

export function registerPlan(program: Command, globals: () => GlobalOptions): void {
  program
    .command('plan')
    .description('inventory keys, evaluate policies and print what apply would do (changes nothing)')
    .action(async () => {
      await withSession(globals(), async (ctx, out) => {
        const { plan, inventory } = await makePlan(ctx);
        out.result(
          { plan, inventory: { id: inventory.id, keys: inventory.keys.length, errors: inventory.errors } },
          () => {
            printPlan(out, plan);
            for (const e of inventory.errors)
              out.note(`warning: provider ${e.providerId} could not be listed: ${e.message}`);
            out.line();
            out.line(`Dry run. Apply it with: rekey apply --plan ${plan.id}`);
          },
        );
      });
    });
}
