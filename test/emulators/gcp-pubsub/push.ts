import type { Delivery, PubSubState, SubscriptionState } from './state.js';

/** Responses Pub/Sub takes as an acknowledgement; anything else (or no answer) is a nack. */
export const PUSH_ACK_STATUSES = new Set(['102', '200', '201', '202', '204']);

const USER_AGENT = 'APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)';

/**
 * Delivers one push subscription's messages by HTTP POST, as Pub/Sub does: the JSON push
 * envelope (or the bare data with `noWrapper`), at most `concurrency` requests in flight, the
 * ack deadline as the request timeout, and a failed or timed-out request handed back with the
 * subscription's backoff (its retry policy, or push's default 100 ms - 60 s).
 */
export class Pusher {
  private inFlight = 0;
  private closed = false;
  private readonly aborts = new Set<AbortController>();

  constructor(
    private readonly state: PubSubState,
    private readonly sub: SubscriptionState,
    private readonly concurrency: number,
  ) {
    sub.waiters.add(this.pump);
    queueMicrotask(this.pump);
  }

  readonly pump = (): void => {
    while (!this.closed && this.inFlight < this.concurrency) {
      const [d] = this.state.take(this.sub, 1);
      if (!d) return;
      this.inFlight += 1;
      void this.deliver(d).finally(() => {
        this.inFlight -= 1;
        this.pump();
      });
    }
  };

  close(): void {
    this.closed = true;
    this.sub.waiters.delete(this.pump);
    for (const a of this.aborts) a.abort();
  }

  private async deliver(d: Delivery): Promise<void> {
    const push = this.sub.push;
    const ackId = d.ackId!;
    if (!push) {
      this.state.modifyAckDeadline(this.sub, [ackId], 0);
      return;
    }
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = setTimeout(() => abort.abort(), this.state.scaled(this.sub.ackDeadlineSeconds * 1000));
    let result: string;
    try {
      const { headers, body } = this.request(d, push);
      const res = await fetch(push.endpoint, { method: 'POST', headers, body, signal: abort.signal });
      await res.arrayBuffer().catch(() => undefined);
      result = String(res.status);
    } catch {
      result = abort.signal.aborted ? 'timeout' : 'error';
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
    }
    if (this.closed && result === 'timeout') return;
    this.sub.stats.pushAttempts += 1;
    this.sub.stats.pushResults.push(result);
    if (PUSH_ACK_STATUSES.has(result)) {
      this.state.acknowledge(this.sub, [ackId]);
    } else {
      this.sub.stats.pushFailures += 1;
      this.state.modifyAckDeadline(this.sub, [ackId], 0, true);
    }
  }

  private request(
    d: Delivery,
    push: NonNullable<SubscriptionState['push']>,
  ): { headers: Record<string, string>; body: ArrayBuffer | string } {
    const m = d.message;
    const publishTime = new Date(m.publishTimeMs).toISOString();
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, from: 'noreply@google.com' };
    if (push.noWrapper) {
      headers['content-type'] = 'application/octet-stream';
      if (push.noWrapper.writeMetadata) {
        headers['x-goog-pubsub-subscription-name'] = this.sub.name;
        headers['x-goog-pubsub-message-id'] = m.messageId;
        headers['x-goog-pubsub-publish-time'] = publishTime;
        if (m.orderingKey) headers['x-goog-pubsub-ordering-key'] = m.orderingKey;
        for (const [k, v] of Object.entries(m.attributes)) headers[k] = v;
      }
      return {
        headers,
        body: m.data.buffer.slice(m.data.byteOffset, m.data.byteOffset + m.data.length) as ArrayBuffer,
      };
    }
    headers['content-type'] = 'application/json';
    const attempt = this.state.deliveryAttempt(this.sub, d);
    const envelope = {
      message: {
        ...(m.data.length > 0 ? { data: m.data.toString('base64') } : {}),
        ...(Object.keys(m.attributes).length > 0 ? { attributes: m.attributes } : {}),
        messageId: m.messageId,
        message_id: m.messageId,
        publishTime,
        publish_time: publishTime,
        ...(m.orderingKey ? { orderingKey: m.orderingKey } : {}),
      },
      subscription: this.sub.name,
      ...(attempt > 0 ? { deliveryAttempt: attempt } : {}),
    };
    return { headers, body: JSON.stringify(envelope) };
  }
}
