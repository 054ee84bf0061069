import { PubSub } from '@google-cloud/pubsub';
import { ConfigError, ProviderError } from '../../core/errors.js';

/** gRPC status codes worth another try (the client library has already retried these). */
const TRANSIENT = new Set([1, 4, 8, 10, 13, 14]); // CANCELLED DEADLINE_EXCEEDED RESOURCE_EXHAUSTED ABORTED INTERNAL UNAVAILABLE
const NAMES: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  16: 'UNAUTHENTICATED',
};

export interface PubSubTopicOptions {
  /** Full topic name, `projects/<project>/topics/<topic>`. */
  topic: string;
  /** A ready client (tests, shared connections); otherwise one is built. */
  client?: PubSub;
  /**
   * `host:port` of an emulator. Without it the client honours PUBSUB_EMULATOR_HOST, then the
   * real service with application default credentials (a function's service account).
   */
  apiEndpoint?: string;
}

const TOPIC = /^projects\/([^/]+)\/topics\/([A-Za-z][A-Za-z0-9\-_.~+%]{2,254})$/;

/** Checks a full topic name and returns its project; a malformed one is a ConfigError naming `what`. */
export function topicProject(topic: string, what: string): string {
  const m = TOPIC.exec(topic);
  if (!m)
    throw new ConfigError(`${what}: "${topic}" is not a topic name (projects/<project>/topics/<topic>)`);
  return m[1]!;
}

/** The client for a topic: the given one, or a new one for the topic's project. */
export function pubsubClient(opts: PubSubTopicOptions, what: string): { client: PubSub; owned: boolean } {
  const projectId = topicProject(opts.topic, what);
  if (opts.client) return { client: opts.client, owned: false };
  return {
    client: new PubSub({ projectId, ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}) }),
    owned: true,
  };
}

/** A Pub/Sub client failure as the core's ProviderError; a missing topic is said plainly. */
export function pubsubError(id: string, action: string, topic: string, e: unknown): ProviderError {
  const err = e as { code?: number; details?: string; message?: string };
  const code = typeof err.code === 'number' ? err.code : 2;
  const name = NAMES[code] ?? `GRPC_${code}`;
  const why =
    code === 5
      ? `topic ${topic} does not exist (create it, or fix the topic name in the function's settings)`
      : (err.details ?? err.message ?? String(e));
  return new ProviderError(id, name, `${action} to ${topic}: ${name}: ${why}`, {
    retryable: TRANSIENT.has(code),
    throttled: code === 8,
    cause: e,
  });
}
