import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { SimClock } from '../aws/clock.js';
import { startControlServer } from './control.js';
import { GrpcError } from './errors.js';
import { type Corruption, type GcpFaultConfig, GcpFaults } from './faults.js';
import { KmsState } from './kms.js';

export { SimClock } from '../aws/clock.js';
export type { Corruption, GcpFaultConfig } from './faults.js';
export { GcpFaults } from './faults.js';
export { KmsState } from './kms.js';

export interface GcpKmsEmulatorOptions {
  /** gRPC port; 0 (default) picks a free one. Listens on 127.0.0.1 only. */
  port?: number;
  /** Also serve the HTTP control API (clock, faults, reset) on this port; 0 picks one. Default: off. */
  controlPort?: number;
  /** Start of simulated time; default: now. */
  startTime?: Date | string;
  faults?: GcpFaultConfig;
  /** Locations that exist (default: a representative set of real ones). */
  locations?: string[];
  /** Projects the caller may use; others get PERMISSION_DENIED. Default: any. */
  projects?: string[];
}

export interface GcpKmsEmulator {
  endpoint: { host: string; port: number };
  /** Present when `controlPort` was given: `http://127.0.0.1:<port>`. */
  controlUrl?: string;
  clock: SimClock;
  faults: GcpFaults;
  kms: KmsState;
  /** Calls served, by RPC name (faulted ones included). */
  requestCounts: Record<string, number>;
  /**
   * Resolves once no request held back by `latencyMs` is still waiting to run, so one test's slow
   * call cannot consume the faults the next test scripts.
   */
  settled(): Promise<void>;
  /** Forgets every key ring, key, fault and count. */
  reset(): void;
  close(): Promise<void>;
}

/** The methods the emulator implements; any other RPC of the service answers UNIMPLEMENTED. */
export const METHODS = [
  'CreateKeyRing',
  'GetKeyRing',
  'ListKeyRings',
  'CreateCryptoKey',
  'GetCryptoKey',
  'ListCryptoKeys',
  'UpdateCryptoKey',
  'UpdateCryptoKeyPrimaryVersion',
  'CreateCryptoKeyVersion',
  'GetCryptoKeyVersion',
  'ListCryptoKeyVersions',
  'UpdateCryptoKeyVersion',
  'DestroyCryptoKeyVersion',
  'RestoreCryptoKeyVersion',
  'Encrypt',
  'Decrypt',
  'CreateImportJob',
  'GetImportJob',
  'ListImportJobs',
  'ImportCryptoKeyVersion',
] as const;

let cachedService: grpc.ServiceDefinition | null = null;

/** KeyManagementService, loaded from the .proto files that ship with @google-cloud/kms and google-gax. */
export function kmsServiceDefinition(): grpc.ServiceDefinition {
  if (cachedService) return cachedService;
  const require = createRequire(import.meta.url);
  const kmsPkg = require.resolve('@google-cloud/kms/package.json');
  const kmsRoot = join(dirname(kmsPkg), 'build', 'protos');
  // google-gax exports no package.json: find its root from its entry point (build/src/index.js).
  const gaxEntry = createRequire(kmsPkg).resolve('google-gax');
  const gaxRoot = join(gaxEntry.slice(0, gaxEntry.lastIndexOf(`${sep}build${sep}`)), 'build', 'protos');
  const def = protoLoader.loadSync('google/cloud/kms/v1/service.proto', {
    includeDirs: [kmsRoot, gaxRoot],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: loadPackageDefinition returns a nested namespace object
  const pkg = grpc.loadPackageDefinition(def) as any;
  cachedService = pkg.google.cloud.kms.v1.KeyManagementService.service as grpc.ServiceDefinition;
  return cachedService;
}

/**
 * Starts a Cloud KMS emulator speaking gRPC. The unmodified KeyManagementServiceClient reaches
 * it with `{apiEndpoint: host, port, sslCreds: grpc.credentials.createInsecure()}`.
 */
export async function startGcpKmsEmulator(opts: GcpKmsEmulatorOptions = {}): Promise<GcpKmsEmulator> {
  const clock = new SimClock(opts.startTime);
  const faults = new GcpFaults(opts.faults);
  const kms = new KmsState({ clock, locations: opts.locations, projects: opts.projects });
  const requestCounts: Record<string, number> = {};
  const delayed = new Set<Promise<void>>();
  clock.onJump(() => kms.tick());

  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of METHODS) {
    handlers[method] = (
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      requestCounts[method] = (requestCounts[method] ?? 0) + 1;
      const run = () => {
        // A caller that gave up (deadline passed, call cancelled) gets no answer and changes nothing.
        if (call.cancelled) return;
        try {
          // Real time passes between calls too: let due rotations and destructions happen.
          kms.tick();
          // biome-ignore lint/suspicious/noExplicitAny: proto-loader message
          const req = call.request as any;
          faults.check(method, KmsState.scopeOf(req));
          let out: unknown;
          if (method === 'Encrypt' || method === 'Decrypt') {
            // Corruption applies to successful responses only: compute first, then decide.
            out = kms[method](req);
            const c = faults.corruption();
            if (c) out = corrupted(method, out as Record<string, unknown>, c);
          } else {
            out = (kms[method] as (r: unknown) => unknown)(req);
          }
          callback(null, out);
        } catch (e) {
          if (e instanceof GrpcError) callback({ code: e.code, details: e.message });
          else callback({ code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) });
        }
      };
      const delay = faults.latency();
      if (delay > 0) {
        const done = new Promise<void>((resolve) =>
          setTimeout(() => {
            run();
            resolve();
          }, delay),
        );
        delayed.add(done);
        void done.then(() => delayed.delete(done));
      } else run();
    };
  }

  const server = new grpc.Server();
  server.addService(kmsServiceDefinition(), handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });

  const reset = () => {
    kms.reset();
    faults.reset();
    for (const k of Object.keys(requestCounts)) delete requestCounts[k];
  };
  const control =
    opts.controlPort === undefined
      ? null
      : await startControlServer(opts.controlPort, { clock, faults, requestCounts, reset });

  return {
    endpoint: { host: '127.0.0.1', port },
    ...(control ? { controlUrl: control.url } : {}),
    clock,
    faults,
    kms,
    requestCounts,
    settled: async () => {
      while (delayed.size > 0) await Promise.all([...delayed]);
    },
    reset,
    close: async () => {
      await control?.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      server.forceShutdown();
      kms.reset();
    },
  };
}

/** A copy of a successful crypto response, damaged the way the fault asks. */
function corrupted(
  method: 'Encrypt' | 'Decrypt',
  res: Record<string, unknown>,
  c: Corruption,
): Record<string, unknown> {
  const out = { ...res };
  const dataField = method === 'Encrypt' ? 'ciphertext' : 'plaintext';
  const crcField = method === 'Encrypt' ? 'ciphertextCrc32c' : 'plaintextCrc32c';
  if (c === 'checksum') {
    const v = Number((res[crcField] as { value: string }).value);
    out[crcField] = { value: String((v ^ 1) >>> 0) };
  } else if (c === 'data') {
    const data = Buffer.from(res[dataField] as Buffer);
    data[data.length - 1]! ^= 0x01;
    out[dataField] = data;
  } else if (method === 'Encrypt') {
    out.verifiedPlaintextCrc32c = false;
    out.verifiedAdditionalAuthenticatedDataCrc32c = false;
  }
  return out;
}
