/**
 * `serverless package` (Serverless Framework v3) runs offline and writes the CloudFormation
 * template this checks: the resources are there, each function has its own least-privilege
 * role, and every function's zip holds its bundle, its chunks and the compiled config. Without a compiled
 * config, packaging fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_YAML, ROOT, writeCompiledConfig } from './helpers.js';

type Json = Record<string, unknown>;
interface Resource {
  Type: string;
  Properties: Json;
}
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Json;
}

const FUNCTIONS = ['scheduler', 'worker', 'events', 'costs', 'approvals'] as const;
/** KMS actions that touch key material or ciphertexts. */
const CRYPTO = [
  'kms:Encrypt',
  'kms:Decrypt',
  'kms:ReEncryptFrom',
  'kms:ReEncryptTo',
  'kms:GenerateDataKey',
  'kms:GenerateDataKeyWithoutPlaintext',
  'kms:ImportKeyMaterial',
];
/** Inside the project, as serverless packages files relative to it. */
const CONFIG_DIR = join(ROOT, '.tmp', `sls-config-${process.pid}`);
let CONFIG: string;
let digest: string;
let out: string;
let resources: Record<string, Resource>;

/** File names in a zip archive, from its central directory. */
function zipEntries(zip: Buffer): string[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip archive');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('bad central directory entry');
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    names.push(zip.toString('utf8', at + 46, at + 46 + nameLen));
    at += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}

/** Whether this machine lets us cut the network off for a child process (a new net namespace). */
function canIsolateNetwork(): boolean {
  return spawnSync('unshare', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
}

/** `serverless package` with the given compiled config, offline; the exit status and output. */
function slsPackage(config: string, into: string) {
  const sls = join(ROOT, 'node_modules/serverless/bin/serverless.js');
  const args = [
    sls,
    'package',
    '--stage',
    'test',
    '--region',
    'us-east-1',
    '--package',
    into,
    `--param=config=${config}`,
  ];
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? tmpdir(),
    // What keeps Serverless v3 off the network: no telemetry, no notifications, no update checks.
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
    SLS_DISABLE_AUTO_UPDATE: '1',
    // Packaging needs no real credentials; nothing of this machine's AWS setup is read.
    AWS_ACCESS_KEY_ID: 'AKIAPACKAGEONLY00000',
    AWS_SECRET_ACCESS_KEY: 'package-only',
    AWS_CONFIG_FILE: join(into, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(into, 'no-aws-credentials'),
  };
  const [cmd, cmdArgs] = canIsolateNetwork()
    ? ['unshare', ['-n', process.execPath, ...args]]
    : [process.execPath, args];
  return spawnSync(cmd as string, cmdArgs as string[], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

beforeAll(async () => {
  for (const fn of FUNCTIONS) {
    if (!existsSync(join(ROOT, 'dist/aws', `${fn}.mjs`)))
      throw new Error(`dist/aws/${fn}.mjs is missing: run \`npm run build\` (npm test does)`);
  }
  mkdirSync(CONFIG_DIR, { recursive: true });
  const compiled = await writeCompiledConfig(CONFIG_DIR, CONFIG_YAML);
  CONFIG = relative(ROOT, compiled);
  digest = JSON.parse(readFileSync(compiled, 'utf8')).config.digest;
  out = mkdtempSync(join(tmpdir(), 'rekey-sls-'));
  const r = slsPackage(CONFIG, out);
  if (r.status !== 0) throw new Error(`serverless package failed:\n${r.stdout}\n${r.stderr}`);
  const template = JSON.parse(readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8'));
  resources = template.Resources;
}, 90_000);

afterAll(() => {
  if (out) rmSync(out, { recursive: true, force: true });
  rmSync(CONFIG_DIR, { recursive: true, force: true });
});

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const fnResource = (fn: string) => resources[`${fn[0]!.toUpperCase()}${fn.slice(1)}LambdaFunction`]!;
const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
function statements(role: string): Statement[] {
  const policies = (resources[role]!.Properties.Policies ?? []) as {
    PolicyDocument: { Statement: Statement[] };
  }[];
  return policies.flatMap((p) => p.PolicyDocument.Statement);
}
const kmsActions = (role: string) =>
  new Set(
    statements(role)
      .flatMap(actions)
      .filter((a) => a.startsWith('kms:')),
  );

describe('serverless package (offline)', () => {
  it('declares the functions, their triggers, the queue with its dead-letter queue and the tables', () => {
    for (const fn of FUNCTIONS) {
      expect(fnResource(fn)).toMatchObject({
        Type: 'AWS::Lambda::Function',
        Properties: { Handler: `dist/aws/${fn}.handler`, Runtime: 'nodejs20.x', Architectures: ['arm64'] },
      });
      expect((fnResource(fn).Properties.Environment as Json).Variables).toMatchObject({
        REKEY_CONFIG: CONFIG,
        REKEY_CONFIG_DIGEST: digest,
      });
    }
    const schedules = ofType('AWS::Events::Rule').filter(([, r]) => r.Properties.ScheduleExpression);
    expect(schedules).toHaveLength(2);
    const patterns = ofType('AWS::Events::Rule').filter(([, r]) => r.Properties.EventPattern);
    expect(patterns.map(([, r]) => r.Properties.EventPattern)).toEqual([
      {
        source: ['aws.kms'],
        'detail-type': ['KMS CMK Rotation', 'KMS Imported Key Material Expiration', 'KMS CMK Deletion'],
      },
      { 'detail-type': ['dev.rekey.key.compromised'] },
    ]);
    // KMS events come on the default bus, compromise events on rekey's own.
    expect(patterns[0]![1].Properties.EventBusName).toBeUndefined();
    expect(JSON.stringify(patterns[1]![1].Properties.EventBusName)).toMatch(/EventBus/);
    for (const [, r] of patterns)
      expect(r.Properties.Targets).toEqual([
        expect.objectContaining({ Arn: { 'Fn::GetAtt': ['EventsLambdaFunction', 'Arn'] } }),
      ]);
    const [, mapping] = ofType('AWS::Lambda::EventSourceMapping')[0]!;
    expect(mapping.Properties).toMatchObject({
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      EventSourceArn: { 'Fn::GetAtt': ['ShardQueue', 'Arn'] },
    });
    expect(resources.ShardQueue!.Properties.RedrivePolicy).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': ['ShardDeadLetterQueue', 'Arn'] },
      maxReceiveCount: 5,
    });
    expect(resources.ShardDeadLetterQueue!.Type).toBe('AWS::SQS::Queue');
    expect(resources.StateTable!.Properties.KeySchema).toEqual([
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ]);
    expect(resources.IdempotencyTable!.Properties).toMatchObject({
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true },
    });
    expect(resources.EventBus!.Type).toBe('AWS::Events::EventBus');
    expect(ofType('AWS::Lambda::EventInvokeConfig')[0]![1].Properties).toMatchObject({
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': ['EventsDeadLetterQueue', 'Arn'] } } },
    });
  });

  it('gives each function its own role, never kms:* and never "*" for key operations', () => {
    expect(resources.IamRoleLambdaExecution).toBeUndefined();
    for (const fn of FUNCTIONS) {
      const role = `${fn[0]!.toUpperCase()}${fn.slice(1)}Role`;
      expect(fnResource(fn).Properties.Role).toEqual({ 'Fn::GetAtt': [role, 'Arn'] });
      for (const s of statements(role)) {
        expect(s.Effect).toBe('Allow');
        for (const a of actions(s)) expect(a).not.toMatch(/(^\*$|:\*$)/);
        const kms = actions(s).filter((a) => a.startsWith('kms:'));
        if (kms.length === 0) continue;
        // No key operation on every resource: only listing (KMS cannot scope it to keys) and
        // creating a key that carries the managed tag take "*".
        if (s.Resource === '*') for (const a of kms) expect(CRYPTO).not.toContain(a);
        if (s.Resource === '*' && s.Condition === undefined) {
          for (const a of kms) expect(['kms:ListAliases', 'kms:ListKeys']).toContain(a);
        } else if (s.Resource === '*') {
          expect(kms.sort()).toEqual(['kms:CreateKey', 'kms:TagResource']);
          expect(s.Condition).toEqual({ StringEquals: { 'aws:RequestTag/rekey-managed': 'true' } });
        } else if (JSON.stringify(s.Resource).includes(':alias/')) {
          expect(kms).toEqual(['kms:UpdateAlias']);
        } else {
          expect(JSON.stringify(s.Resource)).toMatch(/:kms:\*:\$\{AWS::AccountId\}:key\/\*/);
          expect(s.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/rekey-managed': 'true' } });
        }
      }
    }
  });

  it('each role holds only the KMS actions its function calls', () => {
    const read = [
      'kms:DescribeKey',
      'kms:ListResourceTags',
      'kms:GetKeyRotationStatus',
      'kms:ListKeyRotations',
    ];
    const crypto = ['kms:ReEncryptFrom', 'kms:ReEncryptTo', 'kms:Decrypt', 'kms:Encrypt'];
    const list = ['kms:ListKeys', 'kms:ListAliases'];
    const manage = [
      'kms:RotateKeyOnDemand',
      'kms:EnableKeyRotation',
      'kms:DisableKeyRotation',
      'kms:DisableKey',
      'kms:CancelKeyDeletion',
      'kms:ScheduleKeyDeletion',
    ];
    // Rotation by a new key (alias chains).
    const chains = ['kms:GetKeyPolicy', 'kms:TagResource', 'kms:UpdateAlias', 'kms:CreateKey'];
    expect(kmsActions('SchedulerRole')).toEqual(new Set([...list, ...read, ...manage, ...chains]));
    expect(kmsActions('WorkerRole')).toEqual(new Set([...read, ...crypto]));
    expect(kmsActions('EventsRole')).toEqual(
      new Set([...read, ...crypto, 'kms:RotateKeyOnDemand', 'kms:ListAliases', ...chains]),
    );
    expect(kmsActions('CostsRole')).toEqual(new Set([...list, ...read]));
    expect(kmsActions('ApprovalsRole')).toEqual(new Set());
    // Queue, bus and tables: each function reaches only what it uses.
    const all = (role: string) => new Set(statements(role).flatMap(actions));
    expect(all('SchedulerRole')).toContain('sqs:SendMessage');
    expect(all('WorkerRole')).not.toContain('sqs:SendMessage');
    expect(all('WorkerRole')).toContain('sqs:ReceiveMessage');
    expect(all('CostsRole')).not.toContain('events:PutEvents');
    expect(all('ApprovalsRole')).toEqual(
      new Set([
        'logs:CreateLogStream',
        'logs:PutLogEvents',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
      ]),
    );
    const idempotency = (role: string) =>
      statements(role).some((s) => JSON.stringify(s.Resource).includes('IdempotencyTable'));
    expect(FUNCTIONS.filter((fn) => idempotency(`${fn[0]!.toUpperCase()}${fn.slice(1)}Role`))).toEqual([
      'events',
    ]);
  });

  it('packages each function with its bundle, its chunks and the compiled config, nothing else', () => {
    for (const fn of FUNCTIONS) {
      const listing = zipEntries(readFileSync(join(out, `${fn}.zip`))).sort();
      // Every file the build wrote for the function (the esbuild metafile's outputs): the bundle
      // and the chunks it imports, with the build or on first use; no source map.
      const meta = JSON.parse(readFileSync(join(ROOT, 'dist/aws', `${fn}.meta.json`), 'utf8'));
      const files = Object.keys(meta.outputs).filter((f) => f.endsWith('.mjs'));
      expect(files).toContain(`dist/aws/${fn}.mjs`);
      expect(
        files.filter((f) => f !== `dist/aws/${fn}.mjs`).every((f) => f.startsWith(`dist/aws/chunks/${fn}-`)),
      ).toBe(true);
      expect(listing).toEqual([...files, CONFIG].sort());
    }
  });

  it('serves approvals on a function URL the handler authenticates, and passes HMAC secrets as parameters', () => {
    const [, url] = ofType('AWS::Lambda::Url')[0]!;
    expect(url.Properties).toMatchObject({
      AuthType: 'NONE',
      TargetFunctionArn: { 'Fn::GetAtt': ['ApprovalsLambdaFunction', 'Arn'] },
    });
    const env = (fn: string) => (fnResource(fn).Properties.Environment as Json).Variables as Json;
    expect(env('approvals')).toMatchObject({ REKEY_APPROVAL_TOKEN_KEY: '' });
    expect(env('events')).toMatchObject({ REKEY_INCIDENT_KEY: '' });
    expect(env('scheduler').REKEY_INCIDENT_KEY).toBeUndefined();
  });

  it('refuses to package without a compiled config', () => {
    const into = mkdtempSync(join(tmpdir(), 'rekey-sls-'));
    try {
      const r = slsPackage('.tmp/no-such-config.json', into);
      expect(r.status).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/REKEY_CONFIG_DIGEST/);
      expect(existsSync(join(into, 'scheduler.zip'))).toBe(false);
    } finally {
      rmSync(into, { recursive: true, force: true });
    }
  });
});
