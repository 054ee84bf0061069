import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../core/errors.js';

/** Where Debian's softhsm2 package puts the module. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * Creates a private SoftHSM2 configuration and token store in `dir` and initialises one token.
 * Returns the config path; SoftHSM finds it through SOFTHSM2_CONF, which the caller sets for
 * every process that opens the token. The PINs are passed to softhsm2-util, never logged.
 */
export function initSoftHsmToken(dir: string, label: string, pin: string, soPin: string): string {
  if (!existsSync(SOFTHSM_MODULE)) {
    throw new ConfigError(
      `SoftHSM2 is not installed (${SOFTHSM_MODULE} is missing): apt-get install softhsm2`,
    );
  }
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { recursive: true, mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`, {
    mode: 0o600,
  });
  try {
    execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin],
      {
        env: { ...process.env, SOFTHSM2_CONF: conf },
        stdio: 'pipe',
      },
    );
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? 'softhsm2-util not found: apt-get install softhsm2'
        : `softhsm2-util could not create token ${label}`,
    );
  }
  return conf;
}
