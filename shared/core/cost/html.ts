import { createHash } from 'node:crypto';
import { escapeHtml as e } from '../report/html.js';
import type { CostDashboard, DashboardSeries } from './dashboard.js';
import { fmtMoney, fmtQty } from './format.js';
import type { RotationStatus } from './rotation.js';

/**
 * The cost report as one self-contained HTML page: inline CSS, inline SVG charts drawn here,
 * and one small inline script (tooltips, sortable tables) allowed by its hash. The
 * Content-Security-Policy forbids loading anything else, so the page works offline and cannot
 * call out. Every value from the inventory or config is escaped. Chart elements carry their
 * figures in data- attributes (series, period, value), so they can be checked by machine.
 */

const PALETTE = [
  '#0969da',
  '#bf3989',
  '#1a7f37',
  '#bc4c00',
  '#8250df',
  '#9a6700',
  '#0550ae',
  '#cf222e',
  '#57606a',
  '#116329',
  '#6639ba',
  '#953800',
];

const ROTATION_COLORS: Record<RotationStatus, string> = {
  ok: '#1a7f37',
  overdue: '#cf222e',
  no_rotation_rule: '#9a6700',
  unmanaged: '#8c959f',
};
const ROTATION_LABELS: Record<RotationStatus, string> = {
  ok: 'rotated on time',
  overdue: 'rotation overdue',
  no_rotation_rule: 'policy has no rotation rule',
  unmanaged: 'no policy',
};

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1f24;background:#fff;max-width:1100px}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #d0d7de}
.meta{color:#57606a}table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}table.sortable th{cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:1rem;flex-wrap:wrap}.tile{border:1px solid #d0d7de;border-radius:6px;padding:.5rem 1rem;min-width:9rem}
.tile b{display:block;font-size:1.4rem}code{font-size:12px;word-break:break-all}
.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}.ok{color:#1a7f37;font-weight:600}
svg{display:block;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#57606a}
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1rem;margin:.25rem 0 1rem;font-size:12px}
.legend span{display:inline-flex;align-items:center;gap:.3rem}.legend i{width:10px;height:10px;display:inline-block;border-radius:2px}
.tip{position:absolute;background:#1b1f24;color:#fff;padding:.2rem .45rem;border-radius:4px;font-size:12px;pointer-events:none;white-space:nowrap}
@media print{body{margin:0}.tip{display:none}}
`;

/** Kept constant so its hash, and with it the page's CSP, never changes. */
const SCRIPT = `(function(){
var tip=document.getElementById('tip');
document.addEventListener('mousemove',function(ev){
var t=ev.target,l=t&&t.getAttribute&&t.getAttribute('data-label');
if(!l){tip.hidden=true;return;}
tip.textContent=l;tip.hidden=false;tip.style.left=(ev.pageX+12)+'px';tip.style.top=(ev.pageY+12)+'px';
});
Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),function(table){
Array.prototype.forEach.call(table.querySelectorAll('th'),function(th,col){
th.addEventListener('click',function(){
var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows),asc=th.getAttribute('data-dir')!=='asc';
rows.sort(function(a,b){
var x=a.cells[col].getAttribute('data-sort')||a.cells[col].textContent,y=b.cells[col].getAttribute('data-sort')||b.cells[col].textContent;
var nx=parseFloat(x),ny=parseFloat(y),c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});
th.setAttribute('data-dir',asc?'asc':'desc');
});});});
document.body.setAttribute('data-ready','1');
})();`;

const SCRIPT_HASH = createHash('sha256').update(SCRIPT, 'utf8').digest('base64');

/** The Content-Security-Policy of the page: nothing but its own inline style and script. */
export const COST_REPORT_CSP = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${SCRIPT_HASH}'; base-uri 'none'; form-action 'none'`;

const num = (v: number) => String(Math.round(v * 1e6) / 1e6);
/** Money on the page is shown to the cent; exact amounts stay in data-value attributes. */
const cents = (v: number, currency: string) => fmtMoney(Math.round(v * 100) / 100, currency);

/** A round axis step near max/4: 1, 2 or 5 times a power of ten. */
function niceStep(max: number): number {
  if (max <= 0) return 1;
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

function legend(series: { name: string; color: string }[]): string {
  return `<div class="legend">${series
    .map((s) => `<span><i style="background:${s.color}"></i>${e(s.name)}</span>`)
    .join('')}</div>`;
}

/** Stacked monthly bars; forecast months are drawn lighter, after a dashed line. */
function stackedBars(id: string, d: CostDashboard, series: DashboardSeries[]): string {
  const W = 860;
  const H = 300;
  const left = 64;
  const right = 12;
  const top = 16;
  const bottom = 36;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const n = d.periods.length;
  const sums = d.periods.map((_, i) => series.reduce((s, x) => s + x.values[i]!, 0));
  const step = niceStep(Math.max(...sums, 0));
  const max = Math.max(step * Math.ceil(Math.max(...sums, 0) / step), step);
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const slot = plotW / Math.max(n, 1);
  const bw = Math.max(4, slot * 0.66);
  const money = (v: number) => cents(v, d.currency);
  const parts: string[] = [];
  for (let t = 0; t <= max + 1e-9; t += step) {
    parts.push(
      `<line x1="${left}" x2="${W - right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#eaeef2"/>`,
      `<text x="${left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${e(money(t))}</text>`,
    );
  }
  const colors = new Map(series.map((s, i) => [s.name, PALETTE[i % PALETTE.length]!]));
  d.periods.forEach((p, i) => {
    const x = left + i * slot + (slot - bw) / 2;
    let base = 0;
    for (const s of series) {
      const v = s.values[i]!;
      if (v <= 0) continue;
      const y0 = y(base);
      const y1 = y(base + v);
      base += v;
      const label = `${s.name}, ${p.period}${p.kind === 'forecast' ? ' (forecast)' : ''}: ${money(v)}${s.partial[i] ? ' + unknown' : ''}`;
      parts.push(
        `<rect class="bar" data-series="${e(s.name)}" data-period="${p.period}" data-kind="${p.kind}" data-value="${num(v)}"${s.partial[i] ? ' data-partial="1"' : ''} x="${x.toFixed(1)}" y="${y1.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(0.5, y0 - y1).toFixed(1)}" fill="${colors.get(s.name)}"${p.kind === 'forecast' ? ' fill-opacity="0.45"' : ''} data-label="${e(label)}"><title>${e(label)}</title></rect>`,
      );
    }
    parts.push(
      `<text x="${(x + bw / 2).toFixed(1)}" y="${H - bottom + 14}" text-anchor="middle">${p.period}</text>`,
      `<text class="sum" data-period="${p.period}" data-value="${num(sums[i]!)}" x="${(x + bw / 2).toFixed(1)}" y="${(y(sums[i]!) - 4).toFixed(1)}" text-anchor="middle">${sums[i]! > 0 ? e(money(sums[i]!)) : ''}</text>`,
    );
  });
  const firstForecast = d.periods.findIndex((p) => p.kind === 'forecast');
  if (firstForecast > 0) {
    const x = left + firstForecast * slot;
    parts.push(
      `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${top}" y2="${H - bottom}" stroke="#8c959f" stroke-dasharray="4 3"/>`,
      `<text x="${(x + 4).toFixed(1)}" y="${top + 10}">forecast</text>`,
    );
  }
  return `<svg id="${id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${e(id)}">${parts.join('')}</svg>${legend(series.map((s) => ({ name: s.name, color: colors.get(s.name)! })))}`;
}

function topKeysChart(d: CostDashboard): string {
  const rows = d.topKeys;
  if (rows.length === 0) return '<p>No keys.</p>';
  const W = 860;
  const rowH = 24;
  const labelW = 300;
  const H = rows.length * rowH + 8;
  const max = Math.max(...rows.map((r) => r.known), 0) || 1;
  const money = (v: number) => cents(v, d.currency);
  const bars = rows.map((r, i) => {
    const w = ((W - labelW - 110) * r.known) / max;
    const yy = i * rowH + 4;
    const name = r.name ?? r.ref;
    const label = `${name} (${r.provider}, ${r.policy}): ${money(r.known)}${r.total === null ? ' + unknown' : ''}`;
    return (
      `<text x="${labelW - 8}" y="${yy + 15}" text-anchor="end">${e(name.length > 44 ? `…${name.slice(-43)}` : name)}</text>` +
      `<rect class="bar" data-series="${e(r.provider)}" data-key="${e(r.ref)}" data-value="${num(r.known)}" x="${labelW}" y="${yy + 3}" width="${Math.max(0.5, w).toFixed(1)}" height="${rowH - 8}" fill="${PALETTE[i % PALETTE.length]}" data-label="${e(label)}"><title>${e(label)}</title></rect>` +
      `<text x="${(labelW + w + 6).toFixed(1)}" y="${yy + 15}">${e(money(r.known))}${r.total === null ? ' +?' : ''}</text>`
    );
  });
  return `<svg id="chart-top-keys" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="top keys">${bars.join('')}</svg>`;
}

function rotationChart(d: CostDashboard): string {
  if (d.rotation.length === 0) return '<p>No keys.</p>';
  const W = 860;
  const rowH = 26;
  const labelW = 200;
  const H = d.rotation.length * rowH + 8;
  const statuses = Object.keys(ROTATION_COLORS) as RotationStatus[];
  const rows = d.rotation.map((r, i) => {
    const total = statuses.reduce((s, k) => s + r.counts[k], 0) || 1;
    let x = labelW;
    const yy = i * rowH + 4;
    const segs = statuses
      .filter((k) => r.counts[k] > 0)
      .map((k) => {
        const w = ((W - labelW - 20) * r.counts[k]) / total;
        const label = `${r.policy}: ${r.counts[k]} key(s) ${ROTATION_LABELS[k]}`;
        const out = `<rect class="bar" data-series="${k}" data-policy="${e(r.policy)}" data-value="${r.counts[k]}" x="${x.toFixed(1)}" y="${yy + 3}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${ROTATION_COLORS[k]}" data-label="${e(label)}"><title>${e(label)}</title></rect>`;
        x += w;
        return out;
      });
    return `<text x="${labelW - 8}" y="${yy + 16}" text-anchor="end">${e(r.policy)}</text>${segs.join('')}`;
  });
  return (
    `<svg id="chart-rotation" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="rotation compliance">${rows.join('')}</svg>` +
    legend(statuses.map((k) => ({ name: ROTATION_LABELS[k], color: ROTATION_COLORS[k] })))
  );
}

export function costReportHtml(d: CostDashboard): string {
  const money = (v: number) => cents(v, d.currency);
  const s = d.summary;
  const monthText = s.monthTotal === null ? `${money(s.monthKnown)} + unknown` : money(s.monthTotal);
  const forecastMonths = d.periods.filter((p) => p.kind === 'forecast').length;
  const keyRows = d.topKeys
    .map(
      (k) =>
        `<tr><td><code>${e(k.ref)}</code>${k.name ? `<br>${e(k.name)}` : ''}</td><td>${e(k.provider)}</td><td>${e(k.policy)}</td>` +
        `<td class="num" data-sort="${num(k.known)}">${e(money(k.known))}${k.total === null ? ' <span class="warn">+ unknown</span>' : ''}</td>` +
        `<td class="num">${k.billableVersions}</td><td>${Object.entries(k.byPart)
          .map(([part, v]) => `${e(part)} ${e(money(v!))}`)
          .join(', ')}</td></tr>`,
    )
    .join('');
  const findingRows = d.findings
    .map(
      (f) =>
        `<tr><td class="${f.severity === 'critical' ? 'bad' : f.severity === 'warning' ? 'warn' : ''}">${e(f.severity)}</td><td>${e(f.kind)}</td>` +
        `<td>${f.keyRef ? `<code>${e(f.keyRef)}</code>` : e(f.account ?? '')}${f.version !== undefined ? ` version ${e(f.version)}` : ''}</td>` +
        `<td>${e(f.message)}</td><td class="num" data-sort="${f.monthlySaving ?? -1}">${f.monthlySaving === null ? 'unknown' : e(cents(f.monthlySaving, f.currency))}</td></tr>`,
    )
    .join('');
  const overdueRows = d.overdue
    .map(
      (o) =>
        `<tr><td><code>${e(o.ref)}</code>${o.name ? `<br>${e(o.name)}` : ''}</td><td>${e(o.policy)}</td><td class="num">${o.ageDays}</td><td>${e(o.dueAt.slice(0, 10))}</td></tr>`,
    )
    .join('');
  const totalsRows = d.totals
    .map(
      (t) =>
        `<tr><td>${t.period}</td><td>${t.kind}</td><td class="num" data-sort="${num(t.known)}">${e(money(t.known))}${t.total === null ? ' <span class="warn">+ unknown</span>' : ''}</td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${COST_REPORT_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${e(d.title)}</title><style>${CSS}</style></head>
<body data-ready="0">
<h1>${e(d.title)}</h1>
<p class="meta">${e(d.source)} &middot; as of ${e(d.generatedAt)} &middot; prices: catalog ${e(d.catalogVersion)}, overrides <code>${e(d.overrideDigest)}</code>, ${e(d.currency)}</p>
<div class="tiles">
<div class="tile"><b id="tile-keys">${s.keys}</b>keys</div>
<div class="tile"><b id="tile-month" data-value="${num(s.monthKnown)}">${e(monthText)}</b>${e(d.currentPeriod)}</div>
<div class="tile"><b id="tile-forecast" data-value="${num(s.forecastKnown)}">${e(money(s.forecastKnown))}</b>next ${forecastMonths} month(s), forecast</div>
<div class="tile"><b id="tile-findings" class="${s.findings ? 'warn' : 'ok'}">${s.findings}</b>findings, ${e(money(s.monthlySavings))}/month to save</div>
<div class="tile"><b id="tile-overdue" class="${s.overdue ? 'bad' : 'ok'}">${s.overdue}</b>rotations overdue</div>
</div>
<h2>Cost by provider</h2>
${stackedBars('chart-provider', d, d.byProvider)}
<h2>Cost by policy</h2>
${stackedBars('chart-policy', d, d.byPolicy)}
<table class="sortable"><thead><tr><th>Month</th><th>Kind</th><th>Cost</th></tr></thead><tbody>${totalsRows}</tbody></table>
<h2>Top keys, ${e(d.currentPeriod)}</h2>
${topKeysChart(d)}
<table class="sortable" id="top-keys"><thead><tr><th>Key</th><th>Provider</th><th>Policy</th><th>Cost</th><th>Billed versions</th><th>Parts</th></tr></thead><tbody>${keyRows}</tbody></table>
<h2>Findings</h2>
${
  findingRows
    ? `<table class="sortable" id="findings"><thead><tr><th>Severity</th><th>Finding</th><th>Key or account</th><th>Detail</th><th>Saving a month</th></tr></thead><tbody>${findingRows}</tbody></table>`
    : '<p>No findings.</p>'
}
<h2>Rotation compliance</h2>
${rotationChart(d)}
${
  overdueRows
    ? `<table class="sortable" id="overdue"><thead><tr><th>Key</th><th>Policy</th><th>Primary age (days)</th><th>Was due</th></tr></thead><tbody>${overdueRows}</tbody></table>`
    : '<p>No rotation is overdue.</p>'
}
${d.assumptions.length ? `<h2>Forecast assumptions</h2><ul>${d.assumptions.map((a) => `<li>${e(a)}</li>`).join('')}</ul>` : ''}
<p class="meta">Amounts are list prices from the catalog (with any overrides) for ${fmtQty(s.keys)} key(s); "+ unknown" marks figures that leave out parts of unknown price.</p>
<div id="tip" class="tip" hidden></div>
<script>${SCRIPT}</script>
</body></html>
`;
}
