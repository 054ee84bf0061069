import { type Composed, composeFrom } from '../../shared/compose.js';
import { readConfig } from '../../shared/config/readConfig.js';
import { ConfigError } from '../../shared/core/errors.js';
import type { EventVerifier } from '../../shared/core/governance/signature.js';
import type { RekeyConfig } from '../../shared/core/policy/types.js';
import type { AdaptiveRate } from '../../shared/core/rewrap/adaptiveRate.js';
import { eventVerifierFromConfig } from '../../shared/governance/signing.js';
import { PubSubWorkQueue } from '../../shared/queues/pubsub/PubSubWorkQueue.js';
import { PostgresStateStore } from '../../shared/stores/postgres/PostgresStateStore.js';
import { PubSubEventBus } from '../../shared/telemetry/pubsub/PubSubEventBus.js';
import { LogMetricsSink, logger } from './log.js';
import { type GcpSettings, readSettings } from './settings.js';

/**
 * What a function composes: `keys` is everything the config names (providers, DEK stores, state);
 * `state` is rekey's state and the config alone, for the approvals API, which touches no key and
 * no DEK, so its service account holds no KMS role and no DEK store secret.
 */
export type Scope = 'keys' | 'state';

type Runtime = { ctx: Composed; settings: GcpSettings };
const composed = new Map<Scope, Promise<Runtime>>();

/** Per-provider rate limiters, shared by every invocation an instance serves. */
export const limiters = new Map<string, AdaptiveRate>();

/**
 * rekey composed once per cold start, from the bundled config and the deployment's settings:
 * state in PostgreSQL (Cloud SQL), re-wrap shards and events on Pub/Sub, metrics as log
 * entries. A failed composition is not cached, so the next invocation tries again.
 */
export function rekey(scope: Scope = 'keys'): Promise<Runtime> {
  let p = composed.get(scope);
  if (!p) {
    p = build(scope).catch((e: unknown) => {
      composed.delete(scope);
      throw e;
    });
    composed.set(scope, p);
  }
  return p;
}

let verifier: Promise<EventVerifier> | undefined;

/** The signature check of key.compromised events (`incidents.signing`), built on first use. */
export function eventVerifier(ctx: Composed): Promise<EventVerifier> {
  verifier ??= eventVerifierFromConfig(ctx.config, ctx.baseDir).catch((e: unknown) => {
    verifier = undefined;
    throw e;
  });
  return verifier;
}

async function build(scope: Scope): Promise<Runtime> {
  const settings = readSettings();
  const read = readConfig(settings.configPath);
  const config: RekeyConfig = scope === 'state' ? { ...read, providers: {}, stores: {} } : read;
  if (!settings.stateUrl && config.state?.type !== 'postgres') {
    throw new ConfigError(
      `rekey's state needs PostgreSQL on Cloud Functions: set REKEY_STATE_URL, or a postgres state in ${config.file}`,
    );
  }
  const state = settings.stateUrl
    ? await PostgresStateStore.open({
        url: settings.stateUrl,
        schema: settings.stateSchema,
        pool: { max: 4 },
      })
    : undefined;
  const queue = settings.rewrapTopic ? new PubSubWorkQueue({ topic: settings.rewrapTopic }) : undefined;
  const events = settings.eventsTopic ? new PubSubEventBus({ topic: settings.eventsTopic }) : undefined;
  try {
    const ctx = await composeFrom(config, {
      ...(state ? { state } : {}),
      ...(queue ? { queue } : {}),
      ...(events ? { events } : {}),
      actor: settings.actor,
    });
    ctx.metrics = new LogMetricsSink(logger(process.env.K_SERVICE ?? 'rekey'), { runtime: 'gcp' });
    return { ctx, settings };
  } catch (e) {
    await state?.close();
    await queue?.close();
    await events?.close();
    throw e;
  }
}
