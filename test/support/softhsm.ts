import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/**
 * A private SoftHSM2 for one test file: its own softhsm2.conf and token directory in a temp
 * dir, SOFTHSM2_CONF pointing at it for this process (and the children it starts), one
 * initialised token. Missing tools fail loudly: a machine without SoftHSM must not pass the
 * HSM tests by skipping them.
 */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsm {
  dir: string;
  conf: string;
  module: string;
  label: string;
  pin: string;
  soPin: string;
  /** Initialises one more token in the same store. */
  addToken(label: string, pin: string): void;
  /** Token objects of one type as seen by opensc's pkcs11-tool (logged in). */
  listObjects(type: 'secrkey' | 'data'): TokenObject[];
  cleanup(): Promise<void>;
}

export interface TokenObject {
  kind: string;
  label: string;
  id: string;
  usage: string[];
  access: string[];
}

function need(tool: string, pkg: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(`${tool} not found on PATH: install it (apt-get install ${pkg}) to run the PKCS#11 tests`);
}

export async function startSoftHsm(
  opts: { label?: string; pin?: string; soPin?: string } = {},
): Promise<SoftHsm> {
  const util = need('softhsm2-util', 'softhsm2');
  const tool = need('pkcs11-tool', 'opensc');
  if (!existsSync(SOFTHSM_MODULE)) {
    throw new Error(`SoftHSM module ${SOFTHSM_MODULE} is missing: apt-get install softhsm2`);
  }
  const label = opts.label ?? 'rekey-test';
  const pin = opts.pin ?? '123456';
  const soPin = opts.soPin ?? '12345678';
  const dir = mkdtempSync(join(tmpdir(), 'rekey-softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`, {
    mode: 0o600,
  });
  const previous = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf };

  const addToken = (l: string, p: string) => {
    execFileSync(util, ['--init-token', '--free', '--label', l, '--pin', p, '--so-pin', soPin], {
      env,
      stdio: 'pipe',
    });
  };
  try {
    addToken(label, pin);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    dir,
    conf,
    module: SOFTHSM_MODULE,
    label,
    pin,
    soPin,
    addToken,
    listObjects(type) {
      const out = execFileSync(
        tool,
        [
          '--module',
          SOFTHSM_MODULE,
          '--token-label',
          label,
          '--login',
          '--pin',
          pin,
          '--list-objects',
          '--type',
          type,
        ],
        { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      return parseObjects(out);
    },
    async cleanup() {
      if (previous === undefined) delete process.env.SOFTHSM2_CONF;
      else process.env.SOFTHSM2_CONF = previous;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Parses `pkcs11-tool --list-objects` output into one record per object. */
function parseObjects(out: string): TokenObject[] {
  const objs: TokenObject[] = [];
  let cur: TokenObject | null = null;
  for (const line of out.split('\n')) {
    if (/^\S.*\b[Oo]bject\b/.test(line)) {
      cur = { kind: line.trim(), label: '', id: '', usage: [], access: [] };
      objs.push(cur);
      continue;
    }
    const m = /^\s+([A-Za-z ]+):\s*(.*)$/.exec(line);
    if (!cur || !m) continue;
    const [, k, v] = m;
    const list = () =>
      v!
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
    if (k === 'label') cur.label = v!.replace(/^'(.*)'$/, '$1');
    else if (k === 'ID') cur.id = v!;
    else if (k === 'Usage') cur.usage = list();
    else if (k === 'Access') cur.access = list();
  }
  return objs;
}
