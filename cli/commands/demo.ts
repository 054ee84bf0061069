import type { Command } from 'commander';
import { ConfigError } from '../../shared/core/errors.js';
import { runDemo } from '../demo.js';
import { EXIT } from '../exitCodes.js';
import { makeOutput, table } from '../output.js';
import { progressReporter } from '../progress.js';
import type { GlobalOptions } from '../session.js';
import { printReport } from './apply.js';
import { printPlan } from './plan.js';

export function registerDemo(program: Command, globals: () => GlobalOptions): void {
  program
    .command('demo')
    .description(
      'run the whole cycle on the embedded default: seed keys and DEKs, plan, rotate, re-wrap, verify, retire',
    )
    .option('--dir <dir>', 'workspace directory', './.rekey-demo')
    .option('--keys <n>', 'number of keys', '6')
    .option('--deks <n>', 'number of wrapped DEKs', '100000')
    .option('--fresh', 'start over if the directory already holds a demo workspace', false)
    .option('--aws', 'keys in AWS KMS (the bundled emulator, driven by the official SDK)', false)
    .option('--gcp', 'keys in Google Cloud KMS (the bundled gRPC emulator, official client)', false)
    .option('--hsm', 'keys in a PKCS#11 HSM: a SoftHSM2 token created in the workspace', false)
    .option('--azure', 'keys in Azure Key Vault (the bundled HTTPS emulator, official SDK)', false)
    .action(
      async (opts: {
        dir: string;
        keys: string;
        deks: string;
        fresh: boolean;
        aws: boolean;
        gcp: boolean;
        hsm: boolean;
        azure: boolean;
      }) => {
        const picked = (['aws', 'gcp', 'hsm', 'azure'] as const).filter((b) => opts[b]);
        if (picked.length > 1) throw new ConfigError(`pick one of --${picked.join(', --')}`);
        const g = globals();
        const out = makeOutput(Boolean(g.json));
        const progress = progressReporter({ quiet: Boolean(g.quiet) || out.json });
        try {
          const r = await runDemo({
            dir: opts.dir,
            keys: Number(opts.keys),
            deks: Number(opts.deks),
            fresh: opts.fresh,
            backend: picked[0] ?? 'local',
            onProgress: progress.onProgress,
            ...(out.json
              ? {}
              : {
                  onStep: (s: string) => out.line(`== ${s}`),
                  onPlan: (p) => {
                    printPlan(out, p);
                    out.line();
                  },
                }),
          });
          progress.stop();
          const { report, ...summary } = r;
          out.result(summary, () => {
            printReport(out, report);
            out.line();
            out.line(
              table(
                ['rotated', 'rewrapped', 'verified', 'failed', 'retired', 'awaiting approval', 'audit'],
                [
                  [
                    r.rotated,
                    r.rewrapped,
                    r.verified,
                    r.failed,
                    r.retired,
                    r.destroyAwaitingApproval,
                    r.auditOk ? `ok (${r.auditRecords})` : 'BROKEN',
                  ],
                ],
              ),
            );
            out.line(
              `seed ${r.seconds.seed}s, plan ${r.seconds.plan}s, apply ${r.seconds.apply}s (${r.rewrapPerSecond} DEKs/s re-wrapped), check ${r.seconds.verify}s`,
            );
            out.line(`workspace: ${r.workspace} (try: rekey --config ${r.workspace}/rekey.yaml status)`);
            if (r.note) out.line(r.note);
          });
          process.exitCode = r.failed === 0 && r.auditOk && r.deksNotOnPrimary === 0 ? EXIT.ok : EXIT.failed;
        } finally {
          progress.stop();
        }
      },
    );
}
