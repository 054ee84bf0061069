import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..', '..');
export const BUNDLE = join(ROOT, 'dist', 'gcp');

/** The tests run what `npm run build` produced, not the sources. */
export function requireBundle(): void {
  if (!existsSync(join(BUNDLE, 'index.js')) || !existsSync(join(BUNDLE, 'package.json'))) {
    throw new Error('dist/gcp is missing: run `npm run build` (npm test does)');
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface FunctionServer {
  target: string;
  url: string;
  port: number;
  /** Structured log entries the function wrote (JSON lines on stdout). */
  logs: Array<Record<string, unknown>>;
  /** Everything else it printed (framework banners, crash output). */
  text: string[];
  stop(): Promise<void>;
}

/**
 * One Functions Framework server for one target of the bundle, as Cloud Functions runs it:
 * `functions-framework --source dist/gcp --target <fn> --signature-type cloudevent`.
 */
export async function startFunction(
  target: string,
  env: Record<string, string>,
  signatureType: 'cloudevent' | 'http' = 'cloudevent',
): Promise<FunctionServer> {
  requireBundle();
  const port = await freePort();
  const bin = join(ROOT, 'node_modules', '.bin', 'functions-framework');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--require',
      join(import.meta.dirname, 'loopback.cjs'),
      bin,
      '--source',
      BUNDLE,
      '--target',
      target,
      '--signature-type',
      signatureType,
      '--port',
      String(port),
    ],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        METADATA_SERVER_DETECTION: 'none',
        GOOGLE_CLOUD_PROJECT: 'rekey-test',
        K_SERVICE: target,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logs: Array<Record<string, unknown>> = [];
  const text: string[] = [];
  let partial = '';
  const take = (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('{')) {
        try {
          logs.push(JSON.parse(line));
          continue;
        } catch {
          // not one of ours
        }
      }
      if (line.trim()) text.push(line);
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', (c: Buffer) => text.push(...c.toString().split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    // A TCP connect, not a request: any request would be an invocation of the function.
    const up = await new Promise<boolean>((resolve) => {
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > until) {
      throw new Error(`function ${target} did not start (exit ${child.exitCode}):\n${text.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    target,
    url,
    port,
    logs,
    text,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface CloudEventLike {
  id?: string;
  type: string;
  source: string;
  subject?: string;
  time?: string;
  data: unknown;
  [extension: string]: unknown;
}

/** POSTs a CloudEvent in binary mode (ce- headers, data as the body) or structured mode. */
export async function postCloudEvent(
  url: string,
  e: CloudEventLike,
  mode: 'binary' | 'structured' = 'binary',
): Promise<Response> {
  const id = e.id ?? randomUUID();
  const time = e.time ?? new Date().toISOString();
  if (mode === 'structured') {
    return fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({ specversion: '1.0', datacontenttype: 'application/json', ...e, id, time }),
    });
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': id,
    'ce-time': time,
  };
  for (const [k, v] of Object.entries(e)) {
    if (k === 'data' || k === 'id' || k === 'time' || v === undefined) continue;
    headers[`ce-${k.toLowerCase()}`] = String(v);
  }
  return fetch(url, { method: 'POST', headers, body: JSON.stringify(e.data) });
}

/** The messagePublished CloudEvent Eventarc sends for a Pub/Sub message. */
export function messagePublished(
  topic: string,
  data: string | Buffer,
  attributes: Record<string, string> = {},
  messageId = String(Date.now()),
): CloudEventLike {
  const publishTime = new Date().toISOString();
  return {
    id: messageId,
    type: 'google.cloud.pubsub.topic.v1.messagePublished',
    source: `//pubsub.googleapis.com/${topic}`,
    data: {
      message: {
        data: Buffer.from(data).toString('base64'),
        attributes,
        messageId,
        publishTime,
      },
      subscription: `${topic.replace('/topics/', '/subscriptions/')}-eventarc`,
    },
  };
}

/** Polls until `check` returns a value, failing after `ms`. */
export async function until<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 30_000,
  what = 'condition',
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
