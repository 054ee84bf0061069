import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type CloudEvent, COMPROMISE_EVENT_TYPE } from '../../shared/core/domain/compromiseEvent.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import { HmacEventSigner } from '../../shared/core/governance/signature.js';
import type { DekRecord } from '../../shared/core/ports/DekStore.js';
import { LocalKmsProvider } from '../../shared/providers/local/LocalKmsProvider.js';
import { SqliteDekStore } from '../../shared/stores/sqlite/SqliteDekStore.js';

/**
 * The shipped `rekey incident` and `rekey approvals` commands: a compromise killed with
 * SIGKILL in the middle of its re-wrap and finished by a second run (one rotation, every DEK
 * intact), a signed CloudEvent handled from a file (once), and a destroy approved from the
 * command line by two approvers.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/rekey.js');
const root = mkdtempSync(join(tmpdir(), 'rekey-incident-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SECRET = 'incident-secret-for-the-e2e-test-0123456789';
const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };

function workspace(name: string, extra = '') {
  const dir = join(root, name);
  mkdirSync(dir);
  expect(spawnSync(process.execPath, [BIN, 'init', '--dir', dir]).status).toBe(0);
  writeFileSync(
    join(dir, 'rekey.yaml'),
    `version: 1
providers:
  local: { type: local, keystore: kms.db, masterKey: file:master.key }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
${extra}
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, rate: 100/s }
    retire: { disableAfter: P0D, destroyAfter: P0D, approvals: 2 }
`,
  );
  const env = { ...process.env, REKEY_ACTOR: 'sec-oncall', REKEY_TEST_INCIDENT_KEY: SECRET };
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [BIN, '--config', join(dir, 'rekey.yaml'), ...args], {
      encoding: 'utf8',
      env,
    });
  const openLocal = () =>
    LocalKmsProvider.open({
      id: 'local',
      keystorePath: join(dir, 'kms.db'),
      masterKeyRef: 'file:master.key',
      baseDir: dir,
      refreshIntervalMs: 0,
    });
  const openStore = () =>
    SqliteDekStore.open({ id: 'app', path: join(dir, 'app.db'), table: 'data_keys', columns: COLUMNS });
  return { dir, env, cli, openLocal, openStore };
}

const plaintext = (id: string) => createHmac('sha256', 'e2e').update(id).digest();

async function seed(ws: ReturnType<typeof workspace>, n: number): Promise<void> {
  expect(ws.cli('keys', 'create', 'k').status).toBe(0);
  const local = await ws.openLocal();
  const store = ws.openStore();
  const ref = parseKeyRef('local://k');
  for (let start = 0; start < n; start += 5000) {
    const batch: DekRecord[] = [];
    for (let i = start; i < Math.min(n, start + 5000); i++) {
      const id = `dek-${String(i).padStart(6, '0')}`;
      const w = await local.wrap(ref, plaintext(id), { row: id });
      batch.push({ id, keyRef: ref.uri, version: w.version, wrapped: w.ciphertext, context: { row: id } });
    }
    await store.insertMany(batch);
  }
  await local.close();
  await store.close?.();
}

describe('rekey incident', () => {
  it('a compromise killed mid re-wrap is finished by the next run: one rotation, every DEK intact', async () => {
    const N = 60_000;
    const ws = workspace('kill');
    await seed(ws, N);
    const store = ws.openStore();
    const child = spawn(
      process.execPath,
      [
        BIN,
        '--config',
        join(ws.dir, 'rekey.yaml'),
        '-q',
        'incident',
        'compromise',
        'local://k',
        '--reason',
        'key file on a stolen laptop',
      ],
      { stdio: 'ignore', env: ws.env },
    );
    const exited = new Promise((r) => child.on('exit', r));
    // Kill as soon as part of the re-wrap is committed (the policy's 100/s does not apply).
    let moved = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      moved = (await store.countByVersion('local://k'))['2'] ?? 0;
      if (moved > 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGKILL');
    await exited;
    expect(moved).toBeGreaterThan(0);
    const left = (await store.countByVersion('local://k'))['1'] ?? 0;
    expect(left).toBeGreaterThan(0);

    const list = JSON.parse(ws.cli('--json', 'incident', 'list').stdout);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ status: 'open', version: '1' });
    const rerun = ws.cli(
      'incident',
      'compromise',
      'local://k',
      '--reason',
      'key file on a stolen laptop',
      '--json',
    );
    expect(rerun.status, rerun.stderr).toBe(0);
    const report = JSON.parse(rerun.stdout);
    expect(report).toMatchObject({
      id: list[0].id,
      status: 'contained',
      runs: 2,
      rotation: { how: 'rotated', from: '1', to: '2' },
      stores: { app: { rewrapped: N, failed: 0 } },
      failures: [],
    });
    expect(report.timeline.map((t: { step: string }) => t.step)).toEqual([
      'reported',
      'opened',
      'marked',
      'rotated',
      'resumed',
      'rewrapped',
      'disabled',
      'contained',
      'published',
    ]);
    const show = ws.cli('--json', 'incident', 'show', report.id);
    expect(JSON.parse(show.stdout)).toEqual(report);
    expect(await store.countByVersion('local://k')).toEqual({ '2': N });
    const keys = JSON.parse(ws.cli('--json', 'keys', 'list').stdout);
    expect(keys.keys[0].versions.map((v: { id: string; state: string }) => [v.id, v.state])).toEqual([
      ['1', 'disabled'],
      ['2', 'enabled'],
    ]);
    const local = await ws.openLocal();
    let bad = 0;
    let cursor: string | null = null;
    do {
      const page: { items: DekRecord[]; cursor: string | null } = await store.scan(
        { keyRef: 'local://k' },
        cursor,
        5000,
      );
      for (const d of page.items) {
        const got = await local.unwrap(
          parseKeyRef('local://k'),
          { version: d.version, ciphertext: d.wrapped },
          d.context,
        );
        if (!Buffer.from(got).equals(plaintext(d.id))) bad++;
      }
      cursor = page.cursor;
    } while (cursor);
    await local.close();
    await store.close?.();
    expect(bad).toBe(0);
    expect(ws.cli('audit', 'verify').status).toBe(0);
  }, 240_000);

  it('handles a signed CloudEvent from a file once, and refuses a forged one', async () => {
    const ws = workspace(
      'event',
      `incidents:
  sources: [https://siem.example.com]
  signing: { hmac: { secretEnv: REKEY_TEST_INCIDENT_KEY } }
`,
    );
    await seed(ws, 50);
    const event: CloudEvent = {
      specversion: '1.0',
      type: COMPROMISE_EVENT_TYPE,
      source: 'https://siem.example.com',
      id: 'siem-alert-1',
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      data: {
        keyRef: 'local://k',
        version: '1',
        reason: 'leaked in a paste site',
        reportedBy: 'siem:rule-9',
      },
    };
    const signed = new HmacEventSigner(Buffer.from(SECRET)).sign(event);
    const envelope = {
      version: '0',
      id: 'eb-1',
      'detail-type': COMPROMISE_EVENT_TYPE,
      source: 'https://siem.example.com',
      account: '111122223333',
      time: event.time,
      region: 'eu-west-1',
      resources: [],
      detail: signed,
    };
    writeFileSync(join(ws.dir, 'event.json'), JSON.stringify(envelope));
    const first = ws.cli('--json', 'incident', 'event', join(ws.dir, 'event.json'));
    expect(first.status, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)[0]).toMatchObject({
      outcome: 'handled',
      incident: { status: 'contained', deksMoved: 50 },
    });
    const again = ws.cli('--json', 'incident', 'event', join(ws.dir, 'event.json'));
    expect(JSON.parse(again.stdout)[0].outcome).toBe('duplicate');
    writeFileSync(join(ws.dir, 'forged.json'), JSON.stringify({ ...signed, id: 'siem-alert-2' }));
    const forged = ws.cli('incident', 'event', join(ws.dir, 'forged.json'));
    expect(forged.status).toBe(1);
    expect(forged.stderr).toContain(
      'rekey: event siem-alert-2 from https://siem.example.com: the hmac-sha256 signature does not verify',
    );
  }, 60_000);
});

describe('rekey approvals', () => {
  it('two approvers approve a destroy from the command line; the requester cannot', async () => {
    const ws = workspace(
      'approvals',
      `approvals:
  approvers: [alice, bob, sec-oncall]
  quorum: 2
  tokens: { hmac: { secretEnv: REKEY_TEST_INCIDENT_KEY } }
`,
    );
    await seed(ws, 10);
    // Backdate the key by rotating twice: the first version is superseded and destroyable at once.
    expect(ws.cli('keys', 'rotate', 'local://k').status).toBe(0);
    const apply = ws.cli('--json', '-q', 'apply');
    expect(apply.status, apply.stderr).toBe(0);
    const destroy = JSON.parse(apply.stdout).outcomes.find(
      (o: { type: string }) => o.type === 'schedule_destroy',
    );
    expect(destroy.status).toBe('awaiting_approval');
    const id = destroy.result.requestId;
    const pending = JSON.parse(ws.cli('--json', 'approvals', 'list').stdout);
    expect(pending.map((r: { id: string }) => r.id)).toEqual([id]);
    const self = ws.cli('approvals', 'approve', id);
    expect(self.status).toBe(1);
    expect(self.stderr).toContain(`sec-oncall made request ${id} and cannot approve it`);
    const noIdentity = spawnSync(
      process.execPath,
      [BIN, '--config', join(ws.dir, 'rekey.yaml'), 'approvals', 'approve', id],
      {
        encoding: 'utf8',
        env: { ...process.env, REKEY_ACTOR: '' },
      },
    );
    expect(noIdentity.stderr).toContain('say who you are: --as IDENTITY or REKEY_ACTOR=IDENTITY');
    expect(ws.cli('approvals', 'approve', id, '--as', 'alice', '--comment', 'ok').status).toBe(0);
    const two = ws.cli('--json', 'approvals', 'approve', id, '--as', 'bob');
    expect(JSON.parse(two.stdout).status).toBe('approved');
    const next = JSON.parse(ws.cli('--json', '-q', 'apply').stdout);
    expect(next.outcomes.find((o: { type: string }) => o.type === 'schedule_destroy').status).toBe('done');
    expect(JSON.parse(ws.cli('--json', 'approvals', 'show', id).stdout).status).toBe('used');
    const token = ws.cli('approvals', 'token', '--as', 'alice', '--ttl', 'PT5M');
    expect(token.status, token.stderr).toBe(0);
    expect(token.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(ws.cli('approvals', 'token', '--as', 'mallory').stderr).toContain(
      'mallory is not one of approvals.approvers',
    );
    expect(randomBytes(1)).toHaveLength(1);
  }, 60_000);
});
