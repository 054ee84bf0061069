import type * as grpc from '@grpc/grpc-js';
import { GrpcError, invalid } from './errors.js';
import { ackDeadline, type Delivery, type PubSubState, type SubscriptionState } from './state.js';

type Duplex = grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>;

/**
 * StreamingPull, the RPC the client library's `subscription.on('message')` uses: the first
 * request names the subscription and the stream's ack deadline; later ones carry acks and
 * deadline changes; the server streams messages while the client's outstanding count stays
 * under its `max_outstanding_messages`.
 */
export function streamingPull(state: PubSubState, call: Duplex, onError: (e: unknown) => void): void {
  let sub: SubscriptionState | null = null;
  let deadlineSeconds = 10;
  let maxOutstanding = 0;
  const sent = new Map<string, Delivery>();
  let ended = false;

  const outstanding = () => {
    for (const [id, d] of sent) if (d.ackId !== id) sent.delete(id);
    return sent.size;
  };
  const finish = (err?: GrpcError) => {
    if (ended) return;
    ended = true;
    if (sub) sub.waiters.delete(pump);
    if (err) call.emit('error', { code: err.code, details: err.message });
    else call.end();
  };
  const pump = () => {
    if (ended || !sub) return;
    if (!state.subscriptions.has(sub.name)) {
      finish(new GrpcError(5, `Resource not found (resource=${sub.id}).`));
      return;
    }
    for (;;) {
      const room = maxOutstanding > 0 ? maxOutstanding - outstanding() : 100;
      if (room <= 0) return;
      const batch = state.take(sub, Math.min(room, 100), deadlineSeconds);
      if (batch.length === 0) return;
      for (const d of batch) sent.set(d.ackId!, d);
      call.write({
        receivedMessages: batch.map((d) => state.receivedMessage(sub!, d)),
        subscriptionProperties: {
          exactlyOnceDeliveryEnabled: sub.enableExactlyOnceDelivery,
          messageOrderingEnabled: sub.enableMessageOrdering,
        },
      });
    }
  };

  call.on('data', (req: Record<string, unknown>) => {
    if (ended) return;
    try {
      if (!sub) {
        sub = state.subscription(req.subscription);
        const n = Number(req.streamAckDeadlineSeconds ?? 0);
        if (n === 0) throw invalid('stream_ack_deadline_seconds must be set on the first request.');
        deadlineSeconds = ackDeadline(n);
        maxOutstanding = Number(req.maxOutstandingMessages ?? 0);
        sub.waiters.add(pump);
      } else if (typeof req.subscription === 'string' && req.subscription !== '') {
        throw invalid('subscription must only be set on the first request of a stream.');
      } else if (Number(req.streamAckDeadlineSeconds ?? 0) > 0) {
        deadlineSeconds = ackDeadline(req.streamAckDeadlineSeconds);
      }
      const acks = (req.ackIds as string[] | undefined) ?? [];
      if (acks.length > 0) state.acknowledge(sub, acks);
      const ids = (req.modifyDeadlineAckIds as string[] | undefined) ?? [];
      const secs = ((req.modifyDeadlineSeconds as number[] | undefined) ?? []).map(Number);
      if (ids.length !== secs.length) {
        throw invalid('modify_deadline_seconds and modify_deadline_ack_ids must have the same length.');
      }
      for (let i = 0; i < ids.length; i++) {
        const s = secs[i]!;
        if (s < 0 || s > 600) throw invalid(`Invalid ack deadline given: ${s} seconds.`);
        state.modifyAckDeadline(sub, [ids[i]!], s);
      }
      pump();
    } catch (e) {
      onError(e);
      finish(e instanceof GrpcError ? e : new GrpcError(13, String(e)));
    }
  });
  call.on('end', () => finish());
  call.on('cancelled', () => {
    ended = true;
    if (sub) sub.waiters.delete(pump);
  });
  call.on('error', () => {
    ended = true;
    if (sub) sub.waiters.delete(pump);
  });
}
