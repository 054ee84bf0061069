import { evaluate } from '../plan/evaluate.js';
import type { Plan } from '../plan/types.js';
import type { ProviderCapabilities } from '../ports/KeyProvider.js';
import type { InventorySnapshot } from '../ports/StateStore.js';
import type { RekeyContext } from './context.js';
import { takeCensus, takeInventory } from './inventory.js';

export interface PlanResult {
  inventory: InventorySnapshot;
  plan: Plan;
}

/** Inventory -> census -> pure evaluation. Records the plan; changes nothing else (a dry run). */
export async function makePlan(ctx: RekeyContext): Promise<PlanResult> {
  const inventory = await takeInventory(ctx);
  const census = await takeCensus(ctx, inventory.keys);
  const capabilities: Record<string, ProviderCapabilities> = {};
  for (const [id, p] of ctx.providers) capabilities[id] = p.capabilities();
  const keyCapabilities: Record<string, ProviderCapabilities> = {};
  for (const key of inventory.keys) {
    const p = ctx.providers.get(key.providerId);
    if (p?.capabilitiesFor) keyCapabilities[key.ref] = p.capabilitiesFor(key);
  }
  const plan = evaluate({
    keys: inventory.keys,
    config: ctx.config,
    now: ctx.clock.now(),
    census,
    capabilities,
    keyCapabilities,
    inventoryId: inventory.id,
    ...(ctx.catalog ? { catalog: ctx.catalog } : {}),
  });
  await ctx.state.savePlan(plan);
  await ctx.audit.append({
    actor: ctx.actor,
    action: 'plan.created',
    target: plan.id,
    details: {
      actions: plan.actions.length,
      findings: plan.findings.length,
      configDigest: plan.configDigest,
      inventoryId: inventory.id,
      providerErrors: inventory.errors.map((e) => e.providerId),
    },
  });
  return { inventory, plan };
}
