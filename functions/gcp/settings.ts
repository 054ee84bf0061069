import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../shared/core/errors.js';
import { topicProject } from '../../shared/queues/pubsub/client.js';

/**
 * What a deployment tells the functions through their environment (set by infra/gcp/main.tf;
 * secrets come from Secret Manager as environment variables):
 *   REKEY_CONFIG         rekey.yaml to load; default: the one bundled beside index.js
 *   REKEY_STATE_URL      PostgreSQL URL of rekey's state (Cloud SQL); or a postgres `state:` in the config
 *   REKEY_STATE_SCHEMA   schema of rekey's tables; default `rekey`
 *   REKEY_REWRAP_TOPIC   projects/<p>/topics/<t> the cycle sends re-wrap shards to (cycle function)
 *   REKEY_EVENTS_TOPIC   projects/<p>/topics/<t> rekey's events go to; unset: no events
 *   REKEY_SHARDS         shards per re-wrap job; default 4
 *   REKEY_ACTOR          identity in the audit log; default gcp:<K_SERVICE>
 *   PUBSUB_EMULATOR_HOST read by the Pub/Sub client itself (tests)
 */
export interface GcpSettings {
  configPath: string;
  stateUrl?: string;
  stateSchema: string;
  rewrapTopic?: string;
  eventsTopic?: string;
  shards: number;
  actor: string;
}

export function readSettings(
  env: NodeJS.ProcessEnv = process.env,
  bundleDir = defaultBundleDir(),
): GcpSettings {
  const text = (name: string) => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };
  const topic = (name: string) => {
    const v = text(name);
    if (v) topicProject(v, name);
    return v;
  };
  const shardsText = text('REKEY_SHARDS') ?? '4';
  const shards = Number(shardsText);
  if (!Number.isInteger(shards) || shards < 1 || shards > 1000) {
    throw new ConfigError(
      `REKEY_SHARDS must be an integer from 1 to 1000 (got "${shardsText.slice(0, 20)}")`,
    );
  }
  const schema = text('REKEY_STATE_SCHEMA') ?? 'rekey';
  const stateUrl = text('REKEY_STATE_URL');
  if (stateUrl && !/^postgres(ql)?:\/\//.test(stateUrl)) {
    throw new ConfigError('REKEY_STATE_URL must be a postgres:// or postgresql:// URL');
  }
  const rewrapTopic = topic('REKEY_REWRAP_TOPIC');
  const eventsTopic = topic('REKEY_EVENTS_TOPIC');
  return {
    configPath: text('REKEY_CONFIG') ?? join(bundleDir, 'rekey.yaml'),
    ...(stateUrl ? { stateUrl } : {}),
    stateSchema: schema,
    ...(rewrapTopic ? { rewrapTopic } : {}),
    ...(eventsTopic ? { eventsTopic } : {}),
    shards,
    actor: text('REKEY_ACTOR') ?? `gcp:${text('K_SERVICE') ?? 'rekey'}`,
  };
}

/** The folder of the running module: dist/gcp/ once bundled, where rekey.yaml is copied. */
function defaultBundleDir(): string {
  return dirname(fileURLToPath(import.meta.url));
}
