import { describe, expect, it } from 'vitest';
import { startSoftHsm } from '../../support/softhsm.js';

describe('test/support/softhsm', () => {
  it('fails, rather than skips, when softhsm2-util cannot be found', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent-bin';
    try {
      await expect(startSoftHsm()).rejects.toThrow(/softhsm2-util not found.*apt-get install softhsm2/);
    } finally {
      process.env.PATH = path;
    }
  });

  it('gives each run a private config and token dir, and removes it on cleanup', async () => {
    const before = process.env.SOFTHSM2_CONF;
    const hsm = await startSoftHsm({ label: 'support' });
    expect(process.env.SOFTHSM2_CONF).toBe(hsm.conf);
    expect(hsm.conf.startsWith(hsm.dir)).toBe(true);
    expect(hsm.listObjects('secrkey')).toEqual([]);
    await hsm.cleanup();
    expect(process.env.SOFTHSM2_CONF).toBe(before);
    const { existsSync } = await import('node:fs');
    expect(existsSync(hsm.dir)).toBe(false);
  });
});
