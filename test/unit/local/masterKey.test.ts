import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/core/errors.js';
import {
  createMasterKeyFile,
  loadMasterKey,
  MasterKeySource,
  parseMasterKeyRef,
} from '../../../shared/providers/local/masterKey.js';

const root = mkdtempSync(join(tmpdir(), 'rekey-mk-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(root, `k${++n}`);

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('parseMasterKeyRef', () => {
  it('accepts env: and file: refs', () => {
    expect(parseMasterKeyRef('env:REKEY_MASTER_KEY')).toEqual({ kind: 'env', name: 'REKEY_MASTER_KEY' });
    expect(parseMasterKeyRef('file:./master.key')).toEqual({ kind: 'file', path: './master.key' });
  });
  it.each(['', 'REKEY', 'env:', 'env:1BAD', 'env:A-B', 'file:', 'vault:x'])('refuses %j', (ref) => {
    expect(() => parseMasterKeyRef(ref)).toThrow(ConfigError);
  });
});

describe('env master key', () => {
  const key = randomBytes(32);
  it('decodes base64 of exactly 32 bytes', () => {
    const got = loadMasterKey('env:MK', { env: { MK: key.toString('base64') } });
    expect(got.equals(key)).toBe(true);
  });
  it('tolerates surrounding whitespace', () => {
    expect(loadMasterKey('env:MK', { env: { MK: ` ${key.toString('base64')}\n` } }).equals(key)).toBe(true);
  });
  it.each([
    ['16 bytes', randomBytes(16).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['not base64', '!'.repeat(44)],
    ['hex instead of base64', key.toString('hex')],
  ])('refuses %s, naming the variable but not the value', (_label, value) => {
    const e = thrown(() => loadMasterKey('env:MY_MASTER', { env: { MY_MASTER: value } }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain('MY_MASTER');
    expect(e.message).toContain('32 bytes');
    expect(e.message).not.toContain(value);
  });
  it('says when the variable is not set', () => {
    const e = thrown(() => loadMasterKey('env:MISSING_MK', { env: {} }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/MISSING_MK.*not set/);
  });
});

describe('file master key', () => {
  it('createMasterKeyFile writes 32 random bytes with mode 0600 and loads back', () => {
    const p = fresh();
    createMasterKeyFile(p);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    const raw = readFileSync(p);
    expect(raw).toHaveLength(32);
    expect(loadMasterKey(`file:${p}`).equals(raw)).toBe(true);
    expect(MasterKeySource.load(`file:${p}`).equals(raw)).toBe(true);
  });

  it('createMasterKeyFile never overwrites an existing file', () => {
    const p = fresh();
    createMasterKeyFile(p);
    const before = readFileSync(p);
    const e = thrown(() => createMasterKeyFile(p));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(p);
    expect(readFileSync(p).equals(before)).toBe(true);
  });

  it('accepts base64 content, resolving a relative path against baseDir', () => {
    const key = randomBytes(32);
    writeFileSync(join(root, 'b64.key'), `${key.toString('base64')}\n`, { mode: 0o600 });
    expect(loadMasterKey('file:b64.key', { baseDir: root }).equals(key)).toBe(true);
  });

  it.each([0o640, 0o604, 0o644, 0o660])(
    'refuses a file with mode %o, naming the path and chmod 600',
    (mode) => {
      const p = fresh();
      createMasterKeyFile(p);
      chmodSync(p, mode);
      const e = thrown(() => loadMasterKey(`file:${p}`));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message).toContain(p);
      expect(e.message).toContain(`chmod 600 ${p}`);
    },
  );

  it('refuses content that is neither 32 raw bytes nor their base64', () => {
    const p = fresh();
    writeFileSync(p, randomBytes(31), { mode: 0o600 });
    expect(() => loadMasterKey(`file:${p}`)).toThrow(/exactly 32 raw bytes/);
  });

  it('names a missing file', () => {
    const p = join(root, 'nope.key');
    expect(() => loadMasterKey(`file:${p}`)).toThrow(`master key file ${p} does not exist`);
  });
});
