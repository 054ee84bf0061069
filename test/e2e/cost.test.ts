import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FOCUS_MANDATORY } from '../../shared/cost/focus.js';

/** `rekey cost estimate`: offline pricing of an exported inventory, as a user runs it. */
const ROOT = resolve(import.meta.dirname, '../..');
const FX = join(ROOT, 'test/fixtures/cost');
const rekey = (...args: string[]) =>
  spawnSync(process.execPath, [join(ROOT, 'bin/rekey.js'), ...args], { encoding: 'utf8' });
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
