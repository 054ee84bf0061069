import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { SimClock } from '../aws/clock.js';
import { type GcpFaultConfig, GcpFaults } from '../gcp-kms/faults.js';
import { startPubSubControlServer } from './control.js';
import { GrpcError, invalid } from './errors.js';
import { Pusher } from './push.js';
import { PubSubState, type SubscriptionState } from './state.js';
import { streamingPull } from './streaming.js';

export { SimClock } from '../aws/clock.js';
export { PUSH_ACK_STATUSES } from './push.js';
export type { SubscriptionStats } from './state.js';
export { LIMITS, PubSubState } from './state.js';

export interface PubSubEmulatorOptions {
  /** gRPC port; 0 (default) picks a free one. Listens on 127.0.0.1 only. */
  port?: number;
  /** Also serve the HTTP control API (clock, faults, stats, reset) on this port; 0 picks one. Default: off. */
  controlPort?: number;
  /** Start of simulated time (publish times, retention); default: now. */
  startTime?: Date | string;
  /** Multiplies ack deadlines, push timeouts and backoffs: 1 = the service's timings, 0.01 for fast tests. */
  timeScale?: number;
  /** Push requests in flight per push subscription. Default 8. */
  pushConcurrency?: number;
  /** Longest a Pull without return_immediately waits for a message, in ms. Default 2,000. */
  pullWaitMs?: number;
  /** Allow push endpoints that are not loopback addresses. Default false. */
  allowRemotePush?: boolean;
  faults?: GcpFaultConfig;
}

export interface PubSubEmulator {
  endpoint: { host: string; port: number };
  /** `127.0.0.1:<port>`, what PUBSUB_EMULATOR_HOST takes. */
  host: string;
  controlUrl?: string;
  clock: SimClock;
  faults: GcpFaults;
  state: PubSubState;
  requestCounts: Record<string, number>;
  /** Delivery counters of a subscription (full name). */
  stats(subscription: string): SubscriptionState['stats'] | undefined;
  /** Resolves once no subscription holds a message (or rejects after `timeoutMs`). */
  drained(timeoutMs?: number): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

export const PUBLISHER_METHODS = [
  'CreateTopic',
  'GetTopic',
  'ListTopics',
  'ListTopicSubscriptions',
  'DeleteTopic',
  'Publish',
] as const;
export const SUBSCRIBER_METHODS = [
  'CreateSubscription',
  'GetSubscription',
  'ListSubscriptions',
  'DeleteSubscription',
  'ModifyPushConfig',
  'Pull',
  'Acknowledge',
  'ModifyAckDeadline',
] as const;

let cached: { publisher: grpc.ServiceDefinition; subscriber: grpc.ServiceDefinition } | null = null;

/** Publisher and Subscriber, loaded from the .proto files that ship with @google-cloud/pubsub and google-gax. */
export function pubsubServiceDefinitions(): {
  publisher: grpc.ServiceDefinition;
  subscriber: grpc.ServiceDefinition;
} {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve('@google-cloud/pubsub/package.json');
  const root = join(dirname(pkgJson), 'build', 'protos');
  const gaxEntry = createRequire(pkgJson).resolve('google-gax');
  const gaxRoot = join(gaxEntry.slice(0, gaxEntry.lastIndexOf(`${sep}build${sep}`)), 'build', 'protos');
  const def = protoLoader.loadSync('google/pubsub/v1/pubsub.proto', {
    includeDirs: [root, gaxRoot],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: loadPackageDefinition returns a nested namespace object
  const v1 = (grpc.loadPackageDefinition(def) as any).google.pubsub.v1;
  cached = { publisher: v1.Publisher.service, subscriber: v1.Subscriber.service };
  return cached;
}

/** A page of a sorted list: page tokens are the offset, as opaque to clients as the real ones. */
function page<T>(items: T[], size: unknown, token: unknown): { items: T[]; next: string } {
  const start = token ? Number.parseInt(Buffer.from(String(token), 'base64url').toString(), 10) : 0;
  if (!Number.isInteger(start) || start < 0) throw invalid('Invalid page token.');
  const n = Number(size) > 0 ? Math.min(Number(size), 1000) : 100;
  const slice = items.slice(start, start + n);
  const next = start + n < items.length ? Buffer.from(String(start + n)).toString('base64url') : '';
  return { items: slice, next };
}

/**
 * Starts a Cloud Pub/Sub emulator speaking gRPC. The unmodified `@google-cloud/pubsub` reaches
 * it through `PUBSUB_EMULATOR_HOST=<host>` or `new PubSub({apiEndpoint: host, projectId})`.
 */
export async function startPubSubEmulator(opts: PubSubEmulatorOptions = {}): Promise<PubSubEmulator> {
  const clock = new SimClock(opts.startTime);
  const faults = new GcpFaults(opts.faults);
  const state = new PubSubState({
    clock,
    ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
    ...(opts.allowRemotePush ? { allowRemotePush: true } : {}),
  });
  const requestCounts: Record<string, number> = {};
  const pushers = new Map<string, Pusher>();
  const pullWaitMs = opts.pullWaitMs ?? 2000;
  state.onPushChange = (sub, removed) => {
    pushers.get(sub.name)?.close();
    pushers.delete(sub.name);
    if (!removed) pushers.set(sub.name, new Pusher(state, sub, opts.pushConcurrency ?? 8));
  };

  const unary: Record<string, (req: Record<string, unknown>) => unknown | Promise<unknown>> = {
    CreateTopic: (req) => state.topicMessage(state.createTopic(req)),
    GetTopic: (req) => state.topicMessage(state.topic(req.topic)),
    ListTopics: (req) => {
      const p = page(state.listTopics(req.project), req.pageSize, req.pageToken);
      return { topics: p.items.map((t) => state.topicMessage(t)), nextPageToken: p.next };
    },
    ListTopicSubscriptions: (req) => {
      const p = page(state.topicSubscriptions(req.topic), req.pageSize, req.pageToken);
      return { subscriptions: p.items, nextPageToken: p.next };
    },
    DeleteTopic: (req) => {
      state.deleteTopic(req.topic);
      return {};
    },
    Publish: (req) => ({ messageIds: state.publish(req.topic, req.messages) }),
    CreateSubscription: (req) => state.subscriptionMessage(state.createSubscription(req)),
    GetSubscription: (req) => state.subscriptionMessage(state.subscription(req.subscription)),
    ListSubscriptions: (req) => {
      const p = page(state.listSubscriptions(req.project), req.pageSize, req.pageToken);
      return { subscriptions: p.items.map((s) => state.subscriptionMessage(s)), nextPageToken: p.next };
    },
    DeleteSubscription: (req) => {
      state.deleteSubscription(req.subscription);
      return {};
    },
    ModifyPushConfig: (req) => {
      if (!req.pushConfig) throw invalid('push_config is required.');
      state.modifyPushConfig(req.subscription, req.pushConfig as Record<string, unknown>);
      return {};
    },
    Pull: async (req) => {
      const sub = state.subscription(req.subscription);
      const max = Number(req.maxMessages ?? 0);
      if (!Number.isInteger(max) || max <= 0) throw invalid('max_messages must be a positive integer.');
      let got = state.take(sub, max);
      if (got.length === 0 && !req.returnImmediately) {
        got = await new Promise((resolve) => {
          const done = (d: ReturnType<typeof state.take>) => {
            clearTimeout(timer);
            sub.waiters.delete(look);
            resolve(d);
          };
          const look = () => {
            const d = state.subscriptions.has(sub.name) ? state.take(sub, max) : [];
            if (d.length > 0 || !state.subscriptions.has(sub.name)) done(d);
          };
          const timer = setTimeout(() => done([]), pullWaitMs);
          sub.waiters.add(look);
          look();
        });
      }
      return { receivedMessages: got.map((d) => state.receivedMessage(sub, d)) };
    },
    Acknowledge: (req) => {
      const sub = state.subscription(req.subscription);
      const ids = (req.ackIds as string[]) ?? [];
      if (ids.length === 0) throw invalid('ack_ids must not be empty.');
      state.acknowledge(sub, ids);
      return {};
    },
    ModifyAckDeadline: (req) => {
      const sub = state.subscription(req.subscription);
      const ids = (req.ackIds as string[]) ?? [];
      if (ids.length === 0) throw invalid('ack_ids must not be empty.');
      const s = Number(req.ackDeadlineSeconds ?? 0);
      if (!Number.isInteger(s) || s < 0 || s > 600) {
        throw invalid(
          `Invalid ack deadline given: ${s} seconds. The deadline must be between 0 and 600 seconds.`,
        );
      }
      state.modifyAckDeadline(sub, ids, s);
      return {};
    },
  };

  const handler =
    (method: string) =>
    (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      requestCounts[method] = (requestCounts[method] ?? 0) + 1;
      const run = async () => {
        try {
          faults.check(method, null);
          callback(null, await unary[method]!(call.request));
        } catch (e) {
          if (e instanceof GrpcError) callback({ code: e.code, details: e.message });
          else callback({ code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) });
        }
      };
      const delay = faults.latency();
      if (delay > 0) setTimeout(run, delay);
      else void run();
    };

  const publisher: grpc.UntypedServiceImplementation = {};
  for (const m of PUBLISHER_METHODS) publisher[m] = handler(m);
  const subscriber: grpc.UntypedServiceImplementation = {};
  for (const m of SUBSCRIBER_METHODS) subscriber[m] = handler(m);
  subscriber.StreamingPull = (
    call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>,
  ) => {
    requestCounts.StreamingPull = (requestCounts.StreamingPull ?? 0) + 1;
    try {
      faults.check('StreamingPull', null);
    } catch (e) {
      const g = e as GrpcError;
      call.emit('error', { code: g.code, details: g.message });
      return;
    }
    streamingPull(state, call, () => {});
  };

  const defs = pubsubServiceDefinitions();
  // Publish takes requests up to 10 MB: past grpc-js's 4 MB default, so the size check is ours.
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(defs.publisher, publisher);
  server.addService(defs.subscriber, subscriber);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });

  const reset = () => {
    state.reset();
    faults.reset();
    for (const k of Object.keys(requestCounts)) delete requestCounts[k];
  };
  const stats = (name: string) => state.subscriptions.get(name)?.stats;
  const drained = async (timeoutMs = 30_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const busy = [...state.subscriptions.values()].filter((s) => s.backlog.length > 0);
      if (busy.length === 0) return;
      if (Date.now() > until) {
        throw new Error(
          `Pub/Sub emulator: still holding messages after ${timeoutMs} ms: ${busy.map((s) => `${s.id}=${s.backlog.length}`).join(', ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const control =
    opts.controlPort === undefined
      ? null
      : await startPubSubControlServer(opts.controlPort, { clock, faults, state, requestCounts, reset });

  return {
    endpoint: { host: '127.0.0.1', port },
    host: `127.0.0.1:${port}`,
    ...(control ? { controlUrl: control.url } : {}),
    clock,
    faults,
    state,
    requestCounts,
    stats,
    drained,
    reset,
    close: async () => {
      await control?.close();
      state.reset();
      for (const p of pushers.values()) p.close();
      pushers.clear();
      server.forceShutdown();
    },
  };
}
