import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { explainKeyCost } from '../../shared/core/cost/model.js';
import { ConfigError } from '../../shared/core/errors.js';
import { loadCatalog } from '../../shared/cost/catalogFile.js';
import { estimateFromFiles } from '../../shared/cost/estimate.js';
import { focusCsv, focusJsonl, focusRows, writeChunks } from '../../shared/cost/focus.js';
import { IMPORTERS } from '../../shared/cost/importers/index.js';
import { makeOutput } from '../output.js';
import type { GlobalOptions } from '../session.js';

function read(path: string, what: string): string {
  try {
    return readFileSync(resolve(path), 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}

export function registerCost(program: Command, globals: () => GlobalOptions): void {
  const cost = program
    .command('cost')
    .description('what keys cost, and why (prices: data/prices/catalog.json)');
  cost
    .command('estimate')
    .description('price an exported inventory and usage for a month, offline (formats: docs/cost.md)')
    .requiredOption('--inventory <file>', 'inventory JSON (keys, versions with their history)')
    .requiredOption('--period <yyyy-mm>', 'the month to price')
    .option('--usage <file>', 'usage JSON (request counts per key and class)')
    .option('--import <format=file...>', `usage from provider exports: ${Object.keys(IMPORTERS).join(', ')}`)
    .option('--overrides <file>', 'negotiated rates / currency (YAML or JSON)')
    .option('--format <f>', 'text | json | focus-csv | focus-jsonl', 'text')
    .action(
      async (o: {
        inventory: string;
        period: string;
        usage?: string;
        import?: string[];
        overrides?: string;
        format: string;
      }) => {
        if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(o.period))
          throw new ConfigError(`--period must be YYYY-MM, got "${o.period}"`);
        if (!['text', 'json', 'focus-csv', 'focus-jsonl'].includes(o.format)) {
          throw new ConfigError(`--format must be text, json, focus-csv or focus-jsonl, not "${o.format}"`);
        }
        const out = makeOutput(Boolean(globals().json) || o.format === 'json');
        const imported = (o.import ?? []).flatMap((spec) => {
          const eq = spec.indexOf('=');
          const format = spec.slice(0, eq);
          const importer = IMPORTERS[format];
          if (eq <= 0 || !importer) {
            throw new ConfigError(
              `--import "${spec}": write FORMAT=FILE with FORMAT one of ${Object.keys(IMPORTERS).join(', ')}`,
            );
          }
          const file = spec.slice(eq + 1);
          return importer(read(file, `${format} export`), file).usage;
        });
        const catalog = loadCatalog(o.overrides ? { overridesPath: resolve(o.overrides) } : {});
        const report = estimateFromFiles({
          inventoryJson: read(o.inventory, 'inventory'),
          inventoryName: o.inventory,
          ...(o.usage ? { usageJson: read(o.usage, 'usage'), usageName: o.usage } : {}),
          usage: imported,
          period: o.period,
          catalog,
        });
        if (o.format === 'focus-csv' || o.format === 'focus-jsonl') {
          const rows = focusRows(report.keys, {
            onUnknown: (kc, part) =>
              out.note(`warning: ${kc.ref}: ${part.explanation} (price unknown, not written as zero)`),
          });
          await writeChunks(o.format === 'focus-csv' ? focusCsv(rows) : focusJsonl(rows), process.stdout);
          return;
        }
        out.result(report, () => {
          for (const kc of report.keys) for (const line of explainKeyCost(kc)) out.line(line);
          out.line();
          out.line(
            `total ${report.total === null ? `unknown (${report.unknownParts} part(s) unpriced; known part ${report.knownTotal.toFixed(2)})` : report.total.toFixed(2)} ${report.currency} for ${report.period}; catalog ${report.catalogVersion}`,
          );
          if (report.unmatchedUsage.length)
            out.note(`warning: ${report.unmatchedUsage.length} usage counter(s) matched no key`);
        });
      },
    );
}
