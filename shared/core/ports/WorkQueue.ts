import type { VerifyMode } from '../rewrap/rewrapJob.js';

/**
 * One unit of queued work: re-wrap one shard (or an unsplit job). Self-contained, so any
 * worker that reads it can do the work with nothing but the state store and the config.
 */
export interface RewrapShardMessage {
  kind: 'rewrap-shard';
  /** The shard's job id (or the job's, when it was not split). */
  jobId: string;
  providerId: string;
  verify: VerifyMode;
  batchSize: number;
  ratePerSecond?: number;
}

export type WorkMessage = RewrapShardMessage;

/**
 * The queue between a scheduled cycle and its re-wrap workers (SQS, Storage Queues, Pub/Sub).
 * Delivery is at least once: the work a message names is idempotent (leases and checkpoints).
 */
export interface WorkQueue {
  send(messages: WorkMessage[]): Promise<void>;
}
