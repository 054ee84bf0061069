import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  writeSync,
} from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../../core/errors.js';

/**
 * Where the local KMS master key comes from. The master key encrypts every key version at
 * rest in the keystore; it never goes into the keystore itself.
 *  - `env:NAME`  base64 of exactly 32 bytes in environment variable NAME
 *  - `file:PATH` a file holding 32 raw bytes or their base64, readable by its owner only;
 *                a relative PATH is resolved against the config's directory.
 */
export type MasterKeyRef = `env:${string}` | `file:${string}`;

export const MASTER_KEY_BYTES = 32;

export type ParsedMasterKeyRef = { kind: 'env'; name: string } | { kind: 'file'; path: string };

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function parseMasterKeyRef(ref: string): ParsedMasterKeyRef {
  if (typeof ref === 'string' && ref.startsWith('env:')) {
    const name = ref.slice(4);
    if (!ENV_NAME.test(name))
      throw new ConfigError(`master key ref "${ref}": "${name}" is not an environment variable name`);
    return { kind: 'env', name };
  }
  if (typeof ref === 'string' && ref.startsWith('file:')) {
    const path = ref.slice(5);
    if (path.length === 0) throw new ConfigError(`master key ref "${ref}": the file path is empty`);
    return { kind: 'file', path };
  }
  throw new ConfigError(`master key ref "${String(ref)}" must be env:NAME or file:PATH`);
}

/** Decodes strict base64 of exactly 32 bytes, or returns null. */
function decodeBase64Key(text: string): Buffer | null {
  const t = text.trim();
  if (!BASE64.test(t)) return null;
  const buf = Buffer.from(t, 'base64');
  if (buf.length !== MASTER_KEY_BYTES) {
    buf.fill(0);
    return null;
  }
  return buf;
}

function loadFromEnv(name: string, env: NodeJS.ProcessEnv): Buffer {
  const value = env[name];
  if (value === undefined || value.length === 0) {
    throw new ConfigError(`environment variable ${name} (local KMS master key) is not set`);
  }
  const key = decodeBase64Key(value);
  if (!key) {
    throw new ConfigError(
      `environment variable ${name} must hold the base64 encoding of exactly ${MASTER_KEY_BYTES} bytes ` +
        `(e.g. the output of: head -c ${MASTER_KEY_BYTES} /dev/urandom | base64)`,
    );
  }
  return key;
}

function loadFromFile(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be opened (${code ?? 'unknown error'})`;
    throw new ConfigError(`master key file ${path} ${why}`, { cause: e });
  }
  try {
    // Checked on the open descriptor, so the file read is the file checked.
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(`master key file ${path} is not a regular file`);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
      throw new ConfigError(
        `master key file ${path} is accessible by group or others (mode ${mode}); restrict it with: chmod 600 ${path}`,
      );
    }
    const raw = readFileSync(fd);
    if (raw.length === MASTER_KEY_BYTES) return raw;
    const key = decodeBase64Key(raw.toString('latin1'));
    raw.fill(0);
    if (!key) {
      throw new ConfigError(
        `master key file ${path} must hold exactly ${MASTER_KEY_BYTES} raw bytes or their base64 encoding`,
      );
    }
    return key;
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads the master key named by `ref`. The caller owns the returned buffer and should zero
 * it once the provider has taken its copy.
 */
export function loadMasterKey(ref: string, opts: { baseDir?: string; env?: NodeJS.ProcessEnv } = {}): Buffer {
  const parsed = parseMasterKeyRef(ref);
  if (parsed.kind === 'env') return loadFromEnv(parsed.name, opts.env ?? process.env);
  return loadFromFile(resolveKeyPath(parsed.path, opts.baseDir));
}

function resolveKeyPath(path: string, baseDir: string | undefined): string {
  return isAbsolute(path) ? path : resolve(baseDir ?? process.cwd(), path);
}

/**
 * Writes 32 fresh random bytes to `path` with mode 0600. Fails if the file exists, so an
 * existing master key (and every keystore encrypted under it) is never overwritten.
 */
export function createMasterKeyFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new ConfigError(`master key file ${path} already exists; refusing to overwrite it`, { cause: e });
    }
    throw new ConfigError(`cannot create master key file ${path} (${code ?? 'unknown error'})`, { cause: e });
  }
  const key = randomBytes(MASTER_KEY_BYTES);
  try {
    if (process.platform !== 'win32') fchmodSync(fd, 0o600);
    writeSync(fd, key);
    fsyncSync(fd);
  } finally {
    key.fill(0);
    closeSync(fd);
  }
}

/** The master key helpers as one object, for callers that prefer a single import. */
export const MasterKeySource = {
  parse: parseMasterKeyRef,
  load: loadMasterKey,
  createFile: createMasterKeyFile,
} as const;
