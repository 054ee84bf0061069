import { type ChildProcess, fork } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../../..');
export const BUILT_APP = join(ROOT, 'dist', 'azure');

export interface FunctionMetadata {
  name: string;
  bindings: Record<string, Record<string, unknown> & { type: string; direction: string }>;
}

export interface InvocationLog {
  level: string;
  message: string;
}

export interface InvocationResult {
  ok: boolean;
  result?: unknown;
  error?: { name?: string; code?: string | null; message: string };
  logs: InvocationLog[];
}

export interface FunctionsHost {
  functions: FunctionMetadata[];
  /** http://127.0.0.1:<port>: where the HTTP-triggered functions are served (under /api). */
  httpUrl: string | null;
  invoke(fn: string, input: unknown, triggerMetadata?: Record<string, unknown>): Promise<InvocationResult>;
  /** Every log line of every invocation so far. */
  logs: InvocationLog[];
  stop(): Promise<void>;
}

/**
 * The built Function App (dist/azure) copied to a folder of its own, as a deployment would
 * have it: nothing of the source tree around it, its dependencies in node_modules beside it.
 */
export function deployBuiltApp(): { dir: string; cleanup(): void } {
  if (!existsSync(join(BUILT_APP, 'main.mjs'))) {
    throw new Error(`${BUILT_APP}/main.mjs is missing: run npm run build first`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'rekey-azure-app-'));
  cpSync(BUILT_APP, dir, { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts test/functions/azure/host.mjs on the app in `dir` with `env` as its app settings. */
export async function startFunctionsHost(dir: string, env: Record<string, string>): Promise<FunctionsHost> {
  const child: ChildProcess = fork(join(import.meta.dirname, 'host.mjs'), [dir], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const pending = new Map<number, (r: InvocationResult) => void>();
  const logs: InvocationLog[] = [];
  type Ready = { functions: FunctionMetadata[]; httpPort: number | null };
  const ready = await new Promise<Ready>((resolveReady, reject) => {
    child.once('exit', (code) => reject(new Error(`functions host exited (${code}): ${output}`)));
    child.on('message', (m: { ready?: boolean; id?: number; http?: boolean } & Record<string, unknown>) => {
      if (m.ready) resolveReady(m as unknown as Ready);
      else if (m.http) logs.push(...(m.logs as InvocationLog[]));
      else if (typeof m.id === 'number') {
        const r = m as unknown as InvocationResult;
        logs.push(...r.logs);
        pending.get(m.id)?.(r);
        pending.delete(m.id);
      }
    });
  });
  child.removeAllListeners('exit');
  let next = 0;
  return {
    functions: ready.functions,
    httpUrl: ready.httpPort ? `http://127.0.0.1:${ready.httpPort}` : null,
    logs,
    invoke(fn, input, triggerMetadata = {}) {
      const id = ++next;
      return new Promise((res) => {
        pending.set(id, res);
        child.send({ id, fn, input, triggerMetadata });
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The JSON log lines an invocation wrote (rekey logs one JSON object per line). */
export function jsonLines(logs: InvocationLog[]): Record<string, unknown>[] {
  return logs.flatMap((l) => {
    try {
      const v = JSON.parse(l.message);
      return v && typeof v === 'object' ? [v as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}
