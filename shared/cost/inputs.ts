import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { costKeyFromManaged } from '../core/cost/fromInventory.js';
import type { CostInventory, UsageCounter } from '../core/cost/types.js';
import type { ManagedKey } from '../core/domain/key.js';
import { ConfigError, NotFoundError } from '../core/errors.js';
import type { InventorySnapshot } from '../core/ports/StateStore.js';
import type { RekeyContext } from '../core/usecases/context.js';
import { takeInventory } from '../core/usecases/inventory.js';
import { parseInventoryFile, parseUsageFile } from './estimate.js';
import { IMPORTERS } from './importers/index.js';

/**
 * Where the cost commands get their inputs: an exported inventory file or the live inventory
 * of the configured providers, plus usage counters from a usage file and provider exports.
 */

export function readInputFile(path: string, what: string): string {
  try {
    return readFileSync(resolve(path), 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, {
      cause: e,
    });
  }
}

/** Counters from a `rekey-usage/1` file and from `FORMAT=FILE` provider exports. */
export function readUsage(opts: { usage?: string; imports?: readonly string[] }): UsageCounter[] {
  const out: UsageCounter[] = [];
  if (opts.usage) out.push(...parseUsageFile(readInputFile(opts.usage, 'usage file'), opts.usage));
  for (const spec of opts.imports ?? []) {
    const eq = spec.indexOf('=');
    const format = spec.slice(0, eq);
    const importer = IMPORTERS[format];
    if (eq <= 0 || !importer) {
      throw new ConfigError(
        `--import "${spec}": write FORMAT=FILE with FORMAT one of ${Object.keys(IMPORTERS).join(', ')}`,
      );
    }
    const file = spec.slice(eq + 1);
    out.push(...importer(readInputFile(file, `${format} export`), file).usage);
  }
  return out;
}

export interface InventoryFromFile {
  inventory: CostInventory;
  exportedAt?: string;
}

export function readInventoryFile(path: string): InventoryFromFile {
  const text = readInputFile(path, 'inventory file');
  const inventory = parseInventoryFile(text, path);
  const exportedAt = (JSON.parse(text) as { exportedAt?: string }).exportedAt;
  return { inventory, ...(exportedAt ? { exportedAt: new Date(exportedAt).toISOString() } : {}) };
}

export interface LiveInventory {
  inventory: CostInventory;
  keys: ManagedKey[];
  takenAt: string;
  /** Providers that could not be listed: their keys are missing. */
  errors: InventorySnapshot['errors'];
}

/**
 * The configured providers' keys as a cost inventory: listed now (and not recorded), or the
 * last recorded snapshot with `latest`.
 */
export async function liveInventory(
  ctx: RekeyContext,
  opts: { latest?: boolean } = {},
): Promise<LiveInventory> {
  let snapshot: InventorySnapshot | null;
  if (opts.latest) {
    snapshot = await ctx.state.latestInventory();
    if (!snapshot)
      throw new NotFoundError(
        'no inventory snapshot yet: run `rekey plan` or `rekey inventory export` first',
      );
  } else {
    snapshot = await takeInventory(ctx, { record: false });
  }
  return {
    inventory: { keys: snapshot.keys.map((k) => costKeyFromManaged(k)), pools: [] },
    keys: snapshot.keys,
    takenAt: snapshot.takenAt,
    errors: snapshot.errors,
  };
}
