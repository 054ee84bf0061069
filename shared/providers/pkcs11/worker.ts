/**
 * Child process of Pkcs11WorkerPool: opens its own module, token session and login, and runs
 * rewrapMany on the batches the parent sends. PKCS#11 state is per process (one
 * C_Initialize, one login per token), which is why the pool uses processes, not threads.
 */
import { parseKeyRef } from '../../core/domain/keyRef.js';
import { ProviderError, RekeyError } from '../../core/errors.js';
import { Pkcs11Provider } from './Pkcs11Provider.js';
import type { SerializedError, WorkerReply, WorkerRequest } from './workerPool.js';

let provider: Pkcs11Provider | null = null;

function serialize(e: unknown): SerializedError {
  if (e instanceof ProviderError) {
    return {
      name: e.name,
      code: e.code,
      providerCode: e.providerCode,
      message: e.message,
      retryable: e.retryable,
    };
  }
  if (e instanceof RekeyError) return { name: e.name, code: e.code, message: e.message, retryable: false };
  return {
    name: 'Error',
    code: 'INTERNAL',
    message: e instanceof Error ? e.message : String(e),
    retryable: false,
  };
}

function reply(m: WorkerReply): void {
  process.send?.(m);
}

async function handle(m: WorkerRequest): Promise<void> {
  switch (m.t) {
    case 'open': {
      const pin = Buffer.from(m.pin);
      m.pin.fill(0);
      try {
        provider = await Pkcs11Provider.open({ ...m.options, pin });
        reply({ t: 'ready' });
      } catch (e) {
        reply({ t: 'error', id: -1, error: serialize(e) });
      } finally {
        pin.fill(0);
      }
      return;
    }
    case 'batch': {
      try {
        if (!provider) throw new Error('worker is not open');
        const results = await provider.rewrapMany(parseKeyRef(m.ref), m.items, m.toVersion);
        reply({ t: 'result', id: m.id, results });
      } catch (e) {
        reply({ t: 'error', id: m.id, error: serialize(e) });
      }
      return;
    }
    case 'close':
      await shutdown(0);
  }
}

async function shutdown(code: number): Promise<void> {
  const p = provider;
  provider = null;
  await p?.close();
  process.exit(code);
}

process.on('message', (m: WorkerRequest) => {
  void handle(m);
});
// The parent went away: release the token rather than linger.
process.on('disconnect', () => {
  void shutdown(0);
});
