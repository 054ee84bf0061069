import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { composeFrom } from '../../shared/compose.js';
import { readConfig } from '../../shared/config/readConfig.js';
import { verifyAuditChain } from '../../shared/core/audit/auditLog.js';
import {
  appendCheckpoint,
  describeVerification,
  parseKnownCheckpoint,
  verifyAuditWithCheckpoints,
} from '../../shared/core/audit/checkpoints.js';
import { ConfigError, IntegrityError, NotFoundError } from '../../shared/core/errors.js';
import { createMasterKeyFile } from '../../shared/providers/local/masterKey.js';
import { exportAudit, exportAuditToFile } from '../../shared/telemetry/siem/exportAudit.js';
import { hmacSignerFromSecrets } from '../../shared/telemetry/siem/hmacSigner.js';
import { EXIT } from '../exitCodes.js';
import { makeOutput } from '../output.js';
import { packageRoot } from '../packageRoot.js';
import { type GlobalOptions, withSession } from '../session.js';
import { REKEY_VERSION } from '../version.js';

/** The embedded-default config `rekey init` writes: the published example. */
export function localConfigTemplate(): string {
  return readFileSync(join(packageRoot(), 'examples/local.yaml'), 'utf8').replace(
    /^# yaml-language-server: \$schema=\.\.\/schema\//m,
    `# yaml-language-server: $schema=${packageRoot()}/schema/`,
  );
}

export function initWorkspace(dir: string): { dir: string; config: string; created: string[] } {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const config = join(abs, 'rekey.yaml');
  const created: string[] = [];
  if (existsSync(config)) throw new ConfigError(`${config} already exists; refusing to overwrite it`);
  const key = join(abs, 'master.key');
  if (!existsSync(key)) {
    createMasterKeyFile(key);
    created.push(key);
  }
  writeFileSync(config, localConfigTemplate(), { flag: 'wx' });
  created.push(config);
  return { dir: abs, config, created };
}

export function registerMisc(program: Command, globals: () => GlobalOptions): void {
  program
    .command('init')
    .description('create a workspace: rekey.yaml for the embedded default and a 0600 master key')
    .option('--dir <dir>', 'workspace directory', '.')
    .action(async (opts: { dir: string }) => {
      const out = makeOutput(Boolean(globals().json));
      const r = initWorkspace(opts.dir);
      // Creates the keystore, state database and the example application table.
      const ctx = await composeFrom(readConfig(r.config), { createStores: true, actor: 'init' });
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'workspace.initialised',
        target: r.dir,
        details: {},
      });
      await ctx.close();
      out.result(r, () => {
        for (const f of r.created) out.line(`created ${f}`);
        out.line(
          `next: rekey --config ${r.config} keys create my-first-key && rekey --config ${r.config} plan`,
        );
      });
    });

  program
    .command('validate <file>')
    .description('check a config/policy file; errors name file:line:column and the field')
    .action((file: string) => {
      const out = makeOutput(Boolean(globals().json));
      const cfg = readConfig(resolve(file));
      const summary = {
        file: cfg.file,
        valid: true,
        digest: cfg.digest,
        providers: Object.keys(cfg.providers),
        stores: Object.keys(cfg.stores),
        policies: cfg.policies.map((p) => p.name),
      };
      out.result(summary, () =>
        out.line(
          `${file}: valid (${summary.providers.length} provider(s), ${summary.stores.length} store(s), ${summary.policies.length} polic${summary.policies.length === 1 ? 'y' : 'ies'})`,
        ),
      );
    });

  const audit = program.command('audit').description('the hash-chained audit log');
  audit
    .command('verify')
    .description('recompute the chain (and, with --key, every signed checkpoint); names the first bad record')
    .option(
      '--key <ref...>',
      'checkpoint signing key(s), env:NAME or file:PATH (old keys too, after a rotation)',
    )
    .option(
      '--last-known <seq:hash>',
      'a checkpoint kept outside the database: a shorter log is flagged as truncated',
    )
    .action(async (o: { key?: string[]; lastKnown?: string }) => {
      await withSession(globals(), async (ctx, out) => {
        if (!o.key) {
          const r = await verifyAuditChain(ctx.state);
          if (!r.ok) {
            if (out.json) out.result(r, () => {});
            throw new IntegrityError(
              `audit log is broken at record ${r.firstBad!.seq}: ${r.firstBad!.reason}`,
            );
          }
          out.result(r, () => out.line(`audit log OK: ${r.records} record(s), head ${r.headHash}`));
          return;
        }
        const signer = hmacSignerFromSecrets(o.key, ctx.baseDir);
        const r = await verifyAuditWithCheckpoints(ctx.state, signer, {
          ...(o.lastKnown ? { lastKnown: parseKnownCheckpoint(o.lastKnown) } : {}),
        });
        if (!r.ok) {
          if (out.json) out.result(r, () => {});
          throw new IntegrityError(`audit log does not verify:\n  ${describeVerification(r).join('\n  ')}`);
        }
        out.result(r, () => {
          out.line(`audit log OK: ${r.records} record(s), ${r.checkpoints} signed checkpoint(s)`);
          for (const l of describeVerification(r)) out.line(`  ${l}`);
        });
      });
    });
  audit
    .command('checkpoint')
    .description('sign the chain head now; keep the printed seq:hash outside the database')
    .requiredOption('--key <ref>', 'signing key, env:NAME or file:PATH (at least 32 bytes)')
    .action(async (o: { key: string }) => {
      await withSession(globals(), async (ctx, out) => {
        const rec = await appendCheckpoint(
          ctx.state,
          ctx.clock,
          hmacSignerFromSecrets([o.key], ctx.baseDir),
          {
            actor: ctx.actor,
          },
        );
        if (!rec) throw new NotFoundError('the audit log is empty: nothing to sign yet');
        out.result({ seq: rec.seq, hash: rec.hash, lastKnown: `${rec.seq}:${rec.hash}` }, () =>
          out.line(`${rec.seq}:${rec.hash}`),
        );
      });
    });
  audit
    .command('export')
    .description('export for a SIEM: JSON lines, OCSF or CEF (the chain is verified while exporting)')
    .option('--format <f>', 'jsonl | ocsf | cef', 'jsonl')
    .option('--out <file>', 'write to a file (mode 0600) instead of stdout')
    .option('--since <iso>', 'only records at or after this instant')
    .option('--until <iso>', 'only records before this instant')
    .action(async (o: { format: string; out?: string; since?: string; until?: string }) => {
      if (!['jsonl', 'ocsf', 'cef'].includes(o.format))
        throw new ConfigError(`--format must be jsonl, ocsf or cef, not "${o.format}"`);
      await withSession(globals(), async (ctx) => {
        const opts = {
          format: o.format as 'jsonl' | 'ocsf' | 'cef',
          productVersion: REKEY_VERSION,
          ...(o.since ? { since: o.since } : {}),
          ...(o.until ? { until: o.until } : {}),
        };
        const r = o.out
          ? await exportAuditToFile(ctx.state, resolve(o.out), opts)
          : await exportAudit(ctx.state, process.stdout, opts);
        process.stderr.write(
          `exported ${r.exported} of ${r.scanned} record(s); chain ${r.chainValid ? 'valid' : `BROKEN at ${r.firstBad?.seq}`}\n`,
        );
        if (!r.chainValid) process.exitCode = EXIT.integrity;
      });
    });
  audit
    .command('show')
    .description('print audit records (JSON lines)')
    .option('--from <seq>', 'first sequence number', '1')
    .option('--limit <n>', 'how many', '100')
    .action(async (opts: { from: string; limit: string }) => {
      await withSession(globals(), async (ctx) => {
        for (const r of await ctx.state.auditRead(Number(opts.from), Number(opts.limit))) {
          process.stdout.write(`${JSON.stringify(r)}\n`);
        }
      });
    });
}
