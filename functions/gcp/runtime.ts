import { type Composed, composeFrom, readConfig } from '../../shared/compose.js';
import { ConfigError } from '../../shared/core/errors.js';
import type { AdaptiveRate } from '../../shared/core/rewrap/adaptiveRate.js';
import { PubSubWorkQueue } from '../../shared/queues/pubsub/PubSubWorkQueue.js';
import { PostgresStateStore } from '../../shared/stores/postgres/PostgresStateStore.js';
import { PubSubEventBus } from '../../shared/telemetry/pubsub/PubSubEventBus.js';
import { LogMetricsSink, logger } from './log.js';
import { type GcpSettings, readSettings } from './settings.js';

let composed: Promise<{ ctx: Composed; settings: GcpSettings }> | null = null;

/** Per-provider rate limiters, shared by every invocation an instance serves. */
export const limiters = new Map<string, AdaptiveRate>();

/**
 * rekey composed once per cold start, from the bundled config and the deployment's settings:
 * state in PostgreSQL (Cloud SQL), re-wrap shards and events on Pub/Sub, metrics as log
 * entries. A failed composition is not cached, so the next invocation tries again.
 */
export function rekey(): Promise<{ ctx: Composed; settings: GcpSettings }> {
  composed ??= build().catch((e: unknown) => {
    composed = null;
    throw e;
  });
  return composed;
}

async function build(): Promise<{ ctx: Composed; settings: GcpSettings }> {
  const settings = readSettings();
  const config = readConfig(settings.configPath);
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
