import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Drives the built `rekey` command as a user would. `npm test` builds it first. */
const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/rekey.js');
let dir: string;

function rekey(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env, REKEY_CONFIG: '' },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) };
}

const fileHash = (p: string) =>
  existsSync(p) ? createHash('sha256').update(readFileSync(p)).digest('hex') : 'absent';

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist/cli/main.js')))
    throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  dir = mkdtempSync(join(tmpdir(), 'rekey-e2e-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('rekey CLI', () => {
  it('demo --json runs the whole cycle with nothing failed', () => {
    const r = rekey(['demo', '--dir', join(dir, 'demo'), '--deks', '3000', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = r.json();
    expect(out).toMatchObject({
      deks: 3000,
      verified: 3000,
      failed: 0,
      deksNotOnPrimary: 0,
      auditOk: true,
      runStatus: 'completed',
    });
    expect(out.rotated).toBeGreaterThan(0);
    expect(out.rewrapped).toBeGreaterThan(0);
    expect(out.retired).toBeGreaterThan(0);
    // A second demo in the same place is refused unless --fresh.
    const again = rekey(['demo', '--dir', join(dir, 'demo'), '--deks', '10']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('pass --fresh');
  });

  it('init -> keys create -> plan -> apply -> status -> audit verify', () => {
    const ws = join(dir, 'ws');
    expect(rekey(['init', '--dir', ws]).code).toBe(0);
    const cfg = join(ws, 'rekey.yaml');
    expect(readFileSync(join(ws, 'master.key')).length).toBe(32);
    const created = rekey([
      '--config',
      cfg,
      '--json',
      'keys',
      'create',
      'orders-kek',
      '--tag',
      'data-class=pci',
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.json()).toMatchObject({ ref: 'local://orders-kek', tags: { 'data-class': 'pci' } });
    const plan = rekey(['--config', cfg, '--json', 'plan']);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = plan.json().plan;
    // Freshly created: nothing to rotate, only the native schedule to set.
    expect(planned.actions.map((a: { type: string }) => a.type)).toEqual(['set_auto_rotation']);
    const apply = rekey(['--config', cfg, '--json', 'apply', '--plan', planned.id]);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.json()).toMatchObject({ status: 'completed' });
    const status = rekey(['--config', cfg, '--json', 'status']);
    expect(status.json()).toMatchObject({ latestPlan: { id: planned.id }, runs: [{ status: 'completed' }] });
    const audit = rekey(['--config', cfg, '--json', 'audit', 'verify']);
    expect(audit.code).toBe(0);
    expect(audit.json().ok).toBe(true);
    const list = rekey(['--config', cfg, 'keys', 'list']);
    expect(list.stdout).toContain('local://orders-kek');
  });

  it('validate: a malformed policy names file:line:column and the field, exit 2', () => {
    const f = join(dir, 'bad.yaml');
    writeFileSync(
      f,
      'version: 1\nproviders:\n  p: { type: local }\npolicies:\n  - name: x\n    match: { provider: [p] }\n    rotate: { every: 90 days }\n',
    );
    const r = rekey(['validate', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(`${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:7:\\d+: policies\\[0\\]\\.rotate\\.every`),
    );
    const j = rekey(['--json', 'validate', f]);
    expect(j.json().error.issues[0]).toMatchObject({ line: 7, path: 'policies[0].rotate.every' });
    const good = join(dir, 'good.yaml');
    writeFileSync(good, readFileSync(join(ROOT, 'examples/local.yaml')));
    expect(rekey(['validate', good]).code).toBe(0);
  });

  it('bad input changes nothing: unknown key ref, unknown key, wrong master key, bad flags', () => {
    const ws = join(dir, 'bad-input');
    rekey(['init', '--dir', ws]);
    const cfg = join(ws, 'rekey.yaml');
    rekey(['--config', cfg, 'keys', 'create', 'k1']);
    const files = ['kms.db', 'state.db', 'app.db'].map((f) => join(ws, f));
    const before = files.map(fileHash);

    const badRef = rekey(['--config', cfg, 'rewrap', 'local://Not A Ref']);
    expect(badRef.code).toBe(2);
    expect(badRef.stderr).toContain('invalid key ref');

    const unknown = rekey(['--config', cfg, 'rewrap', 'local://nope']);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('local://nope');

    const badVerify = rekey(['--config', cfg, 'rewrap', 'local://k1', '--verify', 'sometimes']);
    expect(badVerify.code).toBe(2);

    // A different master key: refused before anything is touched.
    const key = join(ws, 'master.key');
    const saved = readFileSync(key);
    writeFileSync(key, Buffer.alloc(32, 7));
    chmodSync(key, 0o600);
    const wrongKey = rekey(['--config', cfg, 'plan']);
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toContain('master key does not match');
    writeFileSync(key, saved);

    // Group-readable master key file: refused, with the fix named.
    chmodSync(key, 0o640);
    const loose = rekey(['--config', cfg, 'plan']);
    expect(loose.code).toBe(2);
    expect(loose.stderr).toContain('chmod 600');
    chmodSync(key, 0o600);

    expect(rekey(['--config', cfg, 'no-such-command']).code).toBe(2);
    expect(rekey(['--config', join(ws, 'missing.yaml'), 'plan']).code).toBe(2);
    expect(files.map(fileHash)).toEqual(before);
  });

  it('a corrupted wrapped DEK is reported by rewrap with exit 1, the rest move', () => {
    const ws = join(dir, 'corrupt');
    const demo = rekey(['demo', '--dir', ws, '--deks', '600', '--keys', '2', '--json']);
    expect(demo.code, demo.stderr).toBe(0);
    const cfg = join(ws, 'rekey.yaml');
    const db = new Database(join(ws, 'app.db'));
    const row = db
      .prepare("SELECT id, wrapped_dek FROM data_keys WHERE kek_ref = 'local://payments-kek' LIMIT 1")
      .get() as { id: string; wrapped_dek: Buffer };
    const bad = Buffer.from(row.wrapped_dek);
    bad[bad.length - 1]! ^= 1;
    db.prepare('UPDATE data_keys SET wrapped_dek = ? WHERE id = ?').run(bad, row.id);
    db.close();
    const rot = rekey([
      '--config',
      cfg,
      '--json',
      'keys',
      'rotate',
      'local://payments-kek',
      '--reason',
      'test',
    ]);
    expect(rot.code, rot.stderr).toBe(0);
    const rw = rekey(['--config', cfg, '--json', 'rewrap', 'local://payments-kek']);
    expect(rw.code).toBe(1);
    const [job] = rw.json().jobs;
    expect(job.counts).toMatchObject({ rewrapped: 299, failed: 1 });
    expect(job.failures).toEqual([{ id: row.id, error: expect.stringMatching(/./) }]);
    expect(rekey(['--config', cfg, 'audit', 'verify']).code).toBe(0);
  });

  it('rewrap --workers 2 splits the job over two processes; a child refuses a config not from a parent', () => {
    const ws = join(dir, 'workers');
    const demo = rekey(['demo', '--dir', ws, '--deks', '2000', '--keys', '1', '--json']);
    expect(demo.code, demo.stderr).toBe(0);
    const cfg = join(ws, 'rekey.yaml');
    const ref = 'local://payments-kek';
    expect(rekey(['--config', cfg, 'keys', 'rotate', ref, '--reason', 'test']).code).toBe(0);
    const db = new Database(join(ws, 'app.db'), { readonly: true });
    const snapshot = () =>
      db.prepare('SELECT id, kek_version, wrapped_dek FROM data_keys ORDER BY id').all() as {
        id: string;
        kek_version: string;
        wrapped_dek: Buffer;
      }[];
    // A worker process started by hand with something else on its stdin: refused, nothing moved.
    const before = snapshot();
    const child = spawnSync(
      process.execPath,
      [
        BIN,
        '--config',
        cfg,
        '--quiet',
        'rewrap',
        '--worker-of',
        'some-job',
        '--provider',
        'local',
        '--config-stdin',
      ],
      { input: '{"format":"something-else"}', encoding: 'utf8', env: { ...process.env, REKEY_CONFIG: '' } },
    );
    expect(child.status).toBe(2);
    expect(child.stderr).toContain('--config-stdin');
    expect(snapshot()).toEqual(before);
    // Another live process holds the key: the workers, already started, are stopped before
    // they begin, and nothing moves.
    const state = new Database(join(ws, 'state.db'));
    const holder = `${hostname()}:${process.pid}:e2e`;
    state
      .prepare('INSERT INTO leases (name, owner, expires_at_ms) VALUES (?, ?, ?)')
      .run(`key:${ref}`, holder, Date.now() + 3_600_000);
    const held = rekey(['--config', cfg, '--json', 'rewrap', ref, '--workers', '2']);
    expect(held.code, held.stderr).toBe(5);
    expect(held.stderr).toContain('holds the lease');
    expect(snapshot()).toEqual(before);
    state.prepare('DELETE FROM leases WHERE owner = ?').run(holder);
    state.close();
    const rw = rekey(['--config', cfg, '--json', 'rewrap', ref, '--workers', '2']);
    expect(rw.code, rw.stderr).toBe(0);
    const [job] = rw.json().jobs;
    expect(job.counts).toMatchObject({ failed: 0 });
    // 2,000 DEKs make four parts of 500: two workers take guided shards of one part each.
    expect(job.shardIds).toHaveLength(4);
    const after = snapshot();
    const primary = after[0]!.kek_version;
    expect(after.filter((r) => r.kek_version !== primary)).toEqual([]);
    expect(job.counts.rewrapped).toBe(before.filter((r) => r.kek_version !== primary).length);
    db.close();
    expect(rekey(['--config', cfg, 'audit', 'verify']).code).toBe(0);
  });

  it('audit verify exits 3 and names the record after tampering', () => {
    const ws = join(dir, 'demo');
    const db = new Database(join(ws, 'state.db'));
    db.exec("DROP TRIGGER IF EXISTS audit_no_update; UPDATE audit SET actor = 'mallory' WHERE seq = 3");
    db.close();
    const r = rekey(['--config', join(ws, 'rekey.yaml'), 'audit', 'verify']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('record 3');
  });
});
