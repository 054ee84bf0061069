import { Command, CommanderError } from 'commander';
import { errorMessage, PolicyError } from '../shared/core/errors.js';
import { registerApply } from './commands/apply.js';
import { registerApprovals } from './commands/approvals.js';
import { registerByok } from './commands/byok.js';
import { registerCost } from './commands/cost.js';
import { registerDemo } from './commands/demo.js';
import { registerDr } from './commands/dr.js';
import { registerIncident } from './commands/incident.js';
import { registerInventory } from './commands/inventory.js';
import { registerMisc } from './commands/misc.js';
import { registerPlan } from './commands/plan.js';
import { registerReport } from './commands/report.js';
import { registerRewrap } from './commands/rewrap.js';
import { registerKeys, registerStatus } from './commands/status.js';
import { EXIT, exitCodeFor } from './exitCodes.js';
import type { GlobalOptions } from './session.js';
import { REKEY_VERSION } from './version.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('rekey')
    .description('Keeps encryption keys rotated, data keys re-wrapped and KMS spend visible.')
    .version(REKEY_VERSION)
    .option('-c, --config <file>', 'config file (default: $REKEY_CONFIG or ./rekey.yaml)')
    .option('--state <file>', 'state database (default: state.db beside the config)')
    .option('--json', 'machine-readable output on stdout', false)
    .option('-q, --quiet', 'no progress output', false)
    .showHelpAfterError()
    .exitOverride();
  const globals = () => program.opts<GlobalOptions>();
  registerMisc(program, globals);
  registerPlan(program, globals);
  registerApply(program, globals);
  registerRewrap(program, globals);
  registerStatus(program, globals);
  registerKeys(program, globals);
  registerDemo(program, globals);
  registerReport(program, globals);
  registerCost(program, globals);
  registerDr(program, globals);
  registerByok(program, globals);
  registerInventory(program, globals);
  registerIncident(program, globals);
  registerApprovals(program, globals);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit through here with code 0.
      return e.exitCode === 0 ? EXIT.ok : EXIT.invalid;
    }
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') return EXIT.ok;
    const json = program.opts<GlobalOptions>().json;
    const code = exitCodeFor(e);
    if (json) {
      const err: Record<string, unknown> = {
        error: { code: (e as { code?: string }).code ?? 'INTERNAL', message: errorMessage(e) },
      };
      if (e instanceof PolicyError) (err.error as Record<string, unknown>).issues = e.issues;
      process.stdout.write(`${JSON.stringify(err, null, 2)}\n`);
    }
    process.stderr.write(`rekey: ${errorMessage(e)}\n`);
    if (code === EXIT.internal && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return code;
  }
}
