import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CostDashboard } from '../../shared/core/cost/dashboard.js';

/**
 * `rekey report cost --html`: the page is written by the command, then opened in headless
 * Chromium (Debian's /usr/bin/chromium, which scripts/test.sh installs), which checks that
 * the charts rendered with the inventory's figures and that the page asked for nothing.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const FX = join(ROOT, 'test/fixtures/cost');
const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  process.stderr.write(
    `skipping the cost report browser test: ${CHROMIUM} not found (scripts/test.sh installs Debian's chromium package)\n`,
  );
}

const CONFIG = `version: 1
providers:
  local: { type: local }
policies:
  - name: pci
    match: { tags: { data-class: pci } }
    rotate: { every: P90D }
  - name: payments-gcp
    match: { name: [orders-kek] }
    rotate: { every: P30D }
    retire: { destroyAfter: P30D }
`;

let dir: string;
let html: string;
let data: CostDashboard;
let browser: BrowserContext | undefined;

function rekey(args: string[]) {
  return spawnSync(process.execPath, [join(ROOT, 'bin/rekey.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, REKEY_CONFIG: '' },
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rekey-report-'));
  writeFileSync(join(dir, 'rekey.yaml'), CONFIG);
  html = join(dir, 'cost report.html');
  const args = [
    '--config',
    join(dir, 'rekey.yaml'),
    '--json',
    'report',
    'cost',
    '--inventory',
    join(FX, 'inventory.json'),
    '--usage',
    join(FX, 'usage.json'),
    '--html',
    html,
  ];
  const r = rekey(args);
  if (r.status !== 0) throw new Error(`rekey report cost failed: ${r.stderr}`);
  data = JSON.parse(r.stdout) as CostDashboard;
  if (haveChromium) {
    browser = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'profile-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }
});

afterAll(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('rekey report cost', () => {
  it('writes one page with every part of the report', () => {
    const page = readFileSync(html, 'utf8');
    for (const id of [
      'chart-provider',
      'chart-policy',
      'chart-top-keys',
      'chart-rotation',
      'findings',
      'overdue',
    ])
      expect(page).toContain(`id="${id}"`);
    expect(data.currentPeriod).toBe('2026-12');
    expect(data.byPolicy.map((s) => s.name).sort()).toEqual(['(no policy)', 'payments-gcp', 'pci']);
  });

  it('bad flags change nothing and say why', () => {
    const out = join(dir, 'never.html');
    const r = rekey([
      'report',
      'cost',
      '--inventory',
      join(FX, 'inventory.json'),
      '--html',
      out,
      '--history',
      '0',
    ]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--history must be a whole number from 1 to 36, got "0"');
    expect(existsSync(out)).toBe(false);
  });

  it.skipIf(!haveChromium)(
    'renders offline in Chromium: charts drawn from the inventory, the script ran, no request left the page',
    async () => {
      const page = await browser!.newPage();
      const requests: string[] = [];
      const problems: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      // Anything but the file itself is refused (and would be recorded above).
      await page.route('**/*', (route) =>
        route.request().url().startsWith('file:') ? route.continue() : route.abort(),
      );
      const url = pathToFileURL(html).href;
      await page.goto(url);
      await page.waitForSelector('body[data-ready="1"]', { timeout: 10_000 });
      expect(requests).toEqual([url]);
      expect(problems).toEqual([]);

      // Cost by provider: one bar per provider and month with a cost, drawn with a size.
      const bars = await page.$$eval('#chart-provider rect.bar', (els) =>
        els.map((el) => {
          const box = el.getBoundingClientRect();
          return {
            series: el.getAttribute('data-series')!,
            period: el.getAttribute('data-period')!,
            value: Number(el.getAttribute('data-value')),
            width: box.width,
            height: box.height,
          };
        }),
      );
      expect(new Set(bars.map((b) => b.series))).toEqual(
        new Set(['aws-kms', 'pkcs11', 'gcp-kms', 'azure-kv']),
      );
      for (const b of bars) {
        expect(b.width).toBeGreaterThan(0);
        expect(b.height).toBeGreaterThan(0);
      }
      data.periods.forEach((p, i) => {
        const sum = bars.filter((b) => b.period === p.period).reduce((s, b) => s + b.value, 0);
        expect(sum).toBeCloseTo(data.totals[i]!.known, 4);
      });
      // Taller bars for bigger amounts: November's AWS bar against its pkcs11 bar (pool shares).
      const nov = (s: string) => bars.find((b) => b.period === '2026-11' && b.series === s)!;
      expect(nov('aws-kms').value).toBeGreaterThan(nov('gcp-kms').value);
      expect(nov('aws-kms').height).toBeGreaterThan(nov('gcp-kms').height);

      // Cost by policy uses the config's policies.
      const policies = await page.$$eval('#chart-policy rect.bar', (els) => [
        ...new Set(els.map((el) => el.getAttribute('data-series'))),
      ]);
      expect(policies.sort()).toEqual(['(no policy)', 'payments-gcp', 'pci']);

      // Top keys, most expensive first; findings; rotation compliance per policy.
      const top = await page.$$eval('#chart-top-keys rect.bar', (els) =>
        els.map((el) => el.getAttribute('data-key')),
      );
      expect(top).toEqual(data.topKeys.map((k) => k.ref));
      expect(await page.$$eval('#findings tbody tr', (rows) => rows.length)).toBe(data.findings.length);
      const rotation = await page.$$eval('#chart-rotation rect.bar', (els) =>
        els.map(
          (el) =>
            `${el.getAttribute('data-policy')}:${el.getAttribute('data-series')}=${el.getAttribute('data-value')}`,
        ),
      );
      expect(rotation).toContain('payments-gcp:overdue=1');
      expect(await page.textContent('#tile-overdue')).toBe(String(data.summary.overdue));

      // The inline script works under the page's CSP: hovering a bar shows its figure.
      await page.hover('#chart-provider rect.bar[data-series="aws-kms"][data-period="2026-11"]');
      expect(await page.isVisible('#tip')).toBe(true);
      expect(await page.textContent('#tip')).toContain('aws-kms, 2026-11: $');
      // Sorting the top-keys table by cost, ascending, puts the cheapest first.
      await page.click('#top-keys th:nth-child(4)');
      const firstCost = await page.$eval('#top-keys tbody tr td:nth-child(4)', (td) =>
        Number(td.getAttribute('data-sort')),
      );
      expect(firstCost).toBeCloseTo(Math.min(...data.topKeys.map((k) => k.known)), 6);
      expect(requests).toEqual([url]);
      await page.close();
    },
  );
});
