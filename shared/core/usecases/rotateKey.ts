import type { KeyVersion } from '../domain/key.js';
import { ConflictError } from '../errors.js';
import { acquireLease, providerForRef, type RekeyContext } from './context.js';

/** On-demand rotation of one key, outside a plan (operators, incident response). */
export async function rotateKey(
  ctx: RekeyContext,
  keyRef: string,
  opts: { provider?: string; reason?: string } = {},
): Promise<{ previousPrimary: string; version: KeyVersion }> {
  const { ref, provider } = providerForRef(ctx, keyRef, opts.provider);
  const lease = `key:${ref.uri}`;
  if (!(await acquireLease(ctx, lease))) {
    throw new ConflictError(`another rekey process holds the lease on ${ref.uri}`);
  }
  try {
    const before = await provider.getKey(ref);
    const version = await provider.rotate(ref);
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'key.rotated',
      target: ref.uri,
      details: {
        previousPrimary: before.primaryVersion,
        primary: version.id,
        onDemand: true,
        reason: opts.reason ?? null,
      },
    });
    return { previousPrimary: before.primaryVersion, version };
  } finally {
    await ctx.state.releaseLease(lease, ctx.instanceId);
  }
}
