import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/rekey.js');
let dir: string;
let ws: string;
let cfg: string;
const KEY = { REKEY_BACKUP_KEY: 'a-backup-key-of-enough-length-0123456789' };

function rekey(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env, REKEY_CONFIG: '' },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) };
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build`');
  dir = mkdtempSync(join(tmpdir(), 'rekey-dr-'));
  ws = join(dir, 'demo');
  const demo = rekey(['demo', '--dir', ws, '--deks', '400', '--keys', '2', '--json']);
  expect(demo.code, demo.stderr).toBe(0);
  cfg = join(ws, 'rekey.yaml');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('rekey dr check', () => {
  it('reports every key with where it lives; a local keystore has no copy elsewhere', () => {
    const r = rekey(['--config', cfg, '--json', 'dr', 'check']);
    expect(r.code, r.stderr).toBe(0);
    const report = r.json();
    expect(report.keys.length).toBeGreaterThan(0);
    for (const k of report.keys) {
      expect(k.status).toBe('single-location');
      expect(k.locations[0]).toMatch(/^file:/);
    }
    expect(report.findings.some((f: { rule: string }) => f.rule === 'single_location')).toBe(true);
  });

  it('flags DEKs in a place where their key has no copy, and exits 1', () => {
    const text = readFileSync(cfg, 'utf8');
    const located = join(ws, 'located.yaml');
    // Every store in the demo config gets a location the local keystore cannot cover.
    writeFileSync(located, text.replace(/(\n\s+type: sqlite\n)/g, '$1    location: eu-west-1\n'));
    expect(readFileSync(located, 'utf8')).toContain('location: eu-west-1');
    const r = rekey(['--config', located, '--state', join(ws, 'state.db'), '--json', 'dr', 'check']);
    expect(r.code, r.stderr).toBe(1);
    const f = r.json().findings.find((x: { rule: string }) => x.rule === 'dek_location_without_key_copy');
    expect(f).toMatchObject({ severity: 'critical' });
    expect(f.message).toContain('eu-west-1');
  });
});

describe('rekey state export / import', () => {
  it('backs up and restores the whole state; the restored audit log verifies', () => {
    const out = join(dir, 'backup.jsonl');
    const exp = rekey(
      ['--config', cfg, '--json', 'state', 'export', '--out', out, '--key', 'env:REKEY_BACKUP_KEY'],
      KEY,
    );
    expect(exp.code, exp.stderr).toBe(0);
    expect(exp.json().entries).toBeGreaterThan(10);
    const restored = join(dir, 'restored.db');
    const imp = rekey(
      [
        '--config',
        cfg,
        '--state',
        restored,
        '--json',
        'state',
        'import',
        out,
        '--key',
        'env:REKEY_BACKUP_KEY',
      ],
      KEY,
    );
    expect(imp.code, imp.stderr).toBe(0);
    expect(imp.json().byKind.audit).toBeGreaterThan(0);
    expect(rekey(['--config', cfg, '--state', restored, 'audit', 'verify']).code).toBe(0);
    // Never over existing state.
    const twice = rekey(
      ['--config', cfg, '--state', restored, 'state', 'import', out, '--key', 'env:REKEY_BACKUP_KEY'],
      KEY,
    );
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('not empty');
  });

  it('refuses a tampered backup even with its digest recomputed, a missing key and a wrong key; nothing is written', () => {
    const out = join(dir, 'backup2.jsonl');
    expect(
      rekey(['--config', cfg, 'state', 'export', '--out', out, '--key', 'env:REKEY_BACKUP_KEY'], KEY).code,
    ).toBe(0);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    const i = lines.findIndex((l) => l.startsWith('{"t":"audit"'));
    const forged = lines.slice();
    forged[i] = forged[i]!.replace(/"actor":"[^"]*"/, '"actor":"mallory"');
    // An attacker without the key can recompute the SHA-256, not the HMAC.
    const trailer = JSON.parse(forged.at(-1)!);
    const body = forged
      .slice(0, -1)
      .map((l) => `${l}\n`)
      .join('');
    trailer.sha256 = createHash('sha256').update(body).digest('hex');
    forged[forged.length - 1] = JSON.stringify(trailer);
    const bad = join(dir, 'forged.jsonl');
    writeFileSync(bad, `${forged.join('\n')}\n`);
    const target = join(dir, 'never.db');
    const r = rekey(
      ['--config', cfg, '--state', target, 'state', 'import', bad, '--key', 'env:REKEY_BACKUP_KEY'],
      KEY,
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/HMAC|chain/);
    const noKey = rekey(['--config', cfg, '--state', target, 'state', 'import', out]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('backup key');
    const wrong = rekey(['--config', cfg, '--state', target, 'state', 'import', out, '--key', 'env:OTHER'], {
      OTHER: 'another-key-entirely-0123456789abcdef',
    });
    expect(wrong.code).toBe(3);
    // Nothing was restored by any of them.
    const ok = rekey(
      ['--config', cfg, '--state', target, '--json', 'state', 'import', out, '--key', 'env:REKEY_BACKUP_KEY'],
      KEY,
    );
    expect(ok.code, ok.stderr).toBe(0);
  });
});
