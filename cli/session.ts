import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Composed, type ComposeOptions, compose, composeFrom } from '../shared/compose.js';
import { ConfigError } from '../shared/core/errors.js';
import type { RekeyConfig } from '../shared/core/policy/types.js';
import { makeOutput, type Output } from './output.js';
import { progressReporter } from './progress.js';

export interface GlobalOptions {
  config?: string;
  state?: string;
  json?: boolean;
  quiet?: boolean;
}

export function configPathOf(g: GlobalOptions): string {
  const p = resolve(g.config ?? process.env.REKEY_CONFIG ?? 'rekey.yaml');
  if (!existsSync(p)) {
    throw new ConfigError(
      `config file ${p} not found (create one with \`rekey init\`, or pass --config FILE)`,
    );
  }
  return p;
}

/**
 * Composes the context for one command, runs it, and always closes adapters. `from`: a config
 * already validated (a worker process gets its parent's), and what the command never reaches.
 */
export async function withSession<T>(
  g: GlobalOptions,
  fn: (ctx: Composed, out: Output) => Promise<T>,
  from?: { config: RekeyConfig; without?: ComposeOptions['without'] },
): Promise<T> {
  const out = makeOutput(Boolean(g.json));
  const progress = progressReporter({ quiet: Boolean(g.quiet) });
  const opts = {
    ...(g.state ? { statePath: resolve(g.state) } : {}),
    ...(from?.without ? { without: from.without } : {}),
    onProgress: progress.onProgress,
  };
  const ctx = from
    ? await composeFrom(from.config, opts)
    : await compose({ configPath: configPathOf(g), ...opts });
  try {
    return await fn(ctx, out);
  } finally {
    progress.stop();
    await ctx.close();
  }
}
