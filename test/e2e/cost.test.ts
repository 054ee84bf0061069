import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateKeyCommand, EncryptCommand, KMSClient, RotateKeyOnDemandCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FOCUS_MANDATORY } from '../../shared/cost/focus.js';
import { type AwsEmulator, startAwsEmulator } from '../emulators/aws/index.js';

/** `rekey cost estimate`: offline pricing of an exported inventory, as a user runs it. */
const ROOT = resolve(import.meta.dirname, '../..');
const FX = join(ROOT, 'test/fixtures/cost');
const rekey = (...args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'bin/rekey.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, REKEY_CONFIG: '' },
  });
const base = ['cost', 'estimate', '--inventory', join(FX, 'inventory.json'), '--period', '2026-10'];

describe('rekey cost estimate', () => {
  it('prices every key, explains each part, and the parts add up to the total', () => {
    const r = rekey(...base, '--usage', join(FX, 'usage.json'), '--format', 'json');
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      keys: { total: number | null }[];
      total: number | null;
      catalogVersion: string;
    };
    expect(report.keys.length).toBeGreaterThan(3);
    expect(report.catalogVersion).toMatch(/^\d{4}\.\d+\.\d+$/);
    const sum = report.keys.reduce((a, k) => a + (k.total ?? 0), 0);
    expect(report.total).not.toBeNull();
    expect(Math.abs(sum - report.total!)).toBeLessThan(0.01 * report.keys.length + 1e-9);
    const text = rekey(...base, '--usage', join(FX, 'usage.json'));
    expect(text.stdout).toContain('destroyed versions are free');
    expect(text.stdout).toMatch(/^total \d+\.\d{2} USD for 2026-10/m);
  });

  it('imports provider exports and writes FOCUS rows with every mandatory column', () => {
    const r = rekey(...base, '--import', `aws-cur=${join(FX, 'aws-cur.csv')}`, '--format', 'focus-csv');
    expect(r.status, r.stderr).toBe(0);
    const [header, ...rows] = r.stdout.trim().split('\n');
    const cols = header!.split(',');
    for (const c of FOCUS_MANDATORY) expect(cols).toContain(c);
    expect(rows.length).toBeGreaterThan(3);
  });

  it('bad input is a clear error with exit 2', () => {
    expect(
      rekey('cost', 'estimate', '--inventory', join(FX, 'inventory.json'), '--period', '2026-13').status,
    ).toBe(2);
    const imp = rekey(...base, '--import', 'excel=x.csv');
    expect(imp.status).toBe(2);
    expect(imp.stderr).toContain('FORMAT=FILE');
    const missing = rekey('cost', 'estimate', '--inventory', join(FX, 'nope.json'), '--period', '2026-10');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('nope.json');
  });
});

/** The same command run without blocking this process, so an in-process emulator can answer it. */
function rekeyAsync(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((ok) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/rekey.js'), ...args], {
      env: { ...process.env, REKEY_CONFIG: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('close', (code) => ok({ code, stdout, stderr }));
  });
}

const INV = join(FX, 'inventory.json');
const USAGE = join(FX, 'usage.json');
const ORDERS = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

describe('rekey cost explain', () => {
  it('explains each figure with its SKU, unit price, quantity and source, as text and JSON', () => {
    const text = rekey(
      'cost',
      'explain',
      'orders',
      '--inventory',
      INV,
      '--usage',
      USAGE,
      '--period',
      '2026-11',
    );
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain(ORDERS);
    expect(text.stdout).toContain('[aws-kms/key-month] 1 Key-Months x $1.00 = $1.00');
    expect(text.stdout).toContain('price: https://aws.amazon.com/kms/pricing/ (effective 2024-04-01)');
    expect(text.stdout).toMatch(
      /free tier:\n\s+aws-kms\/\S+: 20,000 free requests a month for account 111122223333/,
    );
    const json = rekey(
      '--json',
      'cost',
      'explain',
      ORDERS,
      '--inventory',
      INV,
      '--usage',
      USAGE,
      '--period',
      '2026-11',
    );
    expect(json.status, json.stderr).toBe(0);
    const x = JSON.parse(json.stdout) as { total: number; requests: { sku: string; unitPrice: number }[] };
    expect(x.total).toBeCloseTo(6.33540625, 9);
    expect(x.requests.map((r) => r.sku).sort()).toEqual([
      'aws-kms/requests-gdkp-rsa',
      'aws-kms/requests-symmetric',
    ]);
  });

  it('an unknown key is an error that names it (exit 4), and a bad period exit 2', () => {
    const r = rekey('cost', 'explain', 'local://nope', '--inventory', INV);
    expect(r.status).toBe(4);
    expect(r.stderr).toContain('key "local://nope" is not in inventory file');
    expect(r.stdout).toBe('');
    const p = rekey('cost', 'explain', 'orders', '--inventory', INV, '--period', '2026-1');
    expect(p.status).toBe(2);
    expect(p.stderr).toContain('--period must be YYYY-MM, got "2026-1"');
  });
});

describe('rekey cost forecast', () => {
  it('per key and in total; --what-if shows the delta per key and in total', () => {
    const args = ['--json', 'cost', 'forecast', '--inventory', INV, '--usage', USAGE, '--months', '12'];
    const base = rekey(...args);
    expect(base.status, base.stderr).toBe(0);
    const b = JSON.parse(base.stdout) as {
      from: string;
      keys: { ref: string }[];
      total: { current: number };
    };
    // The inventory was exported 2026-12-01: the projection starts there.
    expect(b.from).toBe('2026-12');
    expect(b.keys).toHaveLength(7);
    const w = rekey(...args, '--what-if', 'rotate.every=P30D', '--what-if', 'retire.destroyAfter=P30D');
    expect(w.status, w.stderr).toBe(0);
    const p = JSON.parse(w.stdout) as {
      whatIfs: string[];
      keys: { ref: string; delta: number; whatIfs: string[] }[];
      total: { current: number; proposed: number; delta: number };
    };
    expect(p.whatIfs).toEqual(['rotate.every=P30D', 'retire.destroyAfter=P30D']);
    expect(p.total.current).toBeCloseTo(b.total.current, 9);
    expect(p.total.delta).toBeCloseTo(
      p.keys.reduce((s, k) => s + k.delta, 0),
      9,
    );
    expect(p.total.proposed - p.total.current).toBeCloseTo(p.total.delta, 9);
    // AWS caps rotation charges: the thrice-rotated "orders" key costs the same.
    expect(p.keys.find((k) => k.ref === ORDERS)!.delta).toBeCloseTo(0, 9);
    const text = rekey(
      'cost',
      'forecast',
      '--inventory',
      INV,
      '--months',
      '3',
      '--what-if',
      'rotate.every=P30D',
    );
    expect(text.stdout).toMatch(/^total \$[\d,.]+ -> \$[\d,.]+ \(\+\$[\d,.]+\) over 3 month\(s\)$/m);
  });

  it('a bad --what-if or --months is named, exit 2', () => {
    const bad = rekey('cost', 'forecast', '--inventory', INV, '--what-if', 'rotate.evry=P30D');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--what-if "rotate.evry=P30D": unknown field "rotate.evry"');
    const months = rekey('cost', 'forecast', '--inventory', INV, '--months', '0');
    expect(months.status).toBe(2);
    expect(months.stderr).toContain('--months must be a whole number from 1 to 120');
  });
});

describe('rekey inventory export', () => {
  let emu: AwsEmulator;
  let dir: string;
  beforeAll(async () => {
    emu = await startAwsEmulator({ startTime: '2026-09-01T00:00:00.000Z' });
    // Frozen, so keys and rotations are created on the exact instants set below.
    emu.clock.freeze();
    dir = mkdtempSync(join(tmpdir(), 'rekey-inv-'));
  });
  let running = true;
  afterAll(async () => {
    if (running) await emu.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exports what `cost estimate` reads: AWS keys from the emulator, priced by hand', async () => {
    const kms = new KMSClient({
      region: 'us-east-1',
      endpoint: emu.endpoint,
      credentials: { accessKeyId: 'AKIAEMULATOR00000000', secretAccessKey: 'emulator-secret' },
      maxAttempts: 1,
    });
    const a = (await kms.send(new CreateKeyCommand({ Description: 'a' }))).KeyMetadata!.Arn!;
    emu.clock.set('2026-10-01T00:00:00.000Z');
    await kms.send(new RotateKeyOnDemandCommand({ KeyId: a }));
    await kms.send(new EncryptCommand({ KeyId: a, Plaintext: Buffer.from('last use') }));
    await kms.send(new CreateKeyCommand({ Description: 'b' }));
    emu.clock.set('2026-10-20T00:00:00.000Z');
    kms.destroy();
    const config = join(dir, 'rekey.yaml');
    writeFileSync(
      config,
      `version: 1\nproviders:\n  aws: { type: aws-kms, regions: [us-east-1], endpoint: ${emu.endpoint} }\n`,
    );
    const env = { AWS_ACCESS_KEY_ID: 'AKIAEMULATOR00000000', AWS_SECRET_ACCESS_KEY: 'emulator-secret' };
    const out = join(dir, 'inventory.json');
    // A bad --out is refused before anything is listed or recorded.
    const bad = await rekeyAsync(
      [
        '--config',
        config,
        '--state',
        join(dir, 'state.db'),
        'inventory',
        'export',
        '--out',
        join(dir, 'no/such/dir/x.json'),
      ],
      env,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--out');
    expect(existsSync(join(dir, 'state.db'))).toBe(false);
    const exp = await rekeyAsync(
      [
        '--config',
        config,
        '--state',
        join(dir, 'state.db'),
        'inventory',
        'export',
        '--out',
        out,
        '--last-used',
      ],
      env,
    );
    expect(exp.code, exp.stderr).toBe(0);
    const file = JSON.parse(readFileSync(out, 'utf8')) as {
      format: string;
      keys: { ref: string; versions: unknown[]; lastUsedAt?: string }[];
    };
    expect(file.format).toBe('rekey-inventory/1');
    expect(file.keys).toHaveLength(2);
    const keyA = file.keys.find((k) => k.ref === `aws-kms://${a}`)!;
    expect(keyA.versions).toHaveLength(2);
    expect(keyA.lastUsedAt).toBe('2026-10-01T00:00:00.000Z');
    expect(file.keys.find((k) => k.ref !== `aws-kms://${a}`)!.lastUsedAt).toBeUndefined();
    // October: each key bills a full key-month ($1), the rotation of key a adds one ($1).
    const est = rekey('cost', 'estimate', '--inventory', out, '--period', '2026-10', '--format', 'json');
    expect(est.status, est.stderr).toBe(0);
    const report = JSON.parse(est.stdout) as { total: number; keys: { ref: string; total: number }[] };
    expect(report.total).toBeCloseTo(3, 9);
    expect(report.keys.find((k) => k.ref === `aws-kms://${a}`)!.total).toBeCloseTo(2, 9);
    // The same key explained live, straight from the provider.
    const live = await rekeyAsync(
      [
        '--config',
        config,
        '--state',
        join(dir, 'state.db'),
        '--json',
        'cost',
        'explain',
        `aws-kms://${a}`,
        '--period',
        '2026-10',
      ],
      env,
    );
    expect(live.code, live.stderr).toBe(0);
    expect((JSON.parse(live.stdout) as { total: number }).total).toBeCloseTo(2, 9);
    // --latest exports the snapshot the first export recorded, without asking the provider.
    await emu.close();
    running = false;
    const again = await rekeyAsync(
      ['--config', config, '--state', join(dir, 'state.db'), 'inventory', 'export', '--latest'],
      env,
    );
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { keys: unknown[] }).keys).toHaveLength(2);
  });
});

describe('rekey cost publish', () => {
  let dir: string;
  let server: Server;
  let bodies: string[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rekey-pub-'));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  });
  afterAll(async () => {
    await new Promise<void>((ok) => server.close(() => ok()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes EMF documents, one per key, with the key ref as metadata only', () => {
    const config = join(dir, 'emf.yaml');
    writeFileSync(
      config,
      'version: 1\nproviders:\n  local: { type: local }\nmetrics: { type: emf, namespace: rekey-e2e, output: metrics.jsonl }\n',
    );
    const r = rekey(
      '--config',
      config,
      'cost',
      'publish',
      '--inventory',
      INV,
      '--usage',
      USAGE,
      '--period',
      '2026-11',
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^published \d+ point\(s\) of 1\d metric\(s\) for 7 key\(s\), 2026-11, to emf/);
    const docs = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as Record<string, unknown> & {
            _aws: { CloudWatchMetrics: { Dimensions: string[][] }[] };
          },
      );
    const perKey = docs.filter((d) => 'rekey.cost.monthly' in d);
    expect(perKey).toHaveLength(7);
    expect(perKey.find((d) => d.keyRef === ORDERS)!['rekey.cost.monthly']).toBeCloseTo(6.33540625, 9);
    for (const d of docs) expect(d._aws.CloudWatchMetrics[0]!.Dimensions.flat()).not.toContain('keyRef');
  });

  it('sends OTLP to the configured endpoint; without a metrics section it says what to add', async () => {
    const { port } = server.address() as AddressInfo;
    const config = join(dir, 'otlp.yaml');
    writeFileSync(
      config,
      `version: 1\nproviders:\n  local: { type: local }\nmetrics: { type: otlp, endpoint: "http://127.0.0.1:${port}/v1/metrics", timeoutSeconds: 5 }\n`,
    );
    bodies = [];
    const r = await rekeyAsync([
      '--config',
      config,
      'cost',
      'publish',
      '--inventory',
      INV,
      '--period',
      '2026-11',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(bodies.length).toBeGreaterThan(0);
    const all = bodies.join('\n');
    expect(all).toContain('"rekey.cost.monthly"');
    expect(all).not.toContain('arn:aws:kms');
    const none = join(dir, 'none.yaml');
    writeFileSync(none, 'version: 1\nproviders:\n  local: { type: local }\n');
    const n = rekey('--config', none, 'cost', 'publish', '--inventory', INV);
    expect(n.status).toBe(2);
    expect(n.stderr).toContain('no metrics sink configured; add a metrics: section');
  });
});
