import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Composed, compose } from '../shared/compose.js';
import { ConfigError } from '../shared/core/errors.js';
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

/** Composes the context for one command, runs it, and always closes adapters. */
export async function withSession<T>(
  g: GlobalOptions,
  fn: (ctx: Composed, out: Output) => Promise<T>,
): Promise<T> {
  const out = makeOutput(Boolean(g.json));
  const progress = progressReporter({ quiet: Boolean(g.quiet) });
  const ctx = await compose({
    configPath: configPathOf(g),
    ...(g.state ? { statePath: resolve(g.state) } : {}),
    onProgress: progress.onProgress,
  });
  try {
    return await fn(ctx, out);
  } finally {
    progress.stop();
    await ctx.close();
  }
}
