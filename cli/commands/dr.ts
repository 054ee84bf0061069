import { createReadStream, createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import type { Command } from 'commander';
import { resolveSecret } from '../../shared/config/secrets.js';
import { ConfigError } from '../../shared/core/errors.js';
import { checkDisasterRecovery } from '../../shared/core/usecases/drCheck.js';
import { backupLines, restoreBackup } from '../../shared/core/usecases/stateBackup.js';
import { EXIT } from '../exitCodes.js';
import { table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

async function* fileLines(path: string): AsyncIterable<string> {
  const rl = createInterface({
    input: createReadStream(path, { encoding: 'utf8' }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of rl) yield `${line}\n`;
}

function backupKey(ref: string | undefined, baseDir: string): Buffer | undefined {
  if (!ref) return undefined;
  if (!ref.startsWith('env:') && !ref.startsWith('file:')) {
    throw new ConfigError('--key must be env:NAME or file:PATH (a key is never given on the command line)');
  }
  return resolveSecret(ref, baseDir, '--key');
}

export function registerDr(program: Command, globals: () => GlobalOptions): void {
  const dr = program.command('dr').description('disaster recovery: where keys can be recovered from');
  dr.command('check')
    .description('per key: locations, copies, deletion protection; flags DEKs left without a recoverable key')
    .action(async () => {
      await withSession(globals(), async (ctx, out) => {
        const report = await checkDisasterRecovery(ctx);
        out.result(report, () => {
          out.line(
            table(
              ['key', 'status', 'locations', 'copies', 'DEKs'],
              report.keys.map((k) => [
                k.keyRef,
                k.status,
                k.locations.join(', ') || '-',
                k.copies.map((c) => `${c.kind}:${c.location}`).join(', ') || 'none',
                Object.values(k.deks).reduce((a, b) => a + b, 0),
              ]),
            ),
          );
          for (const f of report.findings) out.line(`${f.severity.padEnd(8)} ${f.rule}: ${f.message}`);
          out.line(
            `${report.summary.recoverable} recoverable, ${report.summary['single-location']} single-location, ` +
              `${report.summary.unknown} unknown; ${report.summary.critical} critical finding(s)`,
          );
        });
        if (report.summary.critical > 0) process.exitCode = EXIT.failed;
      });
    });

  const state = program.command('state').description("backup and restore of rekey's own state");
  state
    .command('export')
    .description('write every plan, run, job, record and audit entry to a JSON Lines backup')
    .requiredOption('--out <file>', 'backup file to write (replaced atomically)')
    .option('--key <ref>', 'HMAC key for an authenticated backup: env:NAME or file:PATH')
    .action(async (o: { out: string; key?: string }) => {
      await withSession(globals(), async (ctx, out) => {
        const key = backupKey(o.key, ctx.baseDir);
        const target = resolve(o.out);
        const tmp = `${target}.partial`;
        const ws = createWriteStream(tmp, { mode: 0o600 });
        let entries = 0;
        try {
          for await (const line of backupLines(ctx.state, {
            source: ctx.config.state?.type ?? 'sqlite',
            now: ctx.clock.now(),
            ...(key ? { key } : {}),
          })) {
            entries++;
            if (!ws.write(line)) await new Promise<void>((r) => ws.once('drain', () => r()));
          }
          ws.end();
          await finished(ws);
          renameSync(tmp, target);
        } catch (e) {
          ws.destroy();
          rmSync(tmp, { force: true });
          throw e;
        } finally {
          key?.fill(0);
        }
        await ctx.audit.append({
          actor: ctx.actor,
          action: 'state.exported',
          target,
          details: { entries: entries - 2 },
        });
        out.result({ file: target, entries: entries - 2, authenticated: Boolean(o.key) }, () =>
          out.line(`wrote ${entries - 2} entries to ${target}${o.key ? ' (HMAC-authenticated)' : ''}`),
        );
      });
    });
  state
    .command('import <file>')
    .description('restore a backup into an empty state store, after checking the whole file')
    .option('--key <ref>', 'HMAC key the backup was made with: env:NAME or file:PATH')
    .action(async (file: string, o: { key?: string }) => {
      const path = resolve(file);
      if (!existsSync(path)) throw new ConfigError(`backup file ${path} not found`);
      await withSession(globals(), async (ctx, out) => {
        const key = backupKey(o.key, ctx.baseDir);
        try {
          const summary = await restoreBackup(ctx.state, () => fileLines(path), key);
          await ctx.audit.append({
            actor: ctx.actor,
            action: 'state.restored',
            target: path,
            details: {
              entries: summary.entries,
              createdAt: summary.header.createdAt,
              source: summary.header.source,
            },
          });
          out.result(summary, () =>
            out.line(
              `restored ${summary.entries} entries (${Object.entries(summary.byKind)
                .map(([k, n]) => `${n} ${k}`)
                .join(', ')}) from a backup of ${summary.header.createdAt}`,
            ),
          );
        } finally {
          key?.fill(0);
        }
      });
    });
}
