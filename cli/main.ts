import { Command, CommanderError } from 'commander';
import { errorMessage, PolicyError } from '../shared/core/errors.js';
import { EXIT, exitCodeFor } from './exitCodes.js';
import type { GlobalOptions } from './session.js';
import { REKEY_VERSION } from './version.js';

type Register = (program: Command, globals: () => GlobalOptions) => void;

/**
 * The commands, in help order, by module. A run loads only the module of the command it runs
 * (all of them for help or an unknown command): every module pulls in what its commands need,
 * and a process that only re-wraps (a worker of `rekey rewrap --workers N`) should not pay
 * for the cost reports, approvals or BYOK code at start-up.
 */
const MODULES: { commands: string[]; load: () => Promise<Register[]> }[] = [
  {
    commands: ['init', 'validate', 'audit'],
    load: async () => [(await import('./commands/misc.js')).registerMisc],
  },
  { commands: ['plan'], load: async () => [(await import('./commands/plan.js')).registerPlan] },
  { commands: ['apply'], load: async () => [(await import('./commands/apply.js')).registerApply] },
  { commands: ['rewrap'], load: async () => [(await import('./commands/rewrap.js')).registerRewrap] },
  {
    commands: ['status', 'keys'],
    load: async () => {
      const m = await import('./commands/status.js');
      return [m.registerStatus, m.registerKeys];
    },
  },
  { commands: ['demo'], load: async () => [(await import('./commands/demo.js')).registerDemo] },
  { commands: ['report'], load: async () => [(await import('./commands/report.js')).registerReport] },
  { commands: ['cost'], load: async () => [(await import('./commands/cost.js')).registerCost] },
  { commands: ['dr', 'state'], load: async () => [(await import('./commands/dr.js')).registerDr] },
  { commands: ['byok'], load: async () => [(await import('./commands/byok.js')).registerByok] },
  {
    commands: ['inventory'],
    load: async () => [(await import('./commands/inventory.js')).registerInventory],
  },
  { commands: ['incident'], load: async () => [(await import('./commands/incident.js')).registerIncident] },
  {
    commands: ['approvals'],
    load: async () => [(await import('./commands/approvals.js')).registerApprovals],
  },
];

/** Global options that take a value (the command name comes after them). */
const VALUE_OPTIONS = new Set(['-c', '--config', '--state']);

/**
 * The command modules a run needs: the one of the command `argv` names, none for a version
 * flag before any command (it prints and exits), every one for help, an unknown command or
 * no command at all (help and commander's suggestions list them all).
 */
function modulesFor(argv: string[]): typeof MODULES {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a)) i++;
    else if (a === '-V' || a === '--version') return [];
    else if (a === '-h' || a === '--help') return MODULES;
    else if (!a.startsWith('-')) {
      const m = MODULES.find((x) => x.commands.includes(a));
      return m ? [m] : MODULES;
    }
  }
  return MODULES;
}

/** The program with every command, or with only the one `argv` runs when it names one. */
export async function buildProgram(argv?: string[]): Promise<Command> {
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
  for (const m of argv ? modulesFor(argv) : MODULES)
    for (const register of await m.load()) register(program, globals);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
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
