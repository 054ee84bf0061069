import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { CatalogData } from '../../shared/core/cost/catalog.js';
import { type PriceCatalog, priceCatalog } from '../../shared/core/cost/priceCatalog.js';
import { ConfigError } from '../../shared/core/errors.js';
import type { RekeyConfig } from '../../shared/core/policy/types.js';
import type { CompiledGlob } from './globs.js';

/**
 * The config as the functions read it: compiled at build time from rekey.yaml by the normal
 * loader (compileConfig.ts), with the price catalog it was validated against, written as JSON.
 * Reading it needs neither the YAML parser nor the schema library, which keeps both out of the
 * bundles; what is checked here is only that the file is such a compilation.
 */
export const COMPILED_FORMAT = 'rekey-compiled-config';
export const COMPILED_FORMAT_VERSION = 1;

export interface CompiledConfig {
  format: typeof COMPILED_FORMAT;
  formatVersion: typeof COMPILED_FORMAT_VERSION;
  /** The source file, relative to the project root: relative paths in it resolve from its folder. */
  source: string;
  compiledAt: string;
  /** The loader's result, without `file` (set where the function runs). */
  config: Omit<RekeyConfig, 'file'>;
  /** The price catalog as validated (data/prices/catalog.json). */
  catalog: CatalogData;
  /**
   * The PEM public keys the config names (`incidents.signing.jws.publicKeyFile`,
   * `approvals.tokens.jws.publicKeyFile`), by the path as written: carried here so that a
   * function needs no file beside its bundle. Public keys only; secrets stay in the environment.
   */
  publicKeys?: Record<string, string>;
  /** Every glob of the config, compiled (globs.ts): the functions carry no glob compiler. */
  globs: Record<string, CompiledGlob>;
}

/** What a function runs on: the config, its prices and the public keys it names. */
export interface FunctionConfig {
  config: RekeyConfig;
  catalog: PriceCatalog;
  publicKeys: Record<string, string>;
  globs: Record<string, CompiledGlob>;
}

/** Reads a compiled config; anything else is a ConfigError naming the file and what is wrong. */
export function readCompiledConfig(path: string, root: string): FunctionConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `cannot read the compiled config ${path}: ${(e as NodeJS.ErrnoException).code ?? e} (\`npm run build\` writes it from rekey.yaml)`,
    );
  }
  const notCompiled = (why: string) =>
    new ConfigError(
      `${path} is not a config compiled for these functions (${why}): they read the JSON that \`npm run build\` compiles from rekey.yaml (docs/serverless-aws.md)`,
    );
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw notCompiled(/^\s*[{[]/.test(text) ? 'not valid JSON' : 'it looks like YAML');
  }
  const c = data as Partial<CompiledConfig> | null;
  if (c?.format !== COMPILED_FORMAT) throw notCompiled('no "format" marker');
  if (c.formatVersion !== COMPILED_FORMAT_VERSION) {
    throw notCompiled(
      `format version ${String(c.formatVersion)}, this build reads ${COMPILED_FORMAT_VERSION}`,
    );
  }
  const cfg = c.config as Partial<RekeyConfig> | undefined;
  const bad = [
    typeof c.source !== 'string' && 'source',
    cfg?.version !== 1 && 'config.version',
    typeof cfg?.digest !== 'string' && 'config.digest',
    !isRecord(cfg?.providers) && 'config.providers',
    !isRecord(cfg?.stores) && 'config.stores',
    !Array.isArray(cfg?.policies) && 'config.policies',
    (typeof c.catalog?.version !== 'string' || !Array.isArray(c.catalog?.prices)) && 'catalog',
    c.publicKeys !== undefined &&
      (!isRecord(c.publicKeys) || Object.values(c.publicKeys).some((v) => typeof v !== 'string')) &&
      'publicKeys',
    (!isRecord(c.globs) ||
      Object.values(c.globs).some((g) => typeof g?.source !== 'string' || typeof g?.flags !== 'string')) &&
      'globs',
  ].filter((x): x is string => typeof x === 'string');
  if (bad.length > 0) throw notCompiled(`missing or malformed: ${bad.join(', ')}`);
  const config = { ...(cfg as Omit<RekeyConfig, 'file'>), file: resolve(root, c.source!) };
  return { config, catalog: priceCatalog(c.catalog!), publicKeys: { ...c.publicKeys }, globs: c.globs! };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
