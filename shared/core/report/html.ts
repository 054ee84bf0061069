import type { ComplianceReport, KeyReport, Violation } from './compliance.js';

/**
 * The report as one self-contained HTML page: inline CSS, no scripts, no images, no fonts, no
 * links to anywhere, and a Content-Security-Policy that forbids loading anything, so it can be
 * attached to an audit ticket and opened offline. Every value from the inventory, config or
 * audit log is escaped.
 */

export function escapeHtml(s: unknown): string {
  return String(s ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid #d0d7de}
h3{font-size:1rem;margin:1.5rem 0 .25rem;word-break:break-all}
.meta{color:#57606a}table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}
.tiles{display:flex;gap:1rem;flex-wrap:wrap}.tile{border:1px solid #d0d7de;border-radius:6px;padding:.5rem 1rem;min-width:8rem}
.tile b{display:block;font-size:1.4rem}code{font-size:12px;word-break:break-all}
@media print{body{margin:0}h2{break-after:avoid}}
`;

const e = escapeHtml;

function status(ok: boolean, okText = 'compliant', badText = 'violations'): string {
  return ok ? `<span class="ok">${okText}</span>` : `<span class="bad">${badText}</span>`;
}

function violationRows(vs: Violation[]): string {
  return vs
    .map(
      (v) =>
        `<tr><td class="${v.severity === 'critical' ? 'bad' : 'warn'}">${e(v.severity)}</td><td>${e(v.kind)}</td><td>${e(v.message)}</td><td>${v.references.map((r) => `${e(r.standard)} ${e(r.ref)}`).join('<br>')}</td></tr>`,
    )
    .join('');
}

function keySection(k: KeyReport): string {
  const versions = k.versions
    .map(
      (v) =>
        `<tr><td><code>${e(v.id)}</code>${v.primary ? ' (primary)' : ''}${v.compromised ? ' <span class="bad">compromised</span>' : ''}</td><td>${e(v.state)}</td><td>${e(v.createdAt)}</td><td class="num">${v.deks}</td></tr>`,
    )
    .join('');
  const rotations = k.rotationsInPeriod.length
    ? `<p>Rotations in period: ${k.rotationsInPeriod
        .map(
          (r) =>
            `${e(r.at)} by ${e(r.actor)}${r.onDemand ? ' (on demand)' : ''}${r.inWindow === false ? ' <span class="warn">outside window</span>' : ''}`,
        )
        .join('; ')}</p>`
    : '<p>No rotation in the period.</p>';
  const approvals = k.approvals.length
    ? `<p>Approvals: ${k.approvals
        .map(
          (a) =>
            `${e(a.at)} ${e(a.action)}${a.version ? ` version ${e(a.version)}` : ''}${a.approvalsRequired !== undefined ? ` (${a.approvalsRequired} required)` : ''} by ${e(a.actor)}`,
        )
        .join('; ')}</p>`
    : '';
  const violations = k.violations.length
    ? `<table><tr><th>Severity</th><th>Finding</th><th>Detail</th><th>Reference</th></tr>${violationRows(k.violations)}</table>`
    : '';
  return `<section><h3>${e(k.name)} ${status(k.compliant)}</h3>
<p class="meta"><code>${e(k.ref)}</code> &middot; provider ${e(k.provider)} &middot; ${e(k.protection)} &middot; ${e(k.algorithm)} &middot; policy ${e(k.policy ?? 'none')}</p>
<p>Last rotation ${e(k.lastRotation)} (${k.ageDays} days ago${k.maxAgeDays !== null ? `, policy maximum ${k.maxAgeDays} days` : ''}) &middot; re-wrap ${e(k.rewrap.status)}: ${k.rewrap.onPrimary} of ${k.rewrap.total} DEKs on the primary</p>
<table><tr><th>Version</th><th>State</th><th>Created</th><th>DEKs</th></tr>${versions}</table>
${rotations}${approvals}${violations}</section>`;
}

export function toHtml(report: ComplianceReport): string {
  const s = report.summary;
  const policies = report.policies
    .map(
      (p) =>
        `<tr><td>${e(p.name)}</td><td>${e(p.rotateEvery ?? '-')}</td><td>${e(p.window ?? '-')}</td><td>${e(
          p.require
            ? [p.require.protection, p.require.algorithms?.join('/')].filter(Boolean).join(', ') || '-'
            : '-',
        )}</td><td class="num">${p.keys}</td><td class="num">${p.compliant}</td><td class="num">${p.violations}</td></tr>`,
    )
    .join('');
  const kinds = Object.entries(s.byKind)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `<tr><td>${e(k)}</td><td class="num">${n}</td></tr>`)
    .join('');
  const integrity = report.audit.integrity
    ? `<p>Audit log integrity: ${status(report.audit.integrity.ok, 'verified', 'FAILED')} (${report.audit.integrity.records} records, ${report.audit.integrity.checkpoints} signed checkpoints${report.audit.integrity.unsignedRecords ? `, ${report.audit.integrity.unsignedRecords} records after the last one` : ''})</p>${
        report.audit.integrity.problems.length
          ? `<ul>${report.audit.integrity.problems.map((p) => `<li>${e(p)}</li>`).join('')}</ul>`
          : ''
      }`
    : '<p>Audit log integrity: not verified for this report.</p>';
  const refs = report.references
    .map((r) => `<tr><td>${e(r.standard)}</td><td>${e(r.ref)}</td><td>${e(r.topic)}</td></tr>`)
    .join('');
  const actions = Object.entries(report.audit.actions)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([a, n]) => `<tr><td><code>${e(a)}</code></td><td class="num">${n}</td></tr>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(report.title)}</title><style>${CSS}</style></head>
<body>
<h1>${e(report.title)}</h1>
<p class="meta">Period ${e(report.period.from)} to ${e(report.period.to)} &middot; state as of ${e(report.asOf)} &middot; config ${e(report.configFile)} (<code>${e(report.configDigest)}</code>)</p>
<div class="tiles"><div class="tile"><b>${s.keys}</b>keys</div><div class="tile"><b>${s.managed}</b>under a policy</div><div class="tile"><b>${s.compliant}</b>compliant</div><div class="tile"><b class="${s.violations ? 'bad' : 'ok'}">${s.violations}</b>violations</div><div class="tile"><b>${s.rotationsInPeriod}</b>rotations</div><div class="tile"><b>${s.approvalsInPeriod}</b>approval events</div></div>
${kinds ? `<h2>Violations by kind</h2><table><tr><th>Finding</th><th>Count</th></tr>${kinds}</table>` : ''}
<h2>Policies</h2>
<table><tr><th>Policy</th><th>Rotate every</th><th>Window</th><th>Requires</th><th>Keys</th><th>Compliant</th><th>Violations</th></tr>${policies}</table>
<h2>Keys</h2>
${report.keys.map(keySection).join('\n')}
<h2>Audit trail</h2>
${integrity}
<p>${report.audit.recordsInPeriod} audit records in the period.</p>
${actions ? `<table><tr><th>Action</th><th>Records</th></tr>${actions}</table>` : ''}
${refs ? `<h2>References</h2><table><tr><th>Standard</th><th>Clause</th><th>Topic</th></tr>${refs}</table>` : ''}
</body></html>
`;
}
