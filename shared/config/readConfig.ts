import { readFileSync } from 'node:fs';
import { ConfigError } from '../core/errors.js';
import { loadConfig } from '../core/policy/load.js';
import type { RekeyConfig } from '../core/policy/types.js';

/**
 * Reads and validates a config file (YAML, the policy schema). A module of its own, so that
 * what composes from a config validated elsewhere (a worker process handed its parent's, a
 * function reading its compiled config) loads neither the YAML parser nor the schema library.
 */
export function readConfig(configPath: string): RekeyConfig {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${configPath}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  return loadConfig(text, configPath);
}
