import { parseKeyRef } from '../domain/keyRef.js';
import { type DrReport, evaluateDr } from '../dr/check.js';
import { errorMessage } from '../errors.js';
import type { RecoveryInfo } from '../ports/KeyProvider.js';
import type { RekeyContext } from './context.js';
import { takeCensus, takeInventory } from './inventory.js';

/** Inventory -> ask each provider where each key can be recovered from -> DR report. Read-only. */
export async function checkDisasterRecovery(ctx: RekeyContext): Promise<DrReport> {
  const inventory = await takeInventory(ctx);
  const census = await takeCensus(ctx, inventory.keys);
  const recovery = new Map<string, RecoveryInfo | { error: string }>();
  for (const key of inventory.keys) {
    const provider = ctx.providers.get(key.providerId);
    if (!provider?.recovery) continue;
    try {
      recovery.set(key.ref, await provider.recovery(parseKeyRef(key.ref)));
    } catch (e) {
      recovery.set(key.ref, { error: errorMessage(e) });
    }
  }
  const storeLocations: Record<string, string | undefined> = {};
  for (const [id, sc] of Object.entries(ctx.config.stores)) {
    storeLocations[id] = sc.location ?? (sc.type === 'dynamodb' ? sc.region : undefined);
  }
  const report = evaluateDr({ keys: inventory.keys, recovery, census, storeLocations, now: ctx.clock.now() });
  await ctx.audit.append({
    actor: ctx.actor,
    action: 'dr.checked',
    target: null,
    details: { ...report.summary, inventoryId: inventory.id },
  });
  return report;
}
