import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { readConfig } from '../../shared/config/readConfig.js';
import type { PriceCatalog } from '../../shared/core/cost/catalog.js';
import type { CostInventory, UsageCounter } from '../../shared/core/cost/types.js';
import { ConfigError } from '../../shared/core/errors.js';
import type { DekCensus } from '../../shared/core/plan/evaluate.js';
import type { Policy, RekeyConfig } from '../../shared/core/policy/types.js';
import type { MetricsSink } from '../../shared/core/ports/MetricsSink.js';
import { takeCensus } from '../../shared/core/usecases/inventory.js';
import { loadCatalog } from '../../shared/cost/catalogFile.js';
import { IMPORTERS } from '../../shared/cost/importers/index.js';
import { liveInventory, readInventoryFile, readUsage } from '../../shared/cost/inputs.js';
import { makeOutput, type Output } from '../output.js';
import { configPathOf, type GlobalOptions, withSession } from '../session.js';

/**
 * The inputs every cost command shares: an exported inventory (`--inventory FILE`) or the
 * live inventory of the config's providers, usage counters, price overrides, and the config's
 * policies when there is a config.
 */
export interface CostSourceFlags {
  inventory?: string;
  usage?: string;
  import?: string[];
  overrides?: string;
  latest?: boolean;
}

export interface CostInputs {
  inventory: CostInventory;
  usage: UsageCounter[];
  policies: Policy[];
  catalog: PriceCatalog;
  /** The inventory's moment: its export time (file) or now (live). */
  now: string;
  /** One line saying where the inventory came from. */
  source: string;
  config?: RekeyConfig;
  census?: DekCensus;
  /** The config's metrics sink (live mode only). */
  metrics?: MetricsSink;
}

export function addSourceOptions(cmd: Command): Command {
  return cmd
    .option('--inventory <file>', 'an exported inventory (rekey-inventory/1) instead of the live one')
    .option('--latest', 'use the last recorded inventory snapshot instead of listing providers now', false)
    .option('--usage <file>', 'usage counters (rekey-usage/1)')
    .option('--import <format=file...>', `usage from provider exports: ${Object.keys(IMPORTERS).join(', ')}`)
    .option('--overrides <file>', 'negotiated rates / currency (YAML or JSON)');
}

export function checkPeriod(text: string, flag = '--period'): string {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(text)) throw new ConfigError(`${flag} must be YYYY-MM, got "${text}"`);
  return text;
}

/** The config when one is given or found, for its policies; an exported inventory needs none. */
function optionalConfig(g: GlobalOptions): RekeyConfig | undefined {
  const explicit = g.config ?? process.env.REKEY_CONFIG;
  if (!explicit && !existsSync(resolve('rekey.yaml'))) return undefined;
  return readConfig(configPathOf(g));
}

export async function withCostInputs<T>(
  g: GlobalOptions,
  o: CostSourceFlags,
  fn: (inputs: CostInputs, out: Output) => Promise<T>,
  opts: { census?: boolean } = {},
): Promise<T> {
  // Everything that can be checked without providers is checked first: bad input changes nothing.
  const usage = readUsage({
    ...(o.usage ? { usage: o.usage } : {}),
    ...(o.import ? { imports: o.import } : {}),
  });
  const catalog = loadCatalog(o.overrides ? { overridesPath: resolve(o.overrides) } : {});
  if (o.inventory) {
    if (o.latest)
      throw new ConfigError('--latest reads the recorded inventory: it cannot be used with --inventory');
    const file = readInventoryFile(o.inventory);
    const config = optionalConfig(g);
    const out = makeOutput(Boolean(g.json));
    if (!config) out.note('note: no config file: keys are priced without policies');
    return fn(
      {
        inventory: file.inventory,
        usage,
        policies: config?.policies ?? [],
        catalog,
        now: file.exportedAt ?? new Date().toISOString(),
        source: `inventory file ${resolve(o.inventory)}${file.exportedAt ? ` exported ${file.exportedAt}` : ''}`,
        ...(config ? { config } : {}),
      },
      out,
    );
  }
  return withSession({ ...g, quiet: true }, async (ctx, out) => {
    const live = await liveInventory(ctx, { latest: Boolean(o.latest) });
    for (const e of live.errors) {
      out.note(`warning: provider ${e.providerId} could not be listed (${e.message}): its keys are missing`);
    }
    const census = opts.census ? await takeCensus(ctx, live.keys) : undefined;
    return fn(
      {
        inventory: live.inventory,
        usage,
        policies: ctx.config.policies,
        catalog,
        now: o.latest ? live.takenAt : ctx.clock.now().toISOString(),
        source: `${o.latest ? 'recorded' : 'live'} inventory of ${ctx.config.file} taken ${live.takenAt}`,
        config: ctx.config,
        ...(census ? { census } : {}),
        ...(ctx.metrics ? { metrics: ctx.metrics } : {}),
      },
      out,
    );
  });
}
