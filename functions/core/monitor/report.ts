import type { Baseline } from './baseline.ts';
import type { DriftResult } from './drift.ts';
import type { DriftPolicy } from './policy.ts';

/** report.json of one drift run, under `monitoring/<model>/<version>/<date>/`. */
export interface DriftReport extends DriftResult {
  model: string;
  version: string;
  date: string;
  /** The capture days read, oldest first. */
  days: string[];
  captureObjects: number;
  records: number;
  baseline: { created: string; dataset: Baseline['dataset']; rows: number };
  policy: DriftPolicy;
  created: string;
}

export const monitoringPrefix = (model: string, version: string, date: string) => `monitoring/${model}/${version}/${date}/`;

const esc = (value: unknown) =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const num = (v: number | undefined, digits = 3) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits));

/** report.html: one self-contained page (inline CSS, no script), like the evaluation report. */
export function renderDriftHtml(report: DriftReport): string {
  const verdict = !report.enough
    ? `not enough data: ${report.samples} captured rows, the policy needs ${report.policy.minSamples}`
    : report.drift
      ? `drift in ${report.features.filter((f) => f.drifted).length} of ${report.features.length} features`
      : 'no drift';
  const rows = report.features
    .map(
      (f) =>
        `<tr class="${f.drifted ? 'drift' : ''}"><td>${esc(f.name)}</td><td>${f.group}</td><td>${f.kind}</td><td>${f.samples}</td>` +
        `<td>${num(f.psi)}</td><td>${num(f.jensenShannon)}</td><td>${f.ks ? `${num(f.ks.statistic)} (p ${f.ks.pValue.toExponential(2)})` : '–'}</td>` +
        `<td>${num(f.baselineMean)}</td><td>${num(f.capturedMean)}</td><td>${esc(f.reasons.join('; ') || '–')}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift: ${esc(report.model)} ${esc(report.version)} ${esc(report.date)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
td:first-child,th:first-child,td:last-child{text-align:left}tr.drift{background:#fee2e2}.verdict{font-size:1.3em;font-weight:600}</style></head>
<body><h1>Drift report: ${esc(report.model)} version ${esc(report.version)}</h1>
<p class="verdict">${esc(verdict)}</p>
<p>Capture ${esc(report.days.join(', '))}: ${report.records} records in ${report.captureObjects} objects, ${report.samples} rows.
Baseline from data set ${esc(report.baseline.dataset.name)} (${report.baseline.rows} rows, ${esc(report.baseline.created)}).
Thresholds: PSI ≥ ${report.policy.psi}, Jensen-Shannon ≥ ${report.policy.jensenShannon} bits, KS p &lt; ${report.policy.ksAlpha} over the numeric features.</p>
${report.missing.length ? `<p>Baseline features not captured: ${esc(report.missing.join(', '))}</p>` : ''}
<table><thead><tr><th>feature</th><th>group</th><th>kind</th><th>rows</th><th>PSI</th><th>JS (bits)</th><th>KS</th><th>baseline mean</th><th>captured mean</th><th>why</th></tr></thead>
<tbody>
${rows}
</tbody></table></body></html>
`;
}
