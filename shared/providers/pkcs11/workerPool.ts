import { type ChildProcess, fork } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyRef } from '../../core/domain/keyRef.js';
import {
  ConfigError,
  InvariantViolation,
  NotFoundError,
  ProviderError,
  type RekeyError,
  ValidationError,
} from '../../core/errors.js';
import { PROVIDER } from './errors.js';
import type { Pkcs11ProviderOptions, RewrapItem, RewrapItemResult } from './Pkcs11Provider.js';

export interface SerializedError {
  name: string;
  code: string;
  providerCode?: string;
  message: string;
  retryable: boolean;
}

type WorkerOptions = Omit<Pkcs11ProviderOptions, 'pin' | 'clock'>;

export type WorkerRequest =
  | { t: 'open'; options: WorkerOptions; pin: Uint8Array }
  | { t: 'batch'; id: number; ref: string; items: RewrapItem[]; toVersion?: string }
  | { t: 'close' };

export type WorkerReply =
  | { t: 'ready' }
  | { t: 'result'; id: number; results: RewrapItemResult[] }
  | { t: 'error'; id: number; error: SerializedError };

export interface Pkcs11WorkerPoolOptions extends Omit<Pkcs11ProviderOptions, 'clock'> {
  /** Worker processes, each with its own module, session and login. */
  workers: number;
  /** Items per message to a worker. Default 500. */
  batchSize?: number;
  /** Node options for the workers (e.g. a loader when running from TypeScript sources). */
  execArgv?: string[];
  /** Worker entry point; default: worker.js (or worker.ts) next to this file. */
  workerScript?: string | URL;
}

function revive(e: SerializedError): RekeyError {
  switch (e.code) {
    case 'CONFIG':
      return new ConfigError(e.message);
    case 'NOT_FOUND':
      return new NotFoundError(e.message);
    case 'VALIDATION':
      return new ValidationError(e.message);
    case 'INVARIANT':
      return new InvariantViolation(e.message);
    default: {
      // The message already carries the "pkcs11: " prefix ProviderError adds.
      const msg = e.message.startsWith(`${PROVIDER}: `) ? e.message.slice(PROVIDER.length + 2) : e.message;
      return new ProviderError(PROVIDER, e.providerCode ?? e.code, msg, { retryable: e.retryable });
    }
  }
}

class Worker {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (r: RewrapItemResult[]) => void; reject: (e: Error) => void }
  >();
  private exited: Error | null = null;

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: WorkerReply) => {
      if (m.t === 'ready') return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.t === 'result') p.resolve(m.results);
      else p.reject(revive(m.error));
    });
    child.on('exit', (code, signal) => {
      this.exited = new ProviderError(
        PROVIDER,
        'WORKER_EXIT',
        `worker ${child.pid} exited (${signal ?? code})`,
        {
          retryable: true,
        },
      );
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  call(ref: string, items: RewrapItem[], toVersion?: string): Promise<RewrapItemResult[]> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const msg: WorkerRequest = { t: 'batch', id, ref, items, ...(toVersion ? { toVersion } : {}) };
      this.child.send(msg);
    });
  }
}

function defaultScript(): URL {
  // worker.ts next to this file when run from sources, worker.js once built.
  const ext = extname(fileURLToPath(import.meta.url));
  return new URL(`./worker${ext}`, import.meta.url);
}

/**
 * Spreads rewrapMany over worker processes. Throughput of one process is bounded by the
 * synchronous module calls on one thread; each worker adds its own session and thread in the
 * module. Results come back in item order.
 */
export class Pkcs11WorkerPool {
  private constructor(
    private readonly workers: Worker[],
    private readonly batchSize: number,
  ) {}

  static async start(opts: Pkcs11WorkerPoolOptions): Promise<Pkcs11WorkerPool> {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) {
      throw new ValidationError(
        `pkcs11 worker pool: workers must be a positive integer, got ${opts.workers}`,
      );
    }
    const { workers: n, batchSize, execArgv, workerScript, pin, ...providerOpts } = opts;
    const script = workerScript ?? defaultScript();
    const started: Worker[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const child = fork(script instanceof URL ? fileURLToPath(script) : script, [], {
          serialization: 'advanced',
          execArgv: execArgv ?? [],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        const w = new Worker(child);
        started.push(w);
      }
      await Promise.all(started.map((w) => openWorker(w.child, providerOpts, pin)));
    } catch (e) {
      await Promise.all(started.map((w) => stop(w.child)));
      throw e;
    }
    return new Pkcs11WorkerPool(started, Math.max(1, batchSize ?? 500));
  }

  get size(): number {
    return this.workers.length;
  }

  /** Same contract as Pkcs11Provider.rewrapMany, spread over the workers. */
  async rewrapMany(
    ref: KeyRef | string,
    items: RewrapItem[],
    toVersion?: string,
  ): Promise<RewrapItemResult[]> {
    const uri = typeof ref === 'string' ? ref : ref.uri;
    const chunks: RewrapItem[][] = [];
    for (let i = 0; i < items.length; i += this.batchSize) chunks.push(items.slice(i, i + this.batchSize));
    const out: RewrapItemResult[][] = new Array(chunks.length);
    let next = 0;
    await Promise.all(
      this.workers.map(async (w) => {
        while (next < chunks.length) {
          const i = next++;
          out[i] = await w.call(uri, chunks[i]!, toVersion);
        }
      }),
    );
    return out.flat();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => stop(w.child)));
  }
}

function openWorker(child: ChildProcess, options: WorkerOptions, pin: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: WorkerReply) => {
      if (m.t === 'ready') done(null);
      else if (m.t === 'error' && m.id === -1) done(revive(m.error));
    };
    const onExit = (code: number | null) =>
      done(new ProviderError(PROVIDER, 'WORKER_EXIT', `worker ${child.pid} exited during start (${code})`));
    const done = (e: Error | null) => {
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (e) reject(e);
      else resolve();
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
    const pinBytes = Buffer.from(pin);
    const msg: WorkerRequest = { t: 'open', options, pin: pinBytes };
    child.send(msg, () => pinBytes.fill(0));
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.send({ t: 'close' } satisfies WorkerRequest);
    else child.kill('SIGTERM');
  });
}
