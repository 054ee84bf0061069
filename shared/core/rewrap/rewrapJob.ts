import { timingSafeEqual } from 'node:crypto';
import type { KeyRef } from '../domain/keyRef.js';
import { errorMessage, ProviderError } from '../errors.js';
import type { DekRecord, DekReplacement, DekStore } from '../ports/DekStore.js';
import type { KeyProvider, Wrapped } from '../ports/KeyProvider.js';
import type { MetricsSink } from '../ports/MetricsSink.js';
import type { RewrapJob, StateStore } from '../ports/StateStore.js';
import { AdaptiveRate } from './adaptiveRate.js';

export type VerifyMode = 'full' | 'none' | { sample: number };

/** A job that has not started: nothing scanned, cursor at the beginning. */
export function newRewrapJob(spec: {
  id: string;
  keyRef: string;
  storeId: string;
  toVersion: string;
  fromVersions?: string[];
  now: Date;
}): RewrapJob {
  return {
    id: spec.id,
    keyRef: spec.keyRef,
    storeId: spec.storeId,
    fromVersions: spec.fromVersions ?? [],
    toVersion: spec.toVersion,
    status: 'running',
    cursor: null,
    counts: { scanned: 0, rewrapped: 0, verified: 0, conflicts: 0, failed: 0, retried: 0, throttled: 0 },
    failures: [],
    createdAt: spec.now.toISOString(),
    updatedAt: spec.now.toISOString(),
  };
}

export interface RewrapProgress {
  jobId: string;
  storeId: string;
  keyRef: string;
  counts: RewrapJob['counts'];
  /** Estimated total, if known. */
  total?: number;
}

export interface RewrapJobOptions {
  job: RewrapJob;
  ref: KeyRef;
  provider: KeyProvider;
  store: DekStore;
  state: StateStore;
  verify: VerifyMode;
  batchSize: number;
  /** Provider calls in flight at once. Default 16. */
  concurrency?: number;
  /** Ceiling for provider operations per second (the policy's `rate`). */
  ratePerSecond?: number;
  /** Shared limiter (one per provider in a process); built from ratePerSecond when absent. */
  limiter?: AdaptiveRate;
  metrics?: MetricsSink;
  /** Low-cardinality metric dimensions (provider, store, policy). */
  dimensions?: Record<string, string>;
  /** DEKs left when the job started (for the lag metric). */
  total?: number;
  now: () => Date;
  onProgress?: (p: RewrapProgress) => void;
  /** Called after each committed batch (lease renewal); throwing aborts the job. */
  onBatch?: () => Promise<void>;
  /** Attempts for retryable provider errors. */
  maxAttempts?: number;
  sleep?: (ms: number) => Promise<void>;
}

const MAX_RECORDED_FAILURES = 100;
/**
 * DEKs per batched provider call: a whole default batch, so per-call costs (an HSM checks on
 * the token that each version may still be used, once per call) are paid once per batch.
 */
const BATCH_CALL = 1000;
/** Rounds per batch: a DEK that lost a CAS race or hit transient errors is tried again. */
const MAX_ROUNDS = 3;

interface ItemOutcome {
  replacement?: DekReplacement;
  failed?: string;
  /** The failure was transient (retries exhausted): worth another round. */
  retryable?: boolean;
  verified: boolean;
}

/**
 * Moves every DEK of one key in one store from older versions to `job.toVersion`.
 * Batches are read by cursor, re-wrapped, written with compare-and-swap, then the cursor is
 * checkpointed: a crash at any point resumes after the last committed batch, and a DEK is at
 * every moment either old-and-valid or new-and-valid. A DEK that cannot be re-wrapped is
 * recorded and skipped; it keeps its old version, so retirement of that version stays blocked.
 */
export async function runRewrapJob(opts: RewrapJobOptions): Promise<RewrapJob> {
  const { ref, provider, store, state } = opts;
  let job: RewrapJob = { ...opts.job, counts: { ...opts.job.counts }, failures: [...opts.job.failures] };
  if (job.status === 'done') return job;
  const serverSide = provider.capabilities().serverSideRewrap && typeof provider.rewrap === 'function';
  const batch = serverSide && typeof provider.rewrapMany === 'function';
  const limiter =
    opts.limiter ?? new AdaptiveRate(opts.ratePerSecond ? { maxPerSecond: opts.ratePerSecond } : {});
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  job.counts.retried ??= 0;
  job.counts.throttled ??= 0;
  const counts = () => job.counts as Required<RewrapJob['counts']>;
  const maxAttempts = opts.maxAttempts ?? 8;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  /** One provider call: waits for the limiter, retries retryable errors with full jitter. */
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      await limiter.acquire(1);
      try {
        const out = await fn();
        limiter.onSuccess(1);
        return out;
      } catch (e) {
        if (e instanceof ProviderError && e.throttled) {
          counts().throttled++;
          limiter.onThrottle();
        }
        if (!(e instanceof ProviderError) || !e.retryable || attempt >= maxAttempts) throw e;
        counts().retried++;
        await sleep(Math.random() * Math.min(2000, 50 * 2 ** attempt));
      }
    }
  };

  const shouldVerify = (): boolean =>
    opts.verify === 'full' ? true : opts.verify === 'none' ? false : Math.random() < opts.verify.sample;

  const rewrapOne = async (dek: DekRecord, verify: boolean): Promise<ItemOutcome> => {
    const old: Wrapped = { version: dek.version, ciphertext: dek.wrapped };
    let plaintext: Uint8Array | undefined;
    let check: Uint8Array | undefined;
    try {
      let next: Wrapped;
      // Verification needs the original DEK in hand anyway, so a verified item takes the
      // unwrap + wrap path (3 operations with the check) rather than rewrap + 2 unwraps (4).
      if (serverSide && !verify) {
        next = await call(() => provider.rewrap!(ref, old, dek.context, job.toVersion));
      } else {
        plaintext = await call(() => provider.unwrap(ref, old, dek.context));
        const pt = plaintext;
        next = await call(() => provider.wrap(ref, pt, dek.context));
      }
      if (next.version !== job.toVersion) {
        throw new Error(`provider wrapped under version ${next.version}, expected ${job.toVersion}`);
      }
      if (verify) {
        check = await call(() => provider.unwrap(ref, next, dek.context));
        if (!plaintext || check.length !== plaintext.length || !timingSafeEqual(check, plaintext)) {
          throw new Error('verification failed: the new ciphertext does not unwrap to the original DEK');
        }
      }
      return {
        replacement: {
          id: dek.id,
          expected: dek.wrapped,
          newWrapped: next.ciphertext,
          newVersion: next.version,
        },
        verified: verify,
      };
    } catch (e) {
      return {
        failed: errorMessage(e),
        retryable: e instanceof ProviderError && e.retryable,
        verified: false,
      };
    } finally {
      plaintext?.fill(0);
      check?.fill(0);
    }
  };

  /** Unverified items through the provider's batch call (one HSM session loop, one request). */
  const rewrapBatch = async (deks: DekRecord[]): Promise<ItemOutcome[]> => {
    const out: ItemOutcome[] = [];
    for (let at = 0; at < deks.length; at += BATCH_CALL) {
      const chunk = deks.slice(at, at + BATCH_CALL);
      await limiter.acquire(chunk.length);
      try {
        const results = await provider.rewrapMany!(
          ref,
          chunk.map((d) => ({ wrapped: { version: d.version, ciphertext: d.wrapped }, ctx: d.context })),
          job.toVersion,
        );
        limiter.onSuccess(chunk.length);
        results.forEach((r, i) => {
          const d = chunk[i]!;
          if (r.ok && r.wrapped.version === job.toVersion) {
            out.push({
              replacement: {
                id: d.id,
                expected: d.wrapped,
                newWrapped: r.wrapped.ciphertext,
                newVersion: r.wrapped.version,
              },
              verified: false,
            });
          } else if (r.ok) {
            out.push({
              failed: `provider wrapped under version ${r.wrapped.version}, expected ${job.toVersion}`,
              verified: false,
            });
          } else {
            if (r.error.retryable) counts().retried++;
            out.push({ failed: r.error.message, retryable: r.error.retryable, verified: false });
          }
        });
      } catch (e) {
        if (e instanceof ProviderError && e.throttled) {
          counts().throttled++;
          limiter.onThrottle();
        }
        const retryable = e instanceof ProviderError && e.retryable;
        for (const _ of chunk) out.push({ failed: errorMessage(e), retryable, verified: false });
      }
    }
    return out;
  };

  const processAll = async (deks: DekRecord[]): Promise<ItemOutcome[]> => {
    const out: ItemOutcome[] = new Array(deks.length);
    // Items to verify need the DEK in hand: they take the per-item path. The rest go through
    // the provider's batch call when it has one.
    const verifying = deks.map(() => shouldVerify());
    const perItem: number[] = [];
    const batched: number[] = [];
    for (let i = 0; i < deks.length; i++) (batch && !verifying[i] ? batched : perItem).push(i);
    if (batched.length) {
      const results = await rewrapBatch(batched.map((i) => deks[i]!));
      batched.forEach((i, k) => {
        out[i] = results[k]!;
      });
    }
    let next = 0;
    const worker = async () => {
      while (next < perItem.length) {
        const i = perItem[next++]!;
        out[i] = await rewrapOne(deks[i]!, verifying[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, perItem.length) }, worker));
    return out;
  };

  const recordFailure = (id: string, error: string) => {
    job.counts.failed++;
    if (job.failures.length < MAX_RECORDED_FAILURES) job.failures.push({ id, error });
  };

  const query = {
    keyRef: job.keyRef,
    notVersion: job.toVersion,
    ...(job.fromVersions.length ? { versions: job.fromVersions } : {}),
    ...(job.shard?.idFrom !== undefined ? { idFrom: job.shard.idFrom } : {}),
    ...(job.shard?.idTo !== undefined ? { idTo: job.shard.idTo } : {}),
  };
  const dims = { store: job.storeId, ...(opts.dimensions ?? {}) };
  const props = { keyRef: job.keyRef, job: job.id };
  let reported = {
    rewrapped: job.counts.rewrapped,
    failed: job.counts.failed,
    retried: counts().retried,
    throttled: counts().throttled,
  };
  let lastAt = performance.now();
  const emitMetrics = () => {
    if (!opts.metrics) return;
    const c = counts();
    const t = performance.now();
    const moved = c.rewrapped - reported.rewrapped;
    const point = (name: string, value: number, unit: 'Count' | 'Count/Second') => ({
      name,
      value,
      unit,
      dimensions: dims,
      properties: props,
    });
    opts.metrics.record([
      point('rekey.rewrap.rewrapped', moved, 'Count'),
      point('rekey.rewrap.failed', c.failed - reported.failed, 'Count'),
      point('rekey.rewrap.retried', c.retried - reported.retried, 'Count'),
      point('rekey.rewrap.throttled', c.throttled - reported.throttled, 'Count'),
      point('rekey.rewrap.rate', t > lastAt ? Math.round((moved * 1000) / (t - lastAt)) : 0, 'Count/Second'),
      ...(opts.total !== undefined
        ? [point('rekey.rewrap.lag', Math.max(0, opts.total - c.rewrapped - c.failed), 'Count')]
        : []),
    ]);
    reported = { rewrapped: c.rewrapped, failed: c.failed, retried: c.retried, throttled: c.throttled };
    lastAt = t;
  };

  type PageOf = { items: DekRecord[]; cursor: string | null };

  /** Writes one batch with compare-and-swap, settles races and retries, then checkpoints. */
  const commitBatch = async (page: PageOf, firstOutcomes: ItemOutcome[]): Promise<void> => {
    if (page.items.length > 0) {
      let todo = page.items;
      let outcomes = firstOutcomes;
      for (let round = 0; todo.length > 0; round++) {
        if (round > 0) outcomes = await processAll(todo);
        const writes: DekReplacement[] = [];
        const writeIdx: number[] = [];
        const retry: DekRecord[] = [];
        const lastRound = round + 1 >= MAX_ROUNDS;
        outcomes.forEach((o, i) => {
          if (o.replacement) {
            writes.push(o.replacement);
            writeIdx.push(i);
          } else if (o.retryable && !lastRound) {
            // Transient trouble outlasted the per-call retries: give it another round.
            retry.push(todo[i]!);
          } else {
            recordFailure(todo[i]!.id, o.failed ?? 'unknown error');
          }
        });
        const written = writes.length ? await store.replaceMany(writes) : [];
        for (let w = 0; w < written.length; w++) {
          const item = todo[writeIdx[w]!]!;
          if (written[w]) {
            job.counts.rewrapped++;
            if (outcomes[writeIdx[w]!]!.verified) job.counts.verified++;
            continue;
          }
          // Lost the race to an application write: re-read and decide.
          job.counts.conflicts++;
          const fresh = await store.get(item.id);
          if (!fresh || fresh.keyRef !== job.keyRef || fresh.version === job.toVersion) continue;
          if (lastRound) recordFailure(item.id, 'kept changing during re-wrap');
          else retry.push(fresh);
        }
        todo = retry;
      }
      job.counts.scanned += page.items.length;
    }
    job = { ...job, cursor: page.cursor, updatedAt: opts.now().toISOString() };
    if (page.cursor === null) job.status = 'done';
    await state.saveRewrapJob(job);
    emitMetrics();
    opts.onProgress?.({ jobId: job.id, storeId: job.storeId, keyRef: job.keyRef, counts: { ...job.counts } });
  };

  // A pipeline: while batch N is written and checkpointed, batch N+1 is re-wrapped and batch
  // N+2 is read. Writes and checkpoints still happen strictly in order, each checkpoint after
  // its own batch's writes, so a crash resumes exactly as before. Reading ahead is safe: pages
  // follow the id cursor, so a later page never holds a DEK an earlier batch writes.
  let inFlight: Promise<void> | null = null;
  let ahead: Promise<PageOf> | null = store.scan(query, job.cursor, opts.batchSize);
  for (;;) {
    const page: PageOf = await ahead!;
    ahead = page.cursor === null ? null : store.scan(query, page.cursor, opts.batchSize);
    // Awaited at the next turn; this only keeps a failure after an early exit from being unhandled.
    ahead?.catch(() => {});
    const outcomes = page.items.length > 0 ? await processAll(page.items) : [];
    if (inFlight) {
      await inFlight;
      await opts.onBatch?.();
    }
    const commit = commitBatch(page, outcomes);
    // Awaited below or at the next turn; this only keeps an early failure from being unhandled.
    commit.catch(() => {});
    inFlight = commit;
    if (page.cursor === null) {
      await commit;
      return job;
    }
  }
}
