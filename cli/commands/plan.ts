import type { Command } from 'commander';
import { summarizePlan } from '../../shared/core/plan/evaluate.js';
import type { Plan } from '../../shared/core/plan/types.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { type Output, table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

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
        ['#', 'action', 'key', 'policy', 'why'],
        plan.actions.map((a, i) => [
          i + 1,
          a.type + ('version' in a ? ` ${a.version}` : ''),
          a.keyRef,
          a.policy,
          a.reason,
        ]),
        100,
      ),
    );
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
