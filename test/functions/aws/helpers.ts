import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateTableCommand } from '@aws-sdk/client-dynamodb';
import { CreateKeyCommand, KMSClient, TagResourceCommand } from '@aws-sdk/client-kms';
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { parse as parseYaml, type Tags } from 'yaml';
import { compileConfig } from '../../../functions/aws/compileConfig.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import { AwsKmsProvider } from '../../../shared/providers/aws/AwsKmsProvider.js';
import { DynamoDekStore } from '../../../shared/stores/dynamodb/DynamoDekStore.js';
import { functionsConfigYaml } from '../../emulators/aws/functionsConfig.js';
import { type AwsEmulator, startAwsEmulator } from '../../emulators/aws/index.js';
import { type Dynalite, startDynalite } from '../../support/dynalite.js';

export const ROOT = resolve(import.meta.dirname, '../../..');
export const REGION = 'eu-west-1';
export const DAY = 86_400_000;
const CREDENTIALS = {
  accessKeyId: 'AKIAEMULATOR00000000',
  secretAccessKey: 'emulator-secret-not-a-real-one',
};

export type Handler<E = unknown, R = unknown> = (event: E, context: Context) => Promise<R>;

/**
 * Imports a built function bundle (`npm run build` makes them; `npm test` builds first). A
 * distinct `instance` gives a fresh copy, as a new execution environment would start.
 */
export async function loadBundle<E, R>(fn: string, instance?: string): Promise<Handler<E, R>> {
  const file = join(ROOT, 'dist', 'aws', `${fn}.mjs`);
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` (npm test does)`);
  const url = `${pathToFileURL(file).href}${instance ? `?instance=${encodeURIComponent(instance)}` : ''}`;
  const mod = (await import(/* @vite-ignore */ url)) as { handler: Handler<E, R> };
  return mod.handler;
}

/** A Lambda context as the nodejs20.x runtime passes it. */
export function lambdaContext(fn: string, remainingMs = 300_000): Context {
  const started = Date.now();
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: `rekey-test-${fn}`,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:111122223333:function:rekey-test-${fn}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/rekey-test-${fn}`,
    logStreamName: `2026/01/01/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, remainingMs - (Date.now() - started)),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Everything a deployment has, on 127.0.0.1: KMS, SQS and EventBridge (emulator), DynamoDB (dynalite). */
export interface AwsStack {
  emu: AwsEmulator;
  dyn: Dynalite;
  dir: string;
  queueUrl: string;
  /** The compiled config the functions read (REKEY_CONFIG), compiled from the YAML beside it. */
  configPath: string;
  stateTable: string;
  dekTable: string;
  idempotencyTable: string;
  bus: string;
  kms: KMSClient;
  sqs: SQSClient;
  /** The provider as rekey sees the keys (for seeding and checks). */
  provider: AwsKmsProvider;
  deks: DynamoDekStore;
  /** Plaintext of every seeded DEK by id. */
  plaintexts: Map<string, Buffer>;
  /** Sets the environment serverless.yml gives the functions. */
  applyEnv(extra?: Record<string, string>): void;
  createKey(name: string, tags: Record<string, string>): Promise<string>;
  seed(keyRef: string, n: number): Promise<void>;
  close(): Promise<void>;
}

export const CONFIG_YAML = functionsConfigYaml(REGION);

/** The YAML compiled as the build does it (functions/aws/compileConfig.ts); returns the JSON's path. */
export async function writeCompiledConfig(dir: string, yaml: string): Promise<string> {
  const source = join(dir, 'rekey.yaml');
  writeFileSync(source, yaml);
  const out = join(dir, 'rekey.config.json');
  writeFileSync(out, JSON.stringify((await compileConfig(source, { root: ROOT })).compiled));
  return out;
}

/** Starts the services, creates the queue and tables, writes the compiled config. */
export async function startStack(
  opts: { keysCreatedDaysAgo?: number; config?: string } = {},
): Promise<AwsStack> {
  const emu = await startAwsEmulator({
    startTime: new Date(Date.now() - (opts.keysCreatedDaysAgo ?? 200) * DAY),
  });
  const dyn = await startDynalite();
  const dir = mkdtempSync(join(tmpdir(), 'rekey-aws-fn-'));
  const configPath = await writeCompiledConfig(dir, opts.config ?? CONFIG_YAML);
  const kms = new KMSClient({
    region: REGION,
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
  const sqs = new SQSClient({
    region: REGION,
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
  const { QueueUrl } = await sqs.send(
    new CreateQueueCommand({ QueueName: 'rekey-shards', Attributes: { VisibilityTimeout: '900' } }),
  );
  const stateTable = 'rekey-state';
  const dekTable = 'orders-deks';
  const idempotencyTable = 'rekey-idempotency';
  await dyn.createStateTable(stateTable);
  await dyn.createDekTable(dekTable);
  await dyn.client().send(
    new CreateTableCommand({
      TableName: idempotencyTable,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
    }),
  );
  const provider = new AwsKmsProvider({
    id: 'aws-prod',
    regions: [REGION],
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    rotationPollMs: 5,
  });
  const deks = new DynamoDekStore({ id: 'orders', table: dekTable, doc: dyn.client() });
  const plaintexts = new Map<string, Buffer>();
  return {
    emu,
    dyn,
    dir,
    queueUrl: QueueUrl!,
    configPath,
    stateTable,
    dekTable,
    idempotencyTable,
    bus: 'rekey-events',
    kms,
    sqs,
    provider,
    deks,
    plaintexts,
    applyEnv(extra = {}) {
      Object.assign(process.env, {
        AWS_REGION: REGION,
        AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
        AWS_ENDPOINT_URL_KMS: emu.endpoint,
        AWS_ENDPOINT_URL_SQS: emu.endpoint,
        AWS_ENDPOINT_URL_EVENTBRIDGE: emu.endpoint,
        AWS_ENDPOINT_URL_DYNAMODB: dyn.endpoint,
        // Nothing may reach a real AWS endpoint, or read this machine's AWS profile.
        AWS_CONFIG_FILE: join(dir, 'aws-config'),
        AWS_SHARED_CREDENTIALS_FILE: join(dir, 'aws-credentials'),
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_LAMBDA_FUNCTION_NAME: 'rekey-test',
        AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
        POWERTOOLS_SERVICE_NAME: 'rekey',
        POWERTOOLS_METRICS_NAMESPACE: 'rekey',
        REKEY_CONFIG: configPath,
        REKEY_STATE_TABLE: stateTable,
        REKEY_QUEUE_URL: QueueUrl!,
        REKEY_EVENT_BUS: 'rekey-events',
        REKEY_IDEMPOTENCY_TABLE: idempotencyTable,
        ...extra,
      });
    },
    async createKey(name, tags) {
      const md = (await kms.send(new CreateKeyCommand({ Description: name }))).KeyMetadata!;
      await kms.send(
        new TagResourceCommand({
          KeyId: md.KeyId!,
          Tags: Object.entries(tags).map(([TagKey, TagValue]) => ({ TagKey, TagValue })),
        }),
      );
      return `aws-kms://${md.Arn}`;
    },
    async seed(keyRef, n) {
      const ref = parseKeyRef(keyRef);
      const recs: DekRecord[] = [];
      for (let i = 0; i < n; i++) {
        const id = `dek-${String(plaintexts.size).padStart(6, '0')}`;
        const pt = randomBytes(32);
        plaintexts.set(id, Buffer.from(pt));
        const w = await provider.wrap(ref, pt, { id });
        pt.fill(0);
        recs.push({ id, keyRef: ref.uri, version: w.version, wrapped: w.ciphertext, context: { id } });
      }
      await deks.insertMany(recs);
    },
    async close() {
      await provider.close?.();
      await deks.close();
      kms.destroy();
      sqs.destroy();
      // A test may have stopped DynamoDB already (fault tests).
      await dyn.stop().catch(() => undefined);
      await emu.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An SQS event as Lambda's event source mapping builds it from received messages. */
export function sqsEvent(stack: AwsStack, messages: Message[]): SQSEvent {
  const arn = `arn:aws:sqs:${REGION}:${stack.emu.account}:rekey-shards`;
  const Records: SQSRecord[] = messages.map((m) => ({
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body!,
    attributes: {
      ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? '1',
      SentTimestamp: m.Attributes?.SentTimestamp ?? String(Date.now()),
      SenderId: m.Attributes?.SenderId ?? 'AIDAEMULATOR',
      ApproximateFirstReceiveTimestamp: m.Attributes?.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody!,
    eventSource: 'aws:sqs',
    eventSourceARN: arn,
    awsRegion: REGION,
  }));
  return { Records };
}

/**
 * Plays Lambda's SQS event source mapping: receive up to `batchSize` messages, invoke the
 * worker, delete the records it did not report as failures. Returns every batch response.
 */
export async function drainQueue(
  stack: AwsStack,
  worker: Handler<SQSEvent, SQSBatchResponse>,
  opts: { batchSize?: number; maxRounds?: number } = {},
): Promise<SQSBatchResponse[]> {
  const responses: SQSBatchResponse[] = [];
  for (let round = 0; round < (opts.maxRounds ?? 50); round++) {
    const got = await stack.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: stack.queueUrl,
        MaxNumberOfMessages: opts.batchSize ?? 4,
        VisibilityTimeout: 900,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const messages = got.Messages ?? [];
    if (messages.length === 0) return responses;
    const res = await worker(sqsEvent(stack, messages), lambdaContext('worker'));
    responses.push(res);
    const failed = new Set(res.batchItemFailures.map((f) => f.itemIdentifier));
    const done = messages.filter((m) => !failed.has(m.MessageId!));
    if (done.length > 0) {
      await stack.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: stack.queueUrl,
          Entries: done.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle! })),
        }),
      );
    }
  }
  throw new Error('the queue did not drain');
}

export async function queueDepth(stack: AwsStack): Promise<number> {
  const a = await stack.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: stack.queueUrl, AttributeNames: ['All'] }),
  );
  return (
    Number(a.Attributes?.ApproximateNumberOfMessages) +
    Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible)
  );
}

/**
 * Captures what is written to stdout and stderr (Powertools writes logs and EMF there; Lambda
 * sends both to CloudWatch Logs) until stopped.
 */
export function captureStdout(): { lines: () => string[]; stop: () => void } {
  const chunks: string[] = [];
  const streams = [process.stdout, process.stderr];
  const originals = streams.map((s) => s.write.bind(s));
  streams.forEach((s, i) => {
    s.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return (originals[i] as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof s.write;
  });
  return {
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l.trim().length > 0),
    stop: () => {
      streams.forEach((s, i) => {
        s.write = originals[i] as typeof s.write;
      });
    },
  };
}

/** EMF documents among captured lines. */
export function emfDocuments(lines: string[]): Array<
  Record<string, unknown> & {
    _aws: {
      CloudWatchMetrics: {
        Namespace: string;
        Dimensions: string[][];
        Metrics: { Name: string; Unit: string }[];
      }[];
    };
  }
> {
  const out = [];
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    try {
      const j = JSON.parse(l);
      if (j?._aws?.CloudWatchMetrics) out.push(j);
    } catch {
      // not JSON: a plain log line
    }
  }
  return out;
}

/** serverless.yml's CloudFormation short forms (!Sub, !Ref, !GetAtt), kept as opaque objects. */
const CFN_TAGS: Tags = ['Sub', 'Ref', 'GetAtt'].flatMap((name) => [
  { tag: `!${name}`, resolve: (v: string) => ({ [name]: v }) },
  { tag: `!${name}`, collection: 'seq' as const, resolve: (v: unknown) => ({ [name]: v }) },
]);

/** The IAM actions a role of serverless.yml allows (any resource). */
export function roleActions(role: string): Set<string> {
  const doc = parseYaml(readFileSync(join(ROOT, 'serverless.yml'), 'utf8'), { customTags: CFN_TAGS }) as {
    resources: {
      Resources: Record<
        string,
        { Properties: { Policies: { PolicyDocument: { Statement: { Action: string | string[] }[] } }[] } }
      >;
    };
  };
  const r = doc.resources.Resources[role];
  if (!r) throw new Error(`serverless.yml has no ${role}`);
  return new Set(
    r.Properties.Policies.flatMap((p) => p.PolicyDocument.Statement).flatMap((st) =>
      Array.isArray(st.Action) ? st.Action : [st.Action],
    ),
  );
}

/** The IAM actions an emulator operation (`kms.ReEncrypt`, `sqs.SendMessageBatch`...) needs. */
export function iamActionsFor(op: string): string[] {
  const [service, name] = op.split('.') as [string, string];
  if (op === 'kms.ReEncrypt') return ['kms:ReEncryptFrom', 'kms:ReEncryptTo'];
  // SQS authorizes a batch call as its single form.
  if (service === 'sqs' && name.endsWith('Batch')) return [`sqs:${name.slice(0, -'Batch'.length)}`];
  return [`${service}:${name}`];
}

/**
 * Wraps a function handler: every emulator operation (KMS, SQS, EventBridge) made while it runs
 * is added to `into`. Tests call handlers one at a time, so what happens meanwhile is theirs.
 */
export function observeCalls<E, R>(
  stack: AwsStack,
  handler: Handler<E, R>,
  into: Set<string>,
): Handler<E, R> {
  return async (event, context) => {
    const before = { ...stack.emu.requestCounts };
    try {
      return await handler(event, context);
    } finally {
      for (const [op, n] of Object.entries(stack.emu.requestCounts)) if (n > (before[op] ?? 0)) into.add(op);
    }
  };
}

/** The operations in `calls` that `role` does not allow. */
export function notAllowed(calls: Set<string>, role: string): string[] {
  const allowed = roleActions(role);
  return [...calls].flatMap(iamActionsFor).filter((a) => !allowed.has(a));
}
