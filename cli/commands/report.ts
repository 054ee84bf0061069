import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { buildCostDashboard } from '../../shared/core/cost/dashboard.js';
import { costReportHtml } from '../../shared/core/cost/html.js';
import { ConfigError } from '../../shared/core/errors.js';
import { complianceReport, toHtml, toJson } from '../../shared/core/report/index.js';
import { hmacSignerFromSecrets } from '../../shared/telemetry/siem/hmacSigner.js';
import { type GlobalOptions, withSession } from '../session.js';
import { addSourceOptions, type CostSourceFlags, withCostInputs } from './costInputs.js';
import { writeAtomically } from './inventory.js';

function instant(text: string, flag: string): string {
  const t = new Date(text);
  if (Number.isNaN(t.getTime()))
    throw new ConfigError(`${flag} must be a date or ISO-8601 instant, got "${text}"`);
  return t.toISOString();
}

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  const report = program.command('report').description('evidence for auditors and FinOps: compliance, cost');
  report
    .command('compliance')
    .description(
      'per policy and key: rotations, ages vs policy, versions, re-wrap status, approvals, violations',
    )
    .option('--html <file>', 'write a self-contained HTML page')
    .option('--from <date>', 'period start (default: 90 days ago)')
    .option('--to <date>', 'period end (default: now)')
    .option(
      '--key <ref...>',
      'audit checkpoint key(s): the report then states whether the signed log verifies',
    )
    .option('--latest', 'use the last inventory snapshot instead of listing providers now', false)
    .action(async (o: { html?: string; from?: string; to?: string; key?: string[]; latest: boolean }) => {
      await withSession(globals(), async (ctx, out) => {
        const to = o.to ? instant(o.to, '--to') : ctx.clock.now().toISOString();
        const from = o.from
          ? instant(o.from, '--from')
          : new Date(new Date(to).getTime() - 90 * 86_400_000).toISOString();
        if (from > to) throw new ConfigError(`--from (${from}) is after --to (${to})`);
        const r = await complianceReport(ctx, {
          period: { from, to },
          inventory: o.latest ? 'latest' : 'fresh',
          ...(o.key ? { signer: hmacSignerFromSecrets(o.key, ctx.baseDir) } : {}),
        });
        if (o.html) {
          writeFileSync(resolve(o.html), toHtml(r), { mode: 0o644 });
          out.note(`wrote ${resolve(o.html)}`);
        }
        if (out.json || !o.html) process.stdout.write(toJson(r));
      });
    });
  addSourceOptions(
    report
      .command('cost')
      .description(
        'cost by provider and policy over time, top keys, findings and rotation compliance, as one self-contained HTML page',
      )
      .option('--html <file>', 'write the page here (default: print the data as JSON)')
      .option('--history <n>', 'months priced from the inventory, the current one included', '6')
      .option('--ahead <n>', 'months forecast after the current one', '6')
      .option('--top <n>', 'how many of the most expensive keys to show', '10'),
  ).action(async (o: CostSourceFlags & { html?: string; history: string; ahead: string; top: string }) => {
    const whole = (text: string, flag: string, min: number, max: number) => {
      const n = Number(text);
      if (!/^\d+$/.test(text) || n < min || n > max)
        throw new ConfigError(`${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
      return n;
    };
    const history = whole(o.history, '--history', 1, 36);
    const ahead = whole(o.ahead, '--ahead', 0, 36);
    const top = whole(o.top, '--top', 1, 1000);
    await withCostInputs(
      globals(),
      o,
      async (inp, out) => {
        const dashboard = buildCostDashboard({
          inventory: inp.inventory,
          usage: inp.usage,
          policies: inp.policies,
          catalog: inp.catalog,
          now: inp.now,
          historyMonths: history,
          forecastMonths: ahead,
          topKeys: top,
          ...(inp.census ? { census: inp.census } : {}),
          source: inp.source,
        });
        if (o.html) {
          const path = resolve(o.html);
          writeAtomically(path, costReportHtml(dashboard));
          out.note(`wrote ${path}`);
        }
        if (out.json || !o.html) process.stdout.write(`${JSON.stringify(dashboard, null, 2)}\n`);
      },
      { census: true },
    );
  });
}
