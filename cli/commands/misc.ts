import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { composeFrom, readConfig } from '../../shared/compose.js';
import { verifyAuditChain } from '../../shared/core/audit/auditLog.js';
import { ConfigError, IntegrityError } from '../../shared/core/errors.js';
import { createMasterKeyFile } from '../../shared/providers/local/masterKey.js';
import { EXIT } from '../exitCodes.js';
import { makeOutput, table } from '../output.js';
import { packageRoot } from '../packageRoot.js';
import { type GlobalOptions, withSession } from '../session.js';

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
    .description('recompute the chain; names the first record that was edited, removed or reordered')
    .action(async () => {
      await withSession(globals(), async (ctx, out) => {
        const r = await verifyAuditChain(ctx.state);
        if (!r.ok) {
          if (out.json) out.result(r, () => {});
          throw new IntegrityError(`audit log is broken at record ${r.firstBad!.seq}: ${r.firstBad!.reason}`);
        }
        out.result(r, () => out.line(`audit log OK: ${r.records} record(s), head ${r.headHash}`));
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
