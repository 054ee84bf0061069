import type { Command } from 'commander';
import { lastRotatedAt } from '../../shared/core/domain/key.js';
import { takeInventory } from '../../shared/core/usecases/inventory.js';
import { rotateKey } from '../../shared/core/usecases/rotateKey.js';
import { table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

export function registerStatus(program: Command, globals: () => GlobalOptions): void {
  program
    .command('status')
    .description('last plan and runs, re-wrap progress and audit head')
    .action(async () => {
      await withSession(globals(), async (ctx, out) => {
        const plan = await ctx.state.latestPlan();
        const runs = await ctx.state.listRuns(5);
        const records = plan ? await ctx.state.getActionRecords(plan.id) : [];
        const tail = await ctx.state.auditTail();
        const value = {
          latestPlan: plan ? { id: plan.id, createdAt: plan.createdAt, actions: plan.actions.length } : null,
          actions: records.map((r) => ({
            index: r.index,
            status: r.status,
            attempts: r.attempts,
            error: r.error,
          })),
          runs,
          audit: tail ? { records: tail.seq, head: tail.hash } : { records: 0 },
        };
        out.result(value, () => {
          out.line(
            plan
              ? `Latest plan: ${plan.id} (${plan.createdAt}), ${plan.actions.length} action(s)`
              : 'No plan yet.',
          );
          if (records.length) {
            const by: Record<string, number> = {};
            for (const r of records) by[r.status] = (by[r.status] ?? 0) + 1;
            out.line(
              `  actions: ${Object.entries(by)
                .map(([k, v]) => `${v} ${k}`)
                .join(', ')}`,
            );
          }
          if (runs.length) {
            out.line();
            out.line(
              table(
                ['run', 'plan', 'started', 'status'],
                runs.map((r) => [r.id, r.planId, r.startedAt, r.status]),
              ),
            );
          }
          out.line();
          out.line(
            tail ? `Audit log: ${tail.seq} record(s), head ${tail.hash.slice(0, 16)}…` : 'Audit log: empty',
          );
        });
      });
    });
}

export function registerKeys(program: Command, globals: () => GlobalOptions): void {
  const keys = program.command('keys').description('list and create keys');
  keys
    .command('list')
    .description('inventory every configured provider')
    .action(async () => {
      await withSession(globals(), async (ctx, out) => {
        const inv = await takeInventory(ctx);
        out.result(inv, () => {
          out.line(
            table(
              ['key', 'provider', 'primary', 'versions', 'rotated', 'protection', 'tags'],
              inv.keys.map((k) => [
                k.ref,
                k.providerId,
                k.primaryVersion,
                k.versions.map((v) => `${v.id}:${v.state}`).join(' '),
                lastRotatedAt(k).slice(0, 10),
                k.protection,
                Object.entries(k.tags)
                  .map(([a, b]) => `${a}=${b}`)
                  .join(','),
              ]),
            ),
          );
          for (const e of inv.errors)
            out.note(`warning: provider ${e.providerId} could not be listed: ${e.message}`);
        });
      });
    });
  keys
    .command('rotate <keyRef>')
    .description(
      'rotate one key now (a new primary version); re-wrap its DEKs afterwards with `rekey rewrap`',
    )
    .option('--provider <id>', 'configured provider id, when several of the same type exist')
    .option('--reason <text>', 'recorded in the audit log')
    .action(async (keyRef: string, opts: { provider?: string; reason?: string }) => {
      await withSession(globals(), async (ctx, out) => {
        const r = await rotateKey(ctx, keyRef, opts);
        out.result(r, () => out.line(`rotated ${keyRef}: primary ${r.previousPrimary} -> ${r.version.id}`));
      });
    });
  keys
    .command('create <name>')
    .description('create a key on a provider that supports it (the local KMS does)')
    .option('--provider <id>', 'configured provider id (default: the only local provider)')
    .option('--tag <k=v...>', 'tags, repeatable', [])
    .action(async (name: string, opts: { provider?: string; tag: string[] }) => {
      const { createKey } = await import('../keysCreate.js');
      await withSession(globals(), async (ctx, out) => {
        const key = await createKey(ctx, name, opts);
        out.result(key, () => out.line(`created ${key.ref} (version ${key.primaryVersion})`));
      });
    });
}
