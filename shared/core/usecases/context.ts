import type { AuditLog } from '../audit/auditLog.js';
import type { PriceCatalog } from '../cost/catalog.js';
import type { KeyRef } from '../domain/keyRef.js';
import { parseKeyRef } from '../domain/keyRef.js';
import { ConfigError, NotFoundError } from '../errors.js';
import type { RekeyConfig } from '../policy/types.js';
import type { Clock } from '../ports/Clock.js';
import type { DekStore } from '../ports/DekStore.js';
import type { EventBus, RekeyEvent } from '../ports/EventBus.js';
import type { KeyMaterialSource, KeyProvider } from '../ports/KeyProvider.js';
import type { MetricsSink } from '../ports/MetricsSink.js';
import type { StateStore } from '../ports/StateStore.js';
import type { WorkQueue } from '../ports/WorkQueue.js';

/** Progress of long work, for progress bars and logs. Never carries key material. */
export type ProgressEvent =
  | { kind: 'inventory'; providerId: string; keys: number }
  | { kind: 'action_start'; index: number; total: number; type: string; keyRef: string }
  | { kind: 'action_end'; index: number; total: number; type: string; keyRef: string; status: string }
  | {
      kind: 'rewrap';
      keyRef: string;
      storeId: string;
      done: number;
      total: number;
      failed: number;
    };

/** Everything a use case needs, composed once per process (see shared/compose.ts). */
export interface RekeyContext {
  config: RekeyConfig;
  providers: Map<string, KeyProvider>;
  /** BYOK material sources by provider id (the pkcs11 providers' HSMs). */
  materialSources?: Map<string, KeyMaterialSource>;
  stores: Map<string, DekStore>;
  state: StateStore;
  audit: AuditLog;
  clock: Clock;
  /** Identity recorded in the audit log (operator or service identity). */
  actor: string;
  /** Unique per process: lease owner. */
  instanceId: string;
  /** True when a lease owner is known to be gone (a crashed local process): its leases may be taken over. */
  isOwnerGone?: (owner: string) => boolean;
  /** Operational metrics (re-wrap progress, throttling). */
  metrics?: MetricsSink;
  /** Prices, so plans show what each action does to the bill. */
  catalog?: PriceCatalog;
  /** Outgoing events (KeyRotated, RewrapCompleted, VersionRetired). */
  events?: EventBus;
  /** Where queued re-wrap work goes (serverless runtimes); absent when re-wraps run inline. */
  queue?: WorkQueue;
  onProgress?: (e: ProgressEvent) => void;
}

export function providerById(ctx: RekeyContext, id: string): KeyProvider {
  const p = ctx.providers.get(id);
  if (!p) throw new ConfigError(`provider "${id}" is not configured in ${ctx.config.file}`);
  return p;
}

export function storeById(ctx: RekeyContext, id: string): DekStore {
  const s = ctx.stores.get(id);
  if (!s) throw new ConfigError(`store "${id}" is not configured in ${ctx.config.file}`);
  return s;
}

/** Finds the provider that owns a ref: the one named, or the only one of the ref's type. */
export function providerForRef(
  ctx: RekeyContext,
  refText: string,
  providerId?: string,
): { ref: KeyRef; provider: KeyProvider } {
  const ref = parseKeyRef(refText);
  if (providerId) return { ref, provider: providerById(ctx, providerId) };
  const candidates = [...ctx.providers.values()].filter((p) => p.type === ref.type);
  if (candidates.length === 1) return { ref, provider: candidates[0]! };
  if (candidates.length === 0)
    throw new NotFoundError(`no ${ref.type} provider is configured for ${ref.uri}`);
  throw new ConfigError(
    `several ${ref.type} providers are configured (${candidates.map((c) => c.id).join(', ')}); name one with --provider`,
  );
}

export const LEASE_TTL_MS = 10 * 60_000;

/**
 * Takes (or renews) a lease. When another owner holds it and that owner is known to be gone
 * (a local process that crashed), the lease is taken over and the takeover audited, so a
 * killed run can be resumed at once instead of after the lease expires.
 */
export async function acquireLease(ctx: RekeyContext, name: string, ttlMs = LEASE_TTL_MS): Promise<boolean> {
  const now = ctx.clock.now().getTime();
  if (await ctx.state.acquireLease(name, ctx.instanceId, ttlMs, now)) return true;
  const holder = await ctx.state.leaseOwner(name, now);
  if (!holder || !ctx.isOwnerGone?.(holder.owner)) return false;
  await ctx.state.releaseLease(name, holder.owner);
  const won = await ctx.state.acquireLease(name, ctx.instanceId, ttlMs, now);
  if (won) {
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'lease.taken_over',
      target: name,
      details: { from: holder.owner },
    });
  }
  return won;
}

/**
 * Publishes events when a bus is configured. The action they describe already happened, so a
 * delivery failure is audited and reported, never turned into a failed action.
 */
export async function publishEvents(ctx: RekeyContext, events: RekeyEvent[]): Promise<void> {
  if (!ctx.events || events.length === 0) return;
  try {
    await ctx.events.publish(events);
  } catch (e) {
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'events.publish_failed',
      target: null,
      details: {
        events: events.map((x) => `${x.type}:${x.id}`),
        error: e instanceof Error ? e.message : String(e),
      },
    });
  }
}
