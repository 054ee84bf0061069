import { parseDuration } from '../domain/duration.js';
import { ConflictError } from '../errors.js';
import type { RekeyConfig } from '../policy/types.js';
import { ApprovalRequired, consumeApproval, gateAction } from '../usecases/approvals.js';
import type { RekeyContext } from '../usecases/context.js';
import { type ConfigGates, configGates, loweredRotations, rotationDays } from './rules.js';

/**
 * Approval of changes to the config file itself. rekey remembers the last accepted config (a
 * `config` record: digest, the gates it declared, its rotation periods). A config with another
 * digest is accepted at once unless the *accepted* config said changes need approvals
 * (`policy_change`) or that its rotation periods may only be lowered with approvals
 * (`rotation_period_lowered`): the rules that guard a change are the ones in force before it,
 * so a change cannot switch its own guard off. The first config rekey sees is accepted as is.
 */
interface Baseline {
  digest: string;
  acceptedAt: string;
  /** `first use`, `no approval required`, or the approval request id. */
  via: string;
  gates: ConfigGates;
  rotationDays: Record<string, number>;
}

const KIND = 'config';
const ID = 'accepted';

function baselineOf(config: RekeyConfig, at: string, via: string): Baseline {
  return {
    digest: config.digest,
    acceptedAt: at,
    via,
    gates: configGates(config),
    rotationDays: rotationDays(config),
  };
}

export type ConfigCheck =
  | { status: 'unchanged' | 'first_use' | 'accepted'; digest: string }
  | { status: 'approved'; digest: string; requestId: string };

/**
 * Accepts the running config or throws ApprovalRequired (naming the approval request) when a
 * change of it needs approvals it does not have. Called before a plan is applied.
 */
export async function checkConfigChange(ctx: RekeyContext): Promise<ConfigCheck> {
  const config = ctx.config;
  for (let attempt = 0; attempt < 10; attempt++) {
    const now = ctx.clock.now().toISOString();
    const rec = await ctx.state.getRecord(KIND, ID);
    if (!rec) {
      const b = baselineOf(config, now, 'first use');
      if (!(await ctx.state.putRecord({ kind: KIND, id: ID, body: { ...b }, updatedAt: now }, 0))) continue;
      await ctx.audit.append({
        actor: ctx.actor,
        action: 'config.accepted',
        target: 'config',
        details: { digest: config.digest, via: b.via },
      });
      return { status: 'first_use', digest: config.digest };
    }
    const old = rec.body as unknown as Baseline;
    if (old.digest === config.digest) return { status: 'unchanged', digest: config.digest };

    let need:
      | {
          action: 'policy_change' | 'rotation_period_lowered';
          gate: NonNullable<ConfigGates['policyChange']>;
          why: string;
        }
      | undefined;
    if (old.gates.policyChange) {
      need = {
        action: 'policy_change',
        gate: old.gates.policyChange,
        why: 'the accepted config requires approvals for any change',
      };
    } else if (old.gates.rotationLowered) {
      const lowered = loweredRotations(old.rotationDays, config, old.gates.rotationLowered.policies);
      if (lowered.length > 0) {
        need = {
          action: 'rotation_period_lowered',
          gate: old.gates.rotationLowered,
          why: `rotation period lowered: ${lowered.map((l) => `${l.policy} ${l.fromDays} -> ${l.toDays} days`).join(', ')}`,
        };
      }
    }
    let requestId: string | undefined;
    let consume: (() => Promise<void>) | undefined;
    if (need) {
      const gate = await gateAction(ctx, {
        action: need.action,
        target: 'config',
        subject: { digest: config.digest, from: old.digest },
        reason: need.why,
        requirement: {
          action: need.action,
          quorum: need.gate.quorum,
          approvers: need.gate.approvers,
          expiry: parseDuration(need.gate.expiry),
          because: [need.why],
        },
      });
      if (!gate.allowed) {
        throw new ApprovalRequired(
          `${config.file} changed since it was accepted (${old.digest.slice(0, 12)} -> ${config.digest.slice(0, 12)}) and ${need.why}: ${gate.message}`,
          gate.request?.id,
        );
      }
      requestId = gate.request!.id;
      const request = gate.request!;
      consume = () => consumeApproval(ctx, request, `config ${config.digest.slice(0, 12)}`);
    }
    const b = baselineOf(config, now, requestId ?? 'no approval required');
    if (!(await ctx.state.putRecord({ kind: KIND, id: ID, body: { ...b }, updatedAt: now }, rec.rev)))
      continue;
    await consume?.();
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'config.accepted',
      target: 'config',
      details: { digest: config.digest, from: old.digest, via: b.via },
    });
    return requestId
      ? { status: 'approved', digest: config.digest, requestId }
      : { status: 'accepted', digest: config.digest };
  }
  throw new ConflictError('the accepted config kept changing; try again');
}
