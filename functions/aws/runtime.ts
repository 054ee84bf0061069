import { randomUUID } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { type Composed, composeFrom } from '../../shared/compose.js';
import { ConfigError, ProviderError } from '../../shared/core/errors.js';
import type { EventBus } from '../../shared/core/ports/EventBus.js';
import type { WorkQueue } from '../../shared/core/ports/WorkQueue.js';
import { DynamoStateStore } from '../../shared/stores/dynamodb/DynamoStateStore.js';
import { EmfMetricsSink } from '../../shared/telemetry/metrics/EmfMetricsSink.js';
import { readCompiledConfig } from './config.js';
import { registerGlobs } from './globs.js';

/**
 * What every rekey Lambda function shares: its settings from the environment (set in
 * serverless.yml), the Powertools logger and metrics, and the RekeyContext composed once per
 * cold start. AWS SDK clients take their Region, credentials and endpoint overrides
 * (`AWS_ENDPOINT_URL_<SERVICE>`) from the environment the usual way.
 */
export interface AwsRuntimeSettings {
  /**
   * REKEY_CONFIG: the compiled config (JSON, written by the build from rekey.yaml), absolute or
   * relative to the function's root. Default `dist/aws/rekey.config.json`.
   */
  configPath: string;
  /** The function's root (LAMBDA_TASK_ROOT): relative paths in the config resolve from here. */
  root: string;
  /** REKEY_CONFIG_DIGEST: the source digest the deployment packaged; the compiled config must match. */
  configDigest?: string;
  /** REKEY_STATE_TABLE: rekey's own state (DynamoDB). */
  stateTable: string;
  /** REKEY_QUEUE_URL: where the scheduler sends re-wrap shards. */
  queueUrl?: string;
  /** REKEY_EVENT_BUS: where rekey publishes its events (name or ARN). */
  eventBus?: string;
  /** REKEY_IDEMPOTENCY_TABLE: processed provider events (Powertools idempotency). */
  idempotencyTable?: string;
  /** REKEY_SHARDS: how many shards a re-wrap job is split into. */
  shards?: number;
  /** REKEY_ACTOR: the identity in the audit log. Default `aws-lambda:<function name>`. */
  actor: string;
}

type Needs = { queue?: boolean; idempotency?: boolean };

/** Where the build writes the compiled config, relative to the function's root. */
export const DEFAULT_CONFIG = 'dist/aws/rekey.config.json';

/** Reads the settings; a missing or malformed variable is a ConfigError naming it. */
export function readSettings(env: NodeJS.ProcessEnv = process.env, needs: Needs = {}): AwsRuntimeSettings {
  const required = (name: string): string => {
    const v = env[name]?.trim();
    if (!v) throw new ConfigError(`environment variable ${name} is not set (see serverless.yml)`);
    return v;
  };
  const root = env.LAMBDA_TASK_ROOT ?? process.cwd();
  const config = env.REKEY_CONFIG?.trim() || DEFAULT_CONFIG;
  let shards: number | undefined;
  if (env.REKEY_SHARDS?.trim()) {
    shards = Number(env.REKEY_SHARDS);
    if (!Number.isInteger(shards) || shards < 1 || shards > 1000)
      throw new ConfigError(
        `environment variable REKEY_SHARDS must be an integer 1-1000, got "${env.REKEY_SHARDS}"`,
      );
  }
  return {
    configPath: isAbsolute(config) ? config : resolve(root, config),
    root,
    ...(env.REKEY_CONFIG_DIGEST?.trim() ? { configDigest: env.REKEY_CONFIG_DIGEST.trim() } : {}),
    stateTable: required('REKEY_STATE_TABLE'),
    ...(needs.queue ? { queueUrl: required('REKEY_QUEUE_URL') } : {}),
    ...(env.REKEY_EVENT_BUS?.trim() ? { eventBus: env.REKEY_EVENT_BUS.trim() } : {}),
    ...(needs.idempotency ? { idempotencyTable: required('REKEY_IDEMPOTENCY_TABLE') } : {}),
    ...(shards ? { shards } : {}),
    actor: env.REKEY_ACTOR?.trim() || `aws-lambda:${env.AWS_LAMBDA_FUNCTION_NAME ?? 'rekey'}`,
  };
}

/** Structured JSON logs (Powertools); service name and level from POWERTOOLS_* variables. */
export function makeLogger(fn: string): Logger {
  return new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'rekey', persistentKeys: { fn } });
}

/** CloudWatch metrics as EMF on stdout; namespace from POWERTOOLS_METRICS_NAMESPACE (default `rekey`). */
export function makeMetrics(): Metrics {
  return new Metrics(metricsOptions());
}

function metricsOptions() {
  return {
    namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'rekey',
    serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'rekey',
  };
}

export interface AwsRuntime {
  /** The context, composed on first use and kept for the life of the execution environment. */
  context(): Promise<Composed>;
  settings(): AwsRuntimeSettings;
  /** The public keys the compiled config carries (after context()). */
  publicKeys(): Record<string, string>;
}

/**
 * Composes rekey for one function: the compiled config's providers and stores, with the state
 * store, event bus and work queue built from the function's settings. A failed composition
 * is not cached, so the next invocation tries again (after a fixed configuration, say).
 */
export function awsRuntime(
  opts: {
    /** The re-wrap queue, for the function that sends shards (only it bundles the SQS client). */
    queue?: (queueUrl: string) => WorkQueue;
    /** rekey's event bus, for the functions that publish events (the cost function does not). */
    events?: (eventBus: string) => EventBus;
    idempotency?: boolean;
    /** What the function never reaches: left out of its context (and of its bundle). */
    without?: { providers?: boolean; stores?: boolean };
  } = {},
): AwsRuntime {
  let settings: AwsRuntimeSettings | undefined;
  let composed: Promise<Composed> | undefined;
  let publicKeys: Record<string, string> = {};
  const get = () => {
    settings ??= readSettings(process.env, {
      queue: Boolean(opts.queue),
      idempotency: Boolean(opts.idempotency),
    });
    return settings;
  };
  const build = async (): Promise<Composed> => {
    const s = get();
    const { config, catalog, publicKeys: keys, globs } = readCompiledConfig(s.configPath, s.root);
    registerGlobs(globs);
    if (s.configDigest && s.configDigest !== config.digest) {
      throw new ConfigError(
        `${s.configPath} was compiled from another config (digest ${config.digest.slice(0, 12)}) than the one deployed (REKEY_CONFIG_DIGEST ${s.configDigest.slice(0, 12)})`,
      );
    }
    const ctx = await composeFrom(config, {
      state: new DynamoStateStore({ table: s.stateTable }),
      ...(s.eventBus && opts.events ? { events: opts.events(s.eventBus) } : {}),
      ...(s.queueUrl && opts.queue ? { queue: opts.queue(s.queueUrl) } : {}),
      catalog,
      actor: s.actor,
      ...(opts.without ? { without: opts.without } : {}),
    });
    // Execution environments share host names and pids: a lease owner is never presumed
    // gone here, leases expire instead.
    ctx.isOwnerGone = undefined;
    ctx.instanceId = `lambda:${process.env.AWS_LAMBDA_LOG_STREAM_NAME ?? 'local'}:${randomUUID().slice(0, 8)}`;
    // EMF on stdout unless the config names a sink of its own.
    ctx.metrics ??= new EmfMetricsSink({
      namespace: metricsOptions().namespace,
      service: metricsOptions().serviceName,
      onWarning: (m) => process.stderr.write(`rekey: metrics: ${m}\n`),
    });
    publicKeys = keys;
    return ctx;
  };
  return {
    settings: get,
    publicKeys: () => publicKeys,
    context() {
      composed ??= build().catch((e: unknown) => {
        composed = undefined;
        throw e;
      });
      return composed;
    },
  };
}

/** Worth another attempt: throttling and transient provider faults. */
export function isRetryable(e: unknown): boolean {
  return e instanceof ProviderError && e.retryable;
}

/** An error as a log field: class, code and message only (messages never hold key material). */
export function errorFields(e: unknown): Record<string, string> {
  if (!(e instanceof Error)) return { error: String(e) };
  const code = (e as { code?: unknown }).code;
  return { errorType: e.name, ...(typeof code === 'string' ? { errorCode: code } : {}), error: e.message };
}
