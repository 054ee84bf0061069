import { z } from 'zod';
import { ALGORITHMS, PROTECTIONS, VERSION_STATES } from '../domain/key.js';
import { COST_PROVIDERS, REQUEST_CLASSES } from './types.js';

/**
 * The two offline file formats (documented in docs/cost.md): an exported inventory
 * (`rekey-inventory/1`) and usage counters (`rekey-usage/1`). The inferred types are the
 * model's own input types, so what validates can be priced.
 */

const instant = z.iso.datetime({
  offset: true,
  message: 'expected an ISO-8601 date-time, e.g. 2026-11-01T00:00:00Z',
});
const period = z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'expected YYYY-MM');

export const versionSchema = z
  .object({
    id: z.string().min(1),
    createdAt: instant,
    states: z
      .array(z.object({ at: instant, state: z.enum(VERSION_STATES as [string, ...string[]]) }).strict())
      .optional(),
    destroyedAt: instant.optional(),
    origin: z.enum(['initial', 'automatic', 'on_demand', 'manual']).optional(),
  })
  .strict();

export const costKeySchema = z
  .object({
    ref: z.string().min(1),
    provider: z.enum(COST_PROVIDERS as [string, ...string[]]),
    account: z.string().min(1),
    accountName: z.string().optional(),
    region: z.string().optional(),
    name: z.string().optional(),
    providerId: z.string().optional(),
    tags: z.record(z.string(), z.string()).optional(),
    protection: z.enum(PROTECTIONS as [string, ...string[]]),
    algorithm: z.enum(ALGORITHMS as [string, ...string[]]),
    managedBy: z.enum(['customer', 'provider']).optional(),
    createdAt: instant,
    deletedAt: instant.optional(),
    keyStates: z
      .array(z.object({ at: instant, state: z.enum(['enabled', 'disabled', 'pending_deletion']) }).strict())
      .optional(),
    versions: z.array(versionSchema).min(1, 'a key has at least one version'),
    pool: z.string().optional(),
    lastUsedAt: instant.optional(),
  })
  .strict();

export const poolSchema = z
  .object({
    id: z.string().min(1),
    sku: z.string().min(1),
    hsms: z.number().int().positive(),
    account: z.string().min(1),
    region: z.string().optional(),
    createdAt: instant.optional(),
    deletedAt: instant.optional(),
  })
  .strict();

export const inventoryFileSchema = z
  .object({
    format: z.literal('rekey-inventory/1'),
    exportedAt: instant.optional(),
    keys: z.array(costKeySchema),
    pools: z.array(poolSchema).default([]),
  })
  .strict();

export const usageCounterSchema = z
  .object({
    ref: z.string().min(1),
    version: z.string().optional(),
    class: z.enum(REQUEST_CLASSES as [string, ...string[]]),
    count: z.number().nonnegative(),
    period,
    source: z.string().optional(),
  })
  .strict();

export const usageFileSchema = z
  .object({
    format: z.literal('rekey-usage/1'),
    usage: z.array(usageCounterSchema),
  })
  .strict();
