import { resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveSecret } from '../../shared/config/secrets.js';
import { explainKey, explanationLines, findCostKey } from '../../shared/core/cost/explain.js';
import { costFindings } from '../../shared/core/cost/findings.js';
import { fmtMoney } from '../../shared/core/cost/format.js';
import { policyForCostKey } from '../../shared/core/cost/fromInventory.js';
import { costMetricPoints } from '../../shared/core/cost/metrics.js';
import { computeCosts, explainKeyCost } from '../../shared/core/cost/model.js';
import { periodOf } from '../../shared/core/cost/period.js';
import { type Projection, parseWhatIf, projectCosts } from '../../shared/core/cost/projection.js';
import { ConfigError } from '../../shared/core/errors.js';
import { loadCatalog } from '../../shared/cost/catalogFile.js';
import { estimateFromFiles } from '../../shared/cost/estimate.js';
import { focusCsv, focusJsonl, focusRows, writeChunks } from '../../shared/cost/focus.js';
import { IMPORTERS } from '../../shared/cost/importers/index.js';
import { readInputFile as read } from '../../shared/cost/inputs.js';
import { metricsSinkFromConfig } from '../../shared/telemetry/metrics/fromConfig.js';
import { makeOutput, type Output, table } from '../output.js';
import type { GlobalOptions } from '../session.js';
import { addSourceOptions, type CostSourceFlags, checkPeriod, withCostInputs } from './costInputs.js';

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
  registerExplain(cost, globals);
  registerForecast(cost, globals);
  registerPublish(cost, globals);
}

function registerExplain(cost: Command, globals: () => GlobalOptions): void {
  addSourceOptions(
    cost
      .command('explain')
      .description(
        "every figure of one key's cost for a month: storage, billed versions, rotations, requests by class, free allowance, HSM share; each with its SKU, unit price, quantity and source",
      )
      .argument(
        '<keyref>',
        'key ref (aws-kms://..., gcp-kms://..., azure-kv://..., pkcs11:..., local://...) or key name',
      )
      .option('--period <yyyy-mm>', 'the month (default: the current one)'),
  ).action(async (keyref: string, o: CostSourceFlags & { period?: string }) => {
    if (o.period) checkPeriod(o.period);
    await withCostInputs(globals(), o, async (inp, out) => {
      const period = o.period ?? periodOf(inp.now);
      const key = findCostKey(inp.inventory.keys, keyref, inp.source);
      // The whole inventory is priced: free allowances, tiers and pools are shared with other keys.
      const report = computeCosts(inp.inventory, inp.usage, inp.catalog, period);
      const kc = report.keys.find((k) => k.ref === key.ref)!;
      const x = explainKey(kc, key, inp.catalog, {
        usage: inp.usage,
        policy: policyForCostKey(inp.policies, key)?.name ?? null,
      });
      out.result(x, () => {
        for (const line of explanationLines(x)) out.line(line);
      });
    });
  });
}

function registerForecast(cost: Command, globals: () => GlobalOptions): void {
  addSourceOptions(
    cost
      .command('forecast')
      .description(
        'per key and in total, what the coming months cost under the current policies; with --what-if, under changed ones, and the difference',
      )
      .option('--months <n>', 'months to project', '12')
      .option('--from <yyyy-mm>', 'first month (default: the current one)')
      .option(
        '--what-if <[policy:]field=value...>',
        'change a policy field: rotate.every, retire.disableAfter, retire.destroyAfter or retire.destroyDelay (a duration, or none); prefix a policy name to change only that policy',
      ),
  ).action(async (o: CostSourceFlags & { months: string; from?: string; whatIf?: string[] }) => {
    const months = Number(o.months);
    if (!/^\d+$/.test(o.months) || months < 1 || months > 120) {
      throw new ConfigError(`--months must be a whole number from 1 to 120, got "${o.months}"`);
    }
    if (o.from) checkPeriod(o.from, '--from');
    await withCostInputs(globals(), o, async (inp, out) => {
      const whatIfs = (o.whatIf ?? []).map((w) => parseWhatIf(w, inp.policies));
      const projection = projectCosts({
        keys: inp.inventory.keys,
        ...(inp.inventory.pools ? { pools: inp.inventory.pools } : {}),
        usage: inp.usage,
        policies: inp.policies,
        catalog: inp.catalog,
        from: o.from ?? periodOf(inp.now),
        months,
        now: inp.now,
        whatIfs,
      });
      out.result(projection, () => printProjection(out, projection));
    });
  });
}

function printProjection(out: Output, p: Projection): void {
  const money = (n: number | null, known: number) =>
    n === null ? `${fmtMoney(round(known), p.currency)}+?` : fmtMoney(round(n), p.currency);
  const signed = (n: number | null) =>
    n === null ? 'unknown' : `${n > 0 ? '+' : n < 0 ? '-' : ''}${fmtMoney(round(Math.abs(n)), p.currency)}`;
  const last = p.periods[p.periods.length - 1]!;
  out.line(
    `forecast ${p.periods[0]}..${last} (${p.months} month(s)), catalog ${p.catalogVersion}, overrides ${p.overrideDigest}` +
      (p.whatIfs.length ? `; what-if: ${p.whatIfs.join(', ')}` : ''),
  );
  out.line();
  // Names keep the table readable; --json has every ref.
  const name = (k: Projection['keys'][number]) => k.name ?? k.ref;
  if (p.whatIfs.length === 0) {
    out.line(
      table(
        ['key', 'policy', 'total', `in ${last}`],
        p.keys.map((k) => {
          const m = k.current.months[k.current.months.length - 1]!;
          return [
            name(k),
            k.policy ?? '-',
            money(k.current.total, k.current.knownTotal),
            money(m.total, m.knownTotal),
          ];
        }),
        70,
      ),
    );
  } else {
    out.line(
      table(
        ['key', 'policy', 'current', 'proposed', 'delta', 'what-if'],
        p.keys.map((k) => {
          const pr = k.proposed ?? k.current;
          return [
            name(k),
            k.policy ?? '-',
            money(k.current.total, k.current.knownTotal),
            money(pr.total, pr.knownTotal),
            signed(k.delta),
            k.whatIfs.join(', ') || (k.proposed ? '(shared pool or tier)' : '-'),
          ];
        }),
        70,
      ),
    );
  }
  out.line();
  const t = p.total;
  out.line(
    p.whatIfs.length
      ? `total ${money(t.current, t.currentKnown)} -> ${money(t.proposed, t.proposedKnown)} (${signed(t.delta)}) over ${p.months} month(s)`
      : `total ${money(t.current, t.currentKnown)} over ${p.months} month(s)`,
  );
  out.line(
    `per month: ${p.monthly
      .map((m) =>
        p.whatIfs.length
          ? `${m.period} ${money(m.current, m.currentKnown)} -> ${money(m.proposed, m.proposedKnown)}`
          : `${m.period} ${money(m.current, m.currentKnown)}`,
      )
      .join(', ')}`,
  );
  out.line(`assumptions: ${p.assumptions.join('; ')}`);
  if (p.keys.some((k) => k.current.total === null))
    out.line('"+?" marks amounts that leave out parts of unknown price');
}

const round = (n: number) => Math.round(n * 100) / 100;

function registerPublish(cost: Command, globals: () => GlobalOptions): void {
  addSourceOptions(
    cost
      .command('publish')
      .description("sends the month's cost and usage metrics to the config's metrics sink (docs/metrics.md)")
      .option('--period <yyyy-mm>', 'the month (default: the current one)'),
  ).action(async (o: CostSourceFlags & { period?: string }) => {
    if (o.period) checkPeriod(o.period);
    await withCostInputs(
      globals(),
      o,
      async (inp, out) => {
        if (!inp.config?.metrics) {
          throw new ConfigError(
            `${inp.config?.file ?? 'no config file'}: no metrics sink configured; add a metrics: section (type emf or otlp, docs/metrics.md)`,
          );
        }
        const config = inp.config;
        const sink =
          inp.metrics ??
          (await metricsSinkFromConfig(config.metrics!, {
            baseDir: resolve(config.file, '..'),
            secret: (ref, what) => {
              // Same resolution as compose: env:NAME or file:PATH, never logged.
              const buf = resolveSecret(ref, resolve(config.file, '..'), what);
              const text = buf.toString('utf8');
              buf.fill(0);
              return text;
            },
          }));
        const period = o.period ?? periodOf(inp.now);
        const report = computeCosts(inp.inventory, inp.usage, inp.catalog, period);
        const findings = costFindings({
          keys: inp.inventory.keys,
          costs: report.keys,
          now: inp.now,
          ...(inp.usage.length ? { usage: inp.usage } : {}),
          ...(inp.census ? { census: inp.census } : {}),
          policies: inp.policies,
          catalog: inp.catalog,
        });
        const points = costMetricPoints({
          report,
          keys: inp.inventory.keys,
          policies: inp.policies,
          findings,
          usage: inp.usage,
          now: new Date().toISOString(),
        });
        sink.record(points);
        try {
          await sink.flush?.();
        } finally {
          if (!inp.metrics) await sink.close?.();
        }
        const names = [...new Set(points.map((p) => p.name))].sort();
        const summary = {
          period,
          sink: config.metrics!.type,
          keys: report.keys.length,
          points: points.length,
          metrics: names,
          findings: findings.length,
          knownTotal: report.knownTotal,
          currency: report.currency,
        };
        out.result(summary, () =>
          out.line(
            `published ${points.length} point(s) of ${names.length} metric(s) for ${report.keys.length} key(s), ${period}, to ${config.metrics!.type}: ` +
              `${fmtMoney(round(report.knownTotal), report.currency)}${report.total === null ? ' + unknown' : ''}, ${findings.length} finding(s)`,
          ),
        );
      },
      { census: true },
    );
  });
}
