import type { z } from 'zod';
import type { PriceCatalog } from '../core/cost/catalog.js';
import { computeCosts } from '../core/cost/model.js';
import { inventoryFileSchema, usageFileSchema } from '../core/cost/schemas.js';
import type { CostInventory, CostReport, UsageCounter } from '../core/cost/types.js';
import { ValidationError } from '../core/errors.js';
import { locate, parseJson } from './importers/common.js';

/**
 * Offline estimate: prices an exported inventory (rekey-inventory/1) and usage counters
 * (rekey-usage/1, or counters from an importer) for one month, with no cloud access.
 */
export interface EstimateInput {
  /** Text of the inventory file. */
  inventoryJson: string;
  /** Text of a usage file. */
  usageJson?: string;
  /** Counters from importers, added to usageJson's. */
  usage?: UsageCounter[];
  /** YYYY-MM */
  period: string;
  catalog: PriceCatalog;
  /** Names used in error messages. */
  inventoryName?: string;
  usageName?: string;
}

function validate<T extends z.ZodType>(schema: T, text: string, name: string): z.infer<T> {
  const json = parseJson(text, name);
  const r = schema.safeParse(json);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 10).map((i) => {
    const path = i.path.filter((p): p is string | number => typeof p !== 'symbol');
    const dotted = path
      .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
      .join('')
      .replace(/^\./, '');
    // Point at the field itself, or at its parent object when the field is missing.
    const where = locate(text, path);
    const at = where.startsWith('line') ? where : locate(text, path.slice(0, -1));
    return `${name}: ${at.startsWith('line') ? `${at}: ` : ''}${dotted || '(root)'}: ${i.message}`;
  });
  throw new ValidationError(issues.join('\n'));
}

export function parseInventoryFile(text: string, name = 'inventory'): CostInventory {
  return validate(inventoryFileSchema, text, name) as CostInventory;
}

export function parseUsageFile(text: string, name = 'usage'): UsageCounter[] {
  return validate(usageFileSchema, text, name).usage as UsageCounter[];
}

export function estimateFromFiles(input: EstimateInput): CostReport {
  const inventory = parseInventoryFile(input.inventoryJson, input.inventoryName);
  const usage = [
    ...(input.usageJson ? parseUsageFile(input.usageJson, input.usageName) : []),
    ...(input.usage ?? []),
  ];
  return computeCosts(inventory, usage, input.catalog, input.period);
}
