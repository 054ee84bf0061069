import { randomBytes } from 'node:crypto';
import type { SimClock } from '../aws/clock.js';
import { alreadyExists, invalid, notFound, unimplemented } from './errors.js';
import { DELETED_TOPIC, parseProjectName, parseSubscriptionName, parseTopicName } from './names.js';

/** Limits from the Pub/Sub quotas page that a publisher can run into. */
export const LIMITS = {
  requestBytes: 10 * 1024 * 1024,
  attributes: 100,
  attributeKeyBytes: 256,
  attributeValueBytes: 1024,
  orderingKeyBytes: 1024,
  minAckDeadlineSeconds: 10,
  maxAckDeadlineSeconds: 600,
  defaultAckDeadlineSeconds: 10,
  defaultRetentionMs: 7 * 86_400_000,
  minRetentionMs: 10 * 60_000,
  maxSubscriptionRetentionMs: 7 * 86_400_000,
  maxTopicRetentionMs: 31 * 86_400_000,
  maxBackoffMs: 600_000,
  defaultMinBackoffMs: 10_000,
  defaultMaxBackoffMs: 600_000,
  /** Push without a retry policy backs off between these (Pub/Sub's push backoff). */
  pushBackoffMinMs: 100,
  pushBackoffMaxMs: 60_000,
  minDeliveryAttempts: 5,
  maxDeliveryAttempts: 100,
} as const;

export interface DurationMsg {
  seconds?: string | number | null;
  nanos?: number | null;
}

export const durationMs = (d: DurationMsg | null | undefined): number | null =>
  d ? Number(d.seconds ?? 0) * 1000 + Math.floor(Number(d.nanos ?? 0) / 1e6) : null;
export const toDuration = (ms: number) => ({
  seconds: String(Math.floor(ms / 1000)),
  nanos: Math.round(ms % 1000) * 1e6,
});
export const toTimestamp = (ms: number) => ({
  seconds: String(Math.floor(ms / 1000)),
  nanos: Math.round(ms % 1000) * 1e6,
});

export interface StoredMessage {
  messageId: string;
  data: Buffer;
  attributes: Record<string, string>;
  orderingKey: string;
  /** Simulated time of publication (ms). */
  publishTimeMs: number;
}

/** One message in one subscription's backlog and where its delivery stands. */
export interface Delivery {
  message: StoredMessage;
  /** Deliveries made so far (1 + nacks + expired deadlines once delivered). */
  attempts: number;
  /** Real time (ms) from which it may be delivered again. */
  availableAt: number;
  /** Set while outstanding (delivered, neither acked nor nacked nor expired). */
  ackId: string | null;
  /** Real time (ms) the outstanding delivery's ack deadline passes. */
  deadline: number;
}

export interface SubscriptionStats {
  delivered: number;
  acked: number;
  nacked: number;
  expired: number;
  deadLettered: number;
  pushAttempts: number;
  pushFailures: number;
  /** HTTP status (or `timeout` / `error`) of every push attempt, in order. */
  pushResults: string[];
}

export interface TopicState {
  name: string;
  project: string;
  id: string;
  labels: Record<string, string>;
  kmsKeyName: string;
  messageRetentionMs: number | null;
}

export interface SubscriptionState {
  name: string;
  project: string;
  id: string;
  topic: string;
  labels: Record<string, string>;
  ackDeadlineSeconds: number;
  messageRetentionMs: number;
  retainAckedMessages: boolean;
  enableMessageOrdering: boolean;
  enableExactlyOnceDelivery: boolean;
  push: {
    endpoint: string;
    attributes: Record<string, string>;
    oidcToken: { serviceAccountEmail: string; audience: string } | null;
    noWrapper: { writeMetadata: boolean } | null;
  } | null;
  retryPolicy: { minMs: number; maxMs: number } | null;
  deadLetter: { topic: string; maxDeliveryAttempts: number } | null;
  expirationTtlMs: number | null;
  backlog: Delivery[];
  ackIds: Map<string, Delivery>;
  stats: SubscriptionStats;
  /** Called whenever messages may have become deliverable. */
  waiters: Set<() => void>;
  timer: NodeJS.Timeout | null;
  timerAt: number;
}

export interface PubSubStateOptions {
  clock: SimClock;
  /**
   * Multiplies every delivery timing: ack deadlines, push request timeouts, retry backoffs.
   * 1 behaves like the service; tests use e.g. 0.01 so a 10 s deadline lasts 100 ms.
   */
  timeScale?: number;
  /** Push endpoints on other hosts than loopback are refused unless this is set. */
  allowRemotePush?: boolean;
}

/** Everything Pub/Sub holds: topics, subscriptions and each subscription's backlog. */
export class PubSubState {
  readonly topics = new Map<string, TopicState>();
  readonly subscriptions = new Map<string, SubscriptionState>();
  readonly clock: SimClock;
  readonly timeScale: number;
  private readonly allowRemotePush: boolean;
  private nextId = BigInt(Date.now()) * 1000n;
  /** Push subscriptions appeared or went away: the emulator starts or stops their pushers. */
  onPushChange: (sub: SubscriptionState, removed: boolean) => void = () => {};

  constructor(opts: PubSubStateOptions) {
    this.clock = opts.clock;
    this.timeScale = opts.timeScale ?? 1;
    if (!(this.timeScale > 0)) throw new RangeError(`timeScale must be > 0 (got ${opts.timeScale})`);
    this.allowRemotePush = Boolean(opts.allowRemotePush);
  }

  // ---- topics ----

  createTopic(req: Record<string, unknown>): TopicState {
    const { name, project, id } = parseTopicName(req.name);
    if (this.topics.has(name)) throw alreadyExists(id);
    const retention = durationMs(req.messageRetentionDuration as DurationMsg | null);
    if (retention !== null && (retention < LIMITS.minRetentionMs || retention > LIMITS.maxTopicRetentionMs)) {
      throw invalid('Invalid message_retention_duration: must be between 10 minutes and 31 days.');
    }
    if (req.ingestionDataSourceSettings) throw unimplemented('ingestion_data_source_settings');
    if (req.schemaSettings) throw unimplemented('schema_settings');
    const topic: TopicState = {
      name,
      project,
      id,
      labels: { ...((req.labels as Record<string, string>) ?? {}) },
      kmsKeyName: typeof req.kmsKeyName === 'string' ? req.kmsKeyName : '',
      messageRetentionMs: retention,
    };
    this.topics.set(name, topic);
    return topic;
  }

  topic(nameValue: unknown): TopicState {
    const { name, id } = parseTopicName(nameValue);
    const t = this.topics.get(name);
    if (!t) throw notFound(id);
    return t;
  }

  deleteTopic(nameValue: unknown): void {
    const t = this.topic(nameValue);
    this.topics.delete(t.name);
    for (const s of this.subscriptions.values()) if (s.topic === t.name) s.topic = DELETED_TOPIC;
  }

  listTopics(projectValue: unknown): TopicState[] {
    const project = parseProjectName(projectValue);
    return [...this.topics.values()].filter((t) => t.project === project).sort(byName);
  }

  topicSubscriptions(topicValue: unknown): string[] {
    const t = this.topic(topicValue);
    return [...this.subscriptions.values()]
      .filter((s) => s.topic === t.name)
      .map((s) => s.name)
      .sort();
  }

  /** Publishes and returns the message ids, in request order. */
  publish(topicValue: unknown, messages: unknown): string[] {
    const topic = this.topic(topicValue);
    if (!Array.isArray(messages) || messages.length === 0) {
      throw invalid('The request must contain at least one message.');
    }
    let bytes = 0;
    const orderingKeys = new Set<string>();
    const checked = messages.map((m: Record<string, unknown>, i) => {
      const data = Buffer.isBuffer(m.data) ? m.data : Buffer.from((m.data as Uint8Array | null) ?? []);
      const attributes = { ...((m.attributes as Record<string, string> | null) ?? {}) };
      const keys = Object.keys(attributes);
      if (data.length === 0 && keys.length === 0) {
        throw invalid(`Message ${i} is empty: a message needs data or at least one attribute.`);
      }
      if (keys.length > LIMITS.attributes) {
        throw invalid(
          `Message ${i} has ${keys.length} attributes; at most ${LIMITS.attributes} are allowed.`,
        );
      }
      for (const k of keys) {
        const v = attributes[k] ?? '';
        if (k.length === 0 || Buffer.byteLength(k) > LIMITS.attributeKeyBytes)
          throw invalid(`Message ${i}: attribute key must be 1-${LIMITS.attributeKeyBytes} bytes.`);
        if (k.toLowerCase().startsWith('goog'))
          throw invalid(`Message ${i}: attribute key "${k}" is reserved (keys must not start with "goog").`);
        if (Buffer.byteLength(v) > LIMITS.attributeValueBytes)
          throw invalid(`Message ${i}: attribute "${k}" is longer than ${LIMITS.attributeValueBytes} bytes.`);
        bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
      }
      const orderingKey = typeof m.orderingKey === 'string' ? m.orderingKey : '';
      if (Buffer.byteLength(orderingKey) > LIMITS.orderingKeyBytes)
        throw invalid(`Message ${i}: ordering key is longer than ${LIMITS.orderingKeyBytes} bytes.`);
      orderingKeys.add(orderingKey);
      bytes += data.length + Buffer.byteLength(orderingKey);
      return { data: Buffer.from(data), attributes, orderingKey };
    });
    if (bytes > LIMITS.requestBytes) {
      throw invalid(`Request payload size exceeds the limit: ${LIMITS.requestBytes} bytes.`);
    }
    if (orderingKeys.size > 1) {
      throw invalid('All messages in a publish request must have the same ordering key.');
    }
    return checked.map((m) => this.deliverToSubscriptions(topic.name, m));
  }

  private deliverToSubscriptions(
    topicName: string,
    m: { data: Buffer; attributes: Record<string, string>; orderingKey: string },
  ): string {
    this.nextId += 1n;
    const message: StoredMessage = {
      messageId: String(this.nextId),
      data: m.data,
      attributes: m.attributes,
      orderingKey: m.orderingKey,
      publishTimeMs: this.clock.nowMs(),
    };
    const now = Date.now();
    for (const s of this.subscriptions.values()) {
      if (s.topic !== topicName) continue;
      s.backlog.push({ message, attempts: 0, availableAt: now, ackId: null, deadline: 0 });
      this.wake(s);
    }
    return message.messageId;
  }

  // ---- subscriptions ----

  createSubscription(req: Record<string, unknown>): SubscriptionState {
    const { name, project, id } = parseSubscriptionName(req.name);
    const topic = parseTopicName(req.topic);
    if (!this.topics.has(topic.name)) throw notFound(topic.id);
    if (this.subscriptions.has(name)) throw alreadyExists(id);
    if (typeof req.filter === 'string' && req.filter.length > 0) throw unimplemented('Subscription filters');
    for (const f of ['bigqueryConfig', 'cloudStorageConfig', 'bigtableConfig']) {
      if (req[f]) throw unimplemented(f);
    }
    const ackDeadlineSeconds = ackDeadline(req.ackDeadlineSeconds);
    const retention =
      durationMs(req.messageRetentionDuration as DurationMsg | null) ?? LIMITS.defaultRetentionMs;
    if (retention < LIMITS.minRetentionMs || retention > LIMITS.maxSubscriptionRetentionMs) {
      throw invalid('Invalid message_retention_duration: must be between 10 minutes and 7 days.');
    }
    const sub: SubscriptionState = {
      name,
      project,
      id,
      topic: topic.name,
      labels: { ...((req.labels as Record<string, string>) ?? {}) },
      ackDeadlineSeconds,
      messageRetentionMs: retention,
      retainAckedMessages: Boolean(req.retainAckedMessages),
      enableMessageOrdering: Boolean(req.enableMessageOrdering),
      enableExactlyOnceDelivery: Boolean(req.enableExactlyOnceDelivery),
      push: this.pushConfig(req.pushConfig as Record<string, unknown> | null),
      retryPolicy: retryPolicy(req.retryPolicy as Record<string, DurationMsg | null> | null),
      deadLetter: this.deadLetterPolicy(req.deadLetterPolicy as Record<string, unknown> | null),
      expirationTtlMs: expiration(req.expirationPolicy as Record<string, DurationMsg | null> | null),
      backlog: [],
      ackIds: new Map(),
      stats: {
        delivered: 0,
        acked: 0,
        nacked: 0,
        expired: 0,
        deadLettered: 0,
        pushAttempts: 0,
        pushFailures: 0,
        pushResults: [],
      },
      waiters: new Set(),
      timer: null,
      timerAt: 0,
    };
    if (sub.push && sub.enableExactlyOnceDelivery) {
      throw invalid('Exactly once delivery is not supported for push subscriptions.');
    }
    this.subscriptions.set(name, sub);
    if (sub.push) this.onPushChange(sub, false);
    return sub;
  }

  subscription(nameValue: unknown): SubscriptionState {
    const { name, id } = parseSubscriptionName(nameValue);
    const s = this.subscriptions.get(name);
    if (!s) throw notFound(id);
    return s;
  }

  deleteSubscription(nameValue: unknown): void {
    const s = this.subscription(nameValue);
    this.subscriptions.delete(s.name);
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    s.backlog = [];
    s.ackIds.clear();
    if (s.push) this.onPushChange(s, true);
    this.wake(s);
  }

  listSubscriptions(projectValue: unknown): SubscriptionState[] {
    const project = parseProjectName(projectValue);
    return [...this.subscriptions.values()].filter((s) => s.project === project).sort(byName);
  }

  modifyPushConfig(nameValue: unknown, pushConfig: Record<string, unknown> | null): void {
    const s = this.subscription(nameValue);
    const next = this.pushConfig(pushConfig);
    if (s.push) this.onPushChange(s, true);
    s.push = next;
    if (s.push) this.onPushChange(s, false);
    this.wake(s);
  }

  private pushConfig(pc: Record<string, unknown> | null): SubscriptionState['push'] {
    const endpoint = typeof pc?.pushEndpoint === 'string' ? pc.pushEndpoint : '';
    if (!pc || endpoint === '') return null;
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw invalidEndpoint(endpoint);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalidEndpoint(endpoint);
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
    if (!loopback && !this.allowRemotePush) {
      throw invalid(
        `Invalid push endpoint given (endpoint=${endpoint}): this emulator pushes only to loopback addresses.`,
      );
    }
    const attributes = { ...((pc.attributes as Record<string, string>) ?? {}) };
    const version = attributes['x-goog-version'] ?? 'v1';
    if (!['v1', 'v1beta1', 'v1beta2'].includes(version))
      throw invalid(`Invalid push config attribute x-goog-version: ${version}.`);
    if (version === 'v1beta1') throw unimplemented('The v1beta1 push format');
    attributes['x-goog-version'] = version;
    const oidc = pc.oidcToken as { serviceAccountEmail?: string; audience?: string } | null;
    const noWrapper = pc.noWrapper as { writeMetadata?: boolean } | null;
    return {
      endpoint,
      attributes,
      oidcToken: oidc
        ? { serviceAccountEmail: oidc.serviceAccountEmail ?? '', audience: oidc.audience ?? '' }
        : null,
      noWrapper: noWrapper ? { writeMetadata: Boolean(noWrapper.writeMetadata) } : null,
    };
  }

  private deadLetterPolicy(p: Record<string, unknown> | null): SubscriptionState['deadLetter'] {
    if (!p || typeof p.deadLetterTopic !== 'string' || p.deadLetterTopic === '') return null;
    const topic = parseTopicName(p.deadLetterTopic);
    if (!this.topics.has(topic.name)) throw notFound(topic.id);
    const n = Number(p.maxDeliveryAttempts ?? 0) || LIMITS.minDeliveryAttempts;
    if (!Number.isInteger(n) || n < LIMITS.minDeliveryAttempts || n > LIMITS.maxDeliveryAttempts) {
      throw invalid(
        `Invalid max_delivery_attempts: must be between ${LIMITS.minDeliveryAttempts} and ${LIMITS.maxDeliveryAttempts}.`,
      );
    }
    return { topic: topic.name, maxDeliveryAttempts: n };
  }

  // ---- delivery ----

  /**
   * Hands out up to `max` deliverable messages: each becomes outstanding under a fresh ack id
   * until `deadlineSeconds` pass. Messages past their delivery attempts go to the dead-letter
   * topic instead; messages past retention are dropped; with ordering enabled only the oldest
   * message of each ordering key is handed out.
   */
  take(sub: SubscriptionState, max: number, deadlineSeconds = sub.ackDeadlineSeconds): Delivery[] {
    if (sub.topic === DELETED_TOPIC && sub.backlog.length === 0) return [];
    const now = Date.now();
    this.expire(sub, now);
    const oldest = this.clock.nowMs() - sub.messageRetentionMs;
    sub.backlog = sub.backlog.filter((d) => d.message.publishTimeMs >= oldest || d.ackId !== null);
    const out: Delivery[] = [];
    const blockedKeys = new Set<string>();
    for (const d of [...sub.backlog]) {
      if (out.length >= max) break;
      const key = d.message.orderingKey;
      const ordered = sub.enableMessageOrdering && key !== '';
      if (ordered && blockedKeys.has(key)) continue;
      if (ordered) blockedKeys.add(key);
      if (d.ackId !== null || d.availableAt > now) continue;
      if (sub.deadLetter && d.attempts >= sub.deadLetter.maxDeliveryAttempts) {
        this.forwardToDeadLetter(sub, d);
        continue;
      }
      d.attempts += 1;
      d.ackId = `${sub.id}:${randomBytes(12).toString('hex')}`;
      d.deadline = now + this.scaled(deadlineSeconds * 1000);
      sub.ackIds.set(d.ackId, d);
      sub.stats.delivered += 1;
      out.push(d);
    }
    this.schedule(sub);
    return out;
  }

  /** The delivery attempt to report: only subscriptions with a dead-letter policy count them. */
  deliveryAttempt(sub: SubscriptionState, d: Delivery): number {
    return sub.deadLetter ? d.attempts : 0;
  }

  acknowledge(sub: SubscriptionState, ackIds: string[]): void {
    for (const id of ackIds) {
      const d = sub.ackIds.get(id);
      if (!d) continue;
      const i = sub.backlog.indexOf(d);
      if (i >= 0) {
        sub.backlog.splice(i, 1);
        sub.stats.acked += 1;
      }
      for (const [k, v] of sub.ackIds) if (v === d) sub.ackIds.delete(k);
    }
    this.wake(sub);
  }

  /** A new deadline for outstanding messages; 0 hands them back at once (a nack). */
  modifyAckDeadline(sub: SubscriptionState, ackIds: string[], seconds: number, push = false): void {
    const now = Date.now();
    for (const id of ackIds) {
      const d = sub.ackIds.get(id);
      if (!d || d.ackId !== id) continue;
      if (seconds === 0) {
        d.ackId = null;
        d.availableAt = now + this.backoff(sub, d.attempts, push);
        sub.stats.nacked += 1;
      } else {
        d.deadline = now + this.scaled(seconds * 1000);
      }
    }
    this.wake(sub);
  }

  /** Outstanding deliveries whose deadline passed count as nacked at their deadline. */
  private expire(sub: SubscriptionState, now: number): void {
    for (const d of sub.backlog) {
      if (d.ackId !== null && d.deadline <= now) {
        sub.ackIds.delete(d.ackId);
        d.ackId = null;
        d.availableAt = d.deadline + this.backoff(sub, d.attempts, Boolean(sub.push));
        sub.stats.expired += 1;
      }
    }
  }

  private forwardToDeadLetter(sub: SubscriptionState, d: Delivery): void {
    sub.backlog.splice(sub.backlog.indexOf(d), 1);
    sub.stats.deadLettered += 1;
    const target = sub.deadLetter!.topic;
    // Dead lettering is best effort: a dead-letter topic deleted since is a message dropped.
    if (!this.topics.has(target)) return;
    this.deliverToSubscriptions(target, {
      data: d.message.data,
      attributes: {
        ...d.message.attributes,
        CloudPubSubDeadLetterSourceDeliveryCount: String(d.attempts),
        CloudPubSubDeadLetterSourceSubscription: sub.id,
        CloudPubSubDeadLetterSourceSubscriptionProject: sub.project,
        CloudPubSubDeadLetterSourceTopicPublishTime: new Date(d.message.publishTimeMs).toISOString(),
      },
      orderingKey: d.message.orderingKey,
    });
  }

  /** Exponential backoff after the n-th failed delivery, per the retry policy (or push's default). */
  backoff(sub: SubscriptionState, attempts: number, push: boolean): number {
    const p =
      sub.retryPolicy ?? (push ? { minMs: LIMITS.pushBackoffMinMs, maxMs: LIMITS.pushBackoffMaxMs } : null);
    if (!p) return 0;
    const ms = Math.min(p.maxMs, p.minMs * 2 ** Math.max(0, attempts - 1));
    return this.scaled(ms);
  }

  scaled(ms: number): number {
    return ms * this.timeScale;
  }

  /** Tells whoever waits on the subscription (pushers, pulls, streams) to look again. */
  wake(sub: SubscriptionState): void {
    for (const w of [...sub.waiters]) w();
  }

  /** Sets one timer for the next moment something in the backlog falls due. */
  private schedule(sub: SubscriptionState): void {
    if (sub.waiters.size === 0 || !this.subscriptions.has(sub.name)) return;
    let next = Number.POSITIVE_INFINITY;
    for (const d of sub.backlog) next = Math.min(next, d.ackId !== null ? d.deadline : d.availableAt);
    const now = Date.now();
    if (!Number.isFinite(next) || next <= now) return;
    if (sub.timer && sub.timerAt <= next) return;
    if (sub.timer) clearTimeout(sub.timer);
    sub.timerAt = next;
    sub.timer = setTimeout(() => {
      sub.timer = null;
      this.wake(sub);
    }, next - now);
    sub.timer.unref();
  }

  /** Forgets everything. */
  reset(): void {
    for (const s of this.subscriptions.values()) {
      if (s.timer) clearTimeout(s.timer);
      if (s.push) this.onPushChange(s, true);
    }
    this.subscriptions.clear();
    this.topics.clear();
  }

  // ---- wire shapes ----

  topicMessage(t: TopicState): Record<string, unknown> {
    return {
      name: t.name,
      labels: t.labels,
      kmsKeyName: t.kmsKeyName,
      ...(t.messageRetentionMs !== null
        ? { messageRetentionDuration: toDuration(t.messageRetentionMs) }
        : {}),
      state: 'ACTIVE',
    };
  }

  subscriptionMessage(s: SubscriptionState): Record<string, unknown> {
    const topic = this.topics.get(s.topic);
    return {
      name: s.name,
      topic: s.topic,
      pushConfig: s.push
        ? {
            pushEndpoint: s.push.endpoint,
            attributes: s.push.attributes,
            ...(s.push.oidcToken ? { oidcToken: s.push.oidcToken } : {}),
            ...(s.push.noWrapper ? { noWrapper: s.push.noWrapper } : {}),
          }
        : {},
      ackDeadlineSeconds: s.ackDeadlineSeconds,
      retainAckedMessages: s.retainAckedMessages,
      messageRetentionDuration: toDuration(s.messageRetentionMs),
      labels: s.labels,
      enableMessageOrdering: s.enableMessageOrdering,
      ...(s.expirationTtlMs !== null ? { expirationPolicy: { ttl: toDuration(s.expirationTtlMs) } } : {}),
      ...(s.deadLetter
        ? {
            deadLetterPolicy: {
              deadLetterTopic: s.deadLetter.topic,
              maxDeliveryAttempts: s.deadLetter.maxDeliveryAttempts,
            },
          }
        : {}),
      ...(s.retryPolicy
        ? {
            retryPolicy: {
              minimumBackoff: toDuration(s.retryPolicy.minMs),
              maximumBackoff: toDuration(s.retryPolicy.maxMs),
            },
          }
        : {}),
      enableExactlyOnceDelivery: s.enableExactlyOnceDelivery,
      ...(topic?.messageRetentionMs
        ? { topicMessageRetentionDuration: toDuration(topic.messageRetentionMs) }
        : {}),
      state: 'ACTIVE',
    };
  }

  receivedMessage(sub: SubscriptionState, d: Delivery): Record<string, unknown> {
    return {
      ackId: d.ackId,
      message: {
        data: d.message.data,
        attributes: d.message.attributes,
        messageId: d.message.messageId,
        publishTime: toTimestamp(d.message.publishTimeMs),
        orderingKey: d.message.orderingKey,
      },
      deliveryAttempt: this.deliveryAttempt(sub, d),
    };
  }
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function invalidEndpoint(endpoint: string) {
  return invalid(
    `Invalid push endpoint given (endpoint=${endpoint}). Refer to https://cloud.google.com/pubsub/docs/push for more information.`,
  );
}

export function ackDeadline(value: unknown): number {
  const n = Number(value ?? 0);
  if (n === 0) return LIMITS.defaultAckDeadlineSeconds;
  if (!Number.isInteger(n) || n < LIMITS.minAckDeadlineSeconds || n > LIMITS.maxAckDeadlineSeconds) {
    throw invalid(
      `Invalid ack deadline given: ${String(value)} seconds. The deadline must be between ${LIMITS.minAckDeadlineSeconds} and ${LIMITS.maxAckDeadlineSeconds} seconds.`,
    );
  }
  return n;
}

function retryPolicy(p: Record<string, DurationMsg | null> | null): SubscriptionState['retryPolicy'] {
  if (!p) return null;
  const minMs = durationMs(p.minimumBackoff) ?? LIMITS.defaultMinBackoffMs;
  const maxMs = durationMs(p.maximumBackoff) ?? LIMITS.defaultMaxBackoffMs;
  for (const [field, v] of [
    ['minimum_backoff', minMs],
    ['maximum_backoff', maxMs],
  ] as const) {
    if (v < 0 || v > LIMITS.maxBackoffMs)
      throw invalid(`Invalid retry_policy.${field}: must be between 0 and 600 seconds.`);
  }
  if (minMs > maxMs) throw invalid('Invalid retry_policy: minimum_backoff must not exceed maximum_backoff.');
  return { minMs, maxMs };
}

function expiration(p: Record<string, DurationMsg | null> | null): number | null {
  if (!p) return 31 * 86_400_000;
  const ttl = durationMs(p.ttl);
  if (ttl === null) return null;
  if (ttl < 86_400_000) throw invalid('Invalid expiration_policy.ttl: must be at least 1 day.');
  return ttl;
}
