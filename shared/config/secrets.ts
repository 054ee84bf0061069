import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';

/**
 * Resolves a secret reference (`env:NAME` or `file:PATH`) to bytes. The caller owns the buffer
 * and zeroes it when done. Messages name the reference, never the value.
 */
export function resolveSecret(ref: string, baseDir: string, what: string): Buffer {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const v = process.env[name];
    if (v === undefined || v === '')
      throw new ConfigError(`${what}: environment variable ${name} is not set`);
    return Buffer.from(v, 'utf8');
  }
  if (ref.startsWith('file:')) {
    const p = ref.slice(5);
    const path = isAbsolute(p) ? p : resolve(baseDir, p);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      throw new ConfigError(`${what}: file ${path} does not exist`);
    }
    if ((st.mode & 0o077) !== 0) {
      throw new ConfigError(`${what}: ${path} is readable by group or others; run: chmod 600 ${path}`);
    }
    const buf = readFileSync(path);
    // A trailing newline from `echo` is not part of a PIN or URL.
    let end = buf.length;
    while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
    if (end === buf.length) return buf;
    const out = Buffer.from(buf.subarray(0, end));
    buf.fill(0);
    return out;
  }
  throw new ConfigError(
    `${what}: "${ref.split(':')[0]}:..." is not a secret reference (use env:NAME or file:PATH)`,
  );
}
