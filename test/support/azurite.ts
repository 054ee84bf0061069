import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Azurite (the Azure Storage emulator from npm) in a child process on 127.0.0.1: table, queue
 * and, when asked, blob services on free ports, everything in memory, telemetry off. The
 * account is the well-known development account every Azure Storage SDK knows.
 */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export type AzuriteService = 'table' | 'queue' | 'blob';

export interface Azurite {
  /** Endpoint per started service, e.g. `http://127.0.0.1:41234/devstoreaccount1`. */
  endpoints: Partial<Record<AzuriteService, string>>;
  /** A storage connection string naming every started endpoint (what app settings carry). */
  connectionString: string;
  stop(): Promise<void>;
}

const READY = /Azurite (Blob|Queue|Table) service is successfully listening at (http:\/\/[^\s]+)/g;

function azuriteBin(): string {
  const pkg = createRequire(import.meta.url).resolve('azurite/package.json');
  return join(dirname(pkg), 'dist', 'src', 'azurite.js');
}

export async function startAzurite(
  opts: { services?: AzuriteService[]; timeoutMs?: number } = {},
): Promise<Azurite> {
  const services = opts.services ?? ['table', 'queue'];
  const workdir = mkdtempSync(join(tmpdir(), 'rekey-azurite-'));
  const args = [
    azuriteBin(),
    '--inMemoryPersistence',
    '--extentMemoryLimit',
    '256',
    '--disableTelemetry',
    // The SDKs here may speak a newer storage API version than this Azurite release knows.
    '--skipApiVersionCheck',
    '--silent',
    '--blobHost',
    '127.0.0.1',
    '--queueHost',
    '127.0.0.1',
    '--tableHost',
    '127.0.0.1',
    '--blobPort',
    '0',
    '--queuePort',
    '0',
    '--tablePort',
    '0',
  ];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: workdir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const found: Partial<Record<AzuriteService, string>> = {};
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Azurite did not start within ${opts.timeoutMs ?? 30_000} ms: ${output}`)),
        opts.timeoutMs ?? 30_000,
      );
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        for (const m of output.matchAll(READY)) {
          found[m[1]!.toLowerCase() as AzuriteService] = m[2]!.replace(/\/$/, '');
        }
        if (found.blob && found.queue && found.table) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`Azurite exited with code ${code}: ${output}`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    rmSync(workdir, { recursive: true, force: true });
    throw e;
  }
  child.removeAllListeners('exit');
  child.stdout!.resume();
  child.stderr!.resume();
  const endpoints: Partial<Record<AzuriteService, string>> = {};
  for (const s of services) endpoints[s] = `${found[s]}/${DEV_ACCOUNT}`;
  const connectionString = [
    'DefaultEndpointsProtocol=http',
    `AccountName=${DEV_ACCOUNT}`,
    `AccountKey=${DEV_KEY}`,
    ...(endpoints.blob ? [`BlobEndpoint=${endpoints.blob}`] : []),
    ...(endpoints.queue ? [`QueueEndpoint=${endpoints.queue}`] : []),
    ...(endpoints.table ? [`TableEndpoint=${endpoints.table}`] : []),
  ].join(';');
  return {
    endpoints,
    connectionString,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(workdir, { recursive: true, force: true });
    },
  };
}
