import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { exportSPKI } from 'jose';
import picomatch from 'picomatch';
import { parseCatalog } from '../../shared/core/cost/catalog.js';
import { ConfigError } from '../../shared/core/errors.js';
import { GLOB_OPTIONS } from '../../shared/core/policy/glob.js';
import { loadConfig } from '../../shared/core/policy/load.js';
import type { RekeyConfig } from '../../shared/core/policy/types.js';
import { publicKeyFromFile } from '../../shared/governance/signing.js';
import { COMPILED_FORMAT, COMPILED_FORMAT_VERSION, type CompiledConfig } from './config.js';
import type { CompiledGlob } from './globs.js';

/**
 * Build time: rekey.yaml through the normal loader (every problem with its line and column),
 * checked against what the AWS functions carry, with the price catalog validated beside it. The
 * result is what the functions read at run time (config.ts). Nothing here goes into a bundle.
 */

/**
 * The environment variables the functions hold HMAC secrets in (serverless.yml sets them from
 * deployment parameters): a config naming another variable could never verify anything.
 */
export const SECRET_ENV = {
  incidents: 'REKEY_INCIDENT_KEY',
  approvals: 'REKEY_APPROVAL_TOKEN_KEY',
} as const;

/** What the functions carry; anything else would fail every invocation, so it fails the build. */
const CARRIED = {
  providers: ['aws-kms'],
  stores: ['dynamodb'],
  metrics: ['emf'],
} as const;

export async function compileConfig(
  sourcePath: string,
  opts: { root: string; catalogPath?: string; now?: Date },
): Promise<{ compiled: CompiledConfig; notes: string[] }> {
  const path = resolve(sourcePath);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const { file: _file, state, events, ...config } = loadConfig(text, path);
  const refuse: string[] = [];
  for (const [id, p] of Object.entries(config.providers)) {
    if (!(CARRIED.providers as readonly string[]).includes(p.type))
      refuse.push(`providers.${id}: type ${p.type} is not carried by the AWS functions (only aws-kms)`);
  }
  for (const [id, s] of Object.entries(config.stores)) {
    if (!(CARRIED.stores as readonly string[]).includes(s.type))
      refuse.push(`stores.${id}: type ${s.type} is not carried by the AWS functions (only dynamodb)`);
  }
  if (config.metrics && !(CARRIED.metrics as readonly string[]).includes(config.metrics.type)) {
    refuse.push(`metrics: type ${config.metrics.type} is not carried by the AWS functions (only emf)`);
  }
  const incidentEnv = config.incidents?.signing.hmac?.secretEnv;
  if (incidentEnv !== undefined && incidentEnv !== SECRET_ENV.incidents)
    refuse.push(
      `incidents.signing.hmac.secretEnv: the events function reads its secret from ${SECRET_ENV.incidents}, not ${incidentEnv}`,
    );
  const tokenEnv = config.approvals?.tokens?.hmac?.secretEnv;
  if (tokenEnv !== undefined && tokenEnv !== SECRET_ENV.approvals)
    refuse.push(
      `approvals.tokens.hmac.secretEnv: the approvals function reads its secret from ${SECRET_ENV.approvals}, not ${tokenEnv}`,
    );
  if (refuse.length > 0) {
    throw new ConfigError(`${path}: ${refuse.join('; ')}; run that part from the CLI`);
  }
  // serverless.yml gives the functions their state table and event bus.
  const notes = [
    ...(state
      ? [`${path}: state: not used by the AWS functions (their state table is REKEY_STATE_TABLE)`]
      : []),
    ...(events ? [`${path}: events: not used by the AWS functions (their bus is REKEY_EVENT_BUS)`] : []),
  ];
  const catalogPath = opts.catalogPath ?? resolve(opts.root, 'data/prices/catalog.json');
  let catalogJson: unknown;
  try {
    catalogJson = JSON.parse(readFileSync(catalogPath, 'utf8'));
  } catch (e) {
    throw new ConfigError(`price catalog ${catalogPath}: ${(e as Error).message}`);
  }
  const catalog = parseCatalog(catalogJson, `price catalog ${catalogPath}`);
  const publicKeys: Record<string, string> = {};
  for (const [field, jws] of [
    ['incidents.signing.jws', config.incidents?.signing.jws],
    ['approvals.tokens.jws', config.approvals?.tokens?.jws],
  ] as const) {
    if (!jws) continue;
    // Checked now (readable, a PEM public key for the algorithm) rather than at the first event.
    const key = await publicKeyFromFile(jws.publicKeyFile, jws.alg, dirname(path), field);
    publicKeys[jws.publicKeyFile] = await exportSPKI(key);
  }
  const rel = relative(opts.root, path);
  const compiled: CompiledConfig = {
    format: COMPILED_FORMAT,
    formatVersion: COMPILED_FORMAT_VERSION,
    // Inside the project: the same place in the function's root. Elsewhere: its name at the root.
    source: (rel.startsWith('..') || isAbsolute(rel) ? (path.split(sep).pop() ?? rel) : rel)
      .split(sep)
      .join('/'),
    compiledAt: (opts.now ?? new Date()).toISOString(),
    config,
    catalog,
    ...(Object.keys(publicKeys).length > 0 ? { publicKeys } : {}),
    globs: Object.fromEntries(globsOf(config).map((g) => [g, compileGlob(g)])),
  };
  assertJsonData(compiled, 'compiled config');
  return { compiled, notes };
}

/**
 * Every glob the config holds, in the fields the schema declares as globs: policies' name and
 * tag matches, and the AWS provider's rotateByNewKey alias patterns.
 */
export function globsOf(config: Pick<RekeyConfig, 'providers' | 'policies'>): string[] {
  const out = new Set<string>();
  for (const p of Object.values(config.providers))
    if (p.type === 'aws-kms') for (const g of p.rotateByNewKey ?? []) out.add(g);
  for (const p of config.policies) {
    for (const g of p.match.name ?? []) out.add(g);
    for (const g of Object.values(p.match.tags ?? {})) out.add(g);
  }
  return [...out].sort();
}

/** The regular expression picomatch builds for a glob, with rekey's glob options. */
export function compileGlob(glob: string): CompiledGlob {
  const re = picomatch.makeRe(glob, GLOB_OPTIONS);
  return { source: re.source, flags: re.flags };
}

/**
 * The compiled form must survive JSON unchanged: plain objects, arrays, strings, finite numbers,
 * booleans and null. A class instance, a Date or a Map in the loader's result would not, and
 * the functions would then run on something else than what was validated.
 */
function assertJsonData(v: unknown, at: string): void {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new ConfigError(`${at}: ${v} cannot be written as JSON`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      assertJsonData(x, `${at}[${i}]`);
    });
    return;
  }
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new ConfigError(
        `${at}: a ${proto?.constructor?.name ?? 'non-plain'} object cannot be written as JSON`,
      );
    }
    for (const [k, x] of Object.entries(v)) if (x !== undefined) assertJsonData(x, `${at}.${k}`);
    return;
  }
  throw new ConfigError(`${at}: a ${typeof v} cannot be written as JSON`);
}
