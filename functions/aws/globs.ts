import { ValidationError } from '../../shared/core/errors.js';

/**
 * Name and tag globs as the functions match them: each glob of the config was compiled to a
 * regular expression at build time (compileConfig.ts, with the options of
 * shared/core/policy/glob.ts), and the bundles use this module in its place, without the glob
 * compiler. A match is what picomatch answers: the value equals the glob, or the expression
 * matches it; an empty value never matches.
 */
export type GlobMatcher = (value: string) => boolean;

export interface CompiledGlob {
  source: string;
  flags: string;
}

const table = new Map<string, GlobMatcher>();

/** Makes the compiled config's globs available (before anything matches). */
export function registerGlobs(globs: Record<string, CompiledGlob>): void {
  for (const [glob, { source, flags }] of Object.entries(globs)) {
    const re = new RegExp(source, flags);
    table.set(glob, (value) => value !== '' && (value === glob || re.test(value)));
  }
}

/** The matcher of a glob compiled with the config; any other glob is refused. */
export function globMatcher(glob: string): GlobMatcher {
  const m = table.get(glob);
  if (!m) throw new ValidationError(`"${glob}" is not among the globs compiled with the config; build again`);
  return m;
}
