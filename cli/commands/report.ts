import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError } from '../../shared/core/errors.js';
import { complianceReport, toHtml, toJson } from '../../shared/core/report/index.js';
import { hmacSignerFromSecrets } from '../../shared/telemetry/siem/hmacSigner.js';
import { type GlobalOptions, withSession } from '../session.js';

function instant(text: string, flag: string): string {
  const t = new Date(text);
  if (Number.isNaN(t.getTime()))
    throw new ConfigError(`${flag} must be a date or ISO-8601 instant, got "${text}"`);
  return t.toISOString();
}

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  const report = program.command('report').description('evidence for auditors');
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
}
