import picomatch from 'picomatch';
import { ValidationError } from '../errors.js';

/**
 * Name and tag globs. Options: `*` also crosses `/` and matches leading dots (key names and tag
 * values are not paths), and unbalanced brackets are an error rather than literal characters, so
 * a typo in a policy is reported instead of silently matching nothing.
 */
export const GLOB_OPTIONS: picomatch.PicomatchOptions = { bash: true, dot: true, strictBrackets: true };

export type GlobMatcher = (value: string) => boolean;

const cache = new Map<string, GlobMatcher>();

/** Compiled, cached matcher for a glob; throws ValidationError if the glob is not valid. */
export function globMatcher(glob: string): GlobMatcher {
  let m = cache.get(glob);
  if (m) return m;
  try {
    const compiled = picomatch(glob, GLOB_OPTIONS);
    m = (value: string) => compiled(value);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new ValidationError(`"${glob}" is not a valid glob: ${why}`);
  }
  cache.set(glob, m);
  return m;
}
