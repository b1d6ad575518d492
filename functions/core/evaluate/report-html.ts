import type { Interval } from './metrics.ts';
import { ERROR_UNITS, failureText, type ErrorScenario, type EvaluationReport, type VariantReport } from './report.ts';

/**
 * report.html: one self-contained page (inline CSS and SVG, no script, no CDN), so it opens from S3,
 * from an e-mail attachment, or offline, and renders the same everywhere.
 */

const esc = (value: unknown) =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const pct = (v: number | null | undefined, digits = 2) => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${(v * 100).toFixed(digits)}%`);
const ms = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${v.toFixed(3)} ms`);
const fixed = (v: number | null | undefined, digits = 3) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits));
const interval = (i: Interval | undefined, f: (v: number) => string = (v) => pct(v)) =>
  i ? `${f(i.value)} <span class="ci">[${f(i.low)}, ${f(i.high)}]</span>` : '–';
const bytes = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

const COLOURS = { candidate: '#2563eb', baseline: '#f97316', other: '#6b7280' };

function latencyChart(report: EvaluationReport): string {
  const series = [
    { name: `v${report.candidate.version} (candidate)`, colour: COLOURS.candidate, s: report.candidate.singleStream },
    ...(report.baseline ? [{ name: `v${report.baseline.version} (baseline)`, colour: COLOURS.baseline, s: report.baseline.singleStream }] : []),
  ].filter((x) => x.s && x.s.histogram.counts.length > 0);
  const W = 640;
  const H = 260;
  const pad = { l: 50, r: 16, t: 24, b: 40 };
  if (series.length === 0) return emptyChart('chart-latency', 'Latency distribution (single-stream)', 'single-stream not measured');
  const lo = Math.min(...series.map((x) => x.s!.histogram.start));
  const hi = Math.max(...series.map((x) => x.s!.histogram.start + x.s!.histogram.width * x.s!.histogram.counts.length));
  const span = hi > lo ? hi - lo : 1;
  const maxShare = Math.max(...series.map((x) => Math.max(...x.s!.histogram.counts) / x.s!.count));
  const sx = (v: number) => pad.l + ((v - lo) / span) * (W - pad.l - pad.r);
  const sy = (share: number) => H - pad.b - (share / maxShare) * (H - pad.t - pad.b);
  const bars = series
    .map((x) =>
      x.s!.histogram.counts
        .map((c, i) => {
          if (c === 0) return '';
          const x0 = sx(x.s!.histogram.start + i * x.s!.histogram.width);
          const x1 = sx(x.s!.histogram.start + (i + 1) * x.s!.histogram.width);
          const y = sy(c / x.s!.count);
          return `<rect class="bar" x="${x0.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, x1 - x0 - 1).toFixed(1)}" height="${(H - pad.b - y).toFixed(1)}" fill="${x.colour}" fill-opacity="0.6"><title>${esc(x.name)}: ${c} queries</title></rect>`;
        })
        .join(''),
    )
    .join('');
  const markers = series
    .map((x) =>
      (['p50', 'p99'] as const)
        .map((p) => `<line x1="${sx(x.s![p]).toFixed(1)}" x2="${sx(x.s![p]).toFixed(1)}" y1="${pad.t}" y2="${H - pad.b}" stroke="${x.colour}" stroke-dasharray="4 3"><title>${esc(x.name)} ${p} ${ms(x.s![p])}</title></line>`)
        .join(''),
    )
    .join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => `<text x="${sx(lo + f * span).toFixed(1)}" y="${H - pad.b + 16}" text-anchor="middle">${(lo + f * span).toFixed(2)}</text>`)
    .join('');
  const legend = series.map((x, i) => `<rect x="${pad.l + 10 + i * 200}" y="6" width="12" height="12" fill="${x.colour}"/><text x="${pad.l + 28 + i * 200}" y="16">${esc(x.name)}</text>`).join('');
  return `<figure><figcaption>Latency distribution (single-stream, batch 1; dashed: p50 and p99)</figcaption>
<svg id="chart-latency" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="latency histogram">
${axes(W, H, pad)}${bars}${markers}${ticks}${legend}
<text x="${W / 2}" y="${H - 6}" text-anchor="middle">latency (ms)</text>
<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">share of queries</text>
</svg></figure>`;
}

function axes(W: number, H: number, pad: { l: number; r: number; t: number; b: number }): string {
  return `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#111"/><line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#111"/>`;
}

function emptyChart(id: string, caption: string, why: string): string {
  return `<figure><figcaption>${esc(caption)}</figcaption><svg id="${id}" class="chart empty" viewBox="0 0 640 60" width="640" height="60"><text x="320" y="34" text-anchor="middle">${esc(why)}</text></svg></figure>`;
}

function variantsChart(report: EvaluationReport): string {
  const points = report.variants.filter((v) => v.top1 !== null && v.p50Ms !== null) as { version: string; top1: number; p50Ms: number; reportKey: string | null }[];
  if (points.length === 0) return emptyChart('chart-variants', 'Accuracy against latency across variants', 'needs top-1 accuracy and single-stream latency');
  const W = 640;
  const H = 300;
  const pad = { l: 60, r: 24, t: 24, b: 44 };
  const xs = points.map((p) => p.p50Ms);
  const ys = points.map((p) => p.top1);
  const [x0, x1] = padRange(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = padRange(Math.min(...ys), Math.max(...ys));
  const sx = (v: number) => pad.l + ((v - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const sy = (v: number) => H - pad.b - ((v - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const dots = points
    .map((p) => {
      const colour = p.version === report.version ? COLOURS.candidate : p.version === report.baselineVersion ? COLOURS.baseline : COLOURS.other;
      return `<circle class="point" cx="${sx(p.p50Ms).toFixed(1)}" cy="${sy(p.top1).toFixed(1)}" r="7" fill="${colour}"><title>version ${esc(p.version)}: ${pct(p.top1)} at p50 ${ms(p.p50Ms)}</title></circle><text x="${(sx(p.p50Ms) + 10).toFixed(1)}" y="${(sy(p.top1) - 8).toFixed(1)}">v${esc(p.version)}</text>`;
    })
    .join('');
  const ticks = [0, 0.5, 1]
    .map(
      (f) =>
        `<text x="${sx(x0 + f * (x1 - x0)).toFixed(1)}" y="${H - pad.b + 16}" text-anchor="middle">${(x0 + f * (x1 - x0)).toFixed(3)}</text>` +
        `<text x="${pad.l - 6}" y="${(sy(y0 + f * (y1 - y0)) + 4).toFixed(1)}" text-anchor="end">${pct(y0 + f * (y1 - y0), 1)}</text>`,
    )
    .join('');
  return `<figure><figcaption>Top-1 accuracy against single-stream p50 latency, per version (blue: candidate, orange: baseline, grey: other versions' latest reports on this data set)</figcaption>
<svg id="chart-variants" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="accuracy against latency">
${axes(W, H, pad)}${dots}${ticks}
<text x="${W / 2}" y="${H - 8}" text-anchor="middle">p50 latency (ms)</text>
<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">top-1 accuracy</text>
</svg></figure>`;
}

function padRange(lo: number, hi: number): [number, number] {
  const span = hi - lo || Math.abs(hi) * 0.1 || 1;
  return [lo - span * 0.15, hi + span * 0.15];
}

function confusionChart(v: VariantReport): string {
  const matrix = v.classification?.confusion;
  if (!matrix || matrix.length === 0) return emptyChart('chart-confusion', 'Confusion matrix', 'no class labels');
  const n = matrix.length;
  const cell = Math.max(8, Math.min(40, Math.floor(440 / n)));
  const off = 50;
  const W = off + n * cell + 20;
  const H = off + n * cell + 30;
  const rowTotals = matrix.map((r) => r.reduce((a, b) => a + b, 0) || 1);
  const cells = matrix
    .map((row, a) =>
      row
        .map((count, p) => {
          const share = count / rowTotals[a]!;
          const fill = a === p ? `rgba(37,99,235,${(0.1 + 0.9 * share).toFixed(3)})` : `rgba(220,38,38,${Math.min(1, 0.05 + 4 * share).toFixed(3)})`;
          const label = n <= 20 && count > 0 ? `<text x="${off + p * cell + cell / 2}" y="${off + a * cell + cell / 2 + 4}" text-anchor="middle" class="cell-label">${count}</text>` : '';
          return `<rect class="cell" x="${off + p * cell}" y="${off + a * cell}" width="${cell}" height="${cell}" fill="${count === 0 ? '#f8fafc' : fill}" stroke="#e2e8f0"><title>actual ${a}, predicted ${p}: ${count}</title></rect>${label}`;
        })
        .join(''),
    )
    .join('');
  const labels = n <= 40 ? matrix.map((_, i) => `<text x="${off + i * cell + cell / 2}" y="${off - 6}" text-anchor="middle">${i}</text><text x="${off - 6}" y="${off + i * cell + cell / 2 + 4}" text-anchor="end">${i}</text>`).join('') : '';
  return `<figure><figcaption>Confusion matrix of version ${esc(v.version)} (rows: actual class, columns: predicted)</figcaption>
<svg id="chart-confusion" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="confusion matrix">
${cells}${labels}<text x="${off + (n * cell) / 2}" y="16" text-anchor="middle">predicted</text><text x="14" y="${off + (n * cell) / 2}" transform="rotate(-90 14 ${off + (n * cell) / 2})" text-anchor="middle">actual</text>
</svg></figure>`;
}

function row(cells: string[], header = false): string {
  const tag = header ? 'th' : 'td';
  return `<tr>${cells.map((c) => `<${tag}>${c}</${tag}>`).join('')}</tr>`;
}

function variantTable(report: EvaluationReport): string {
  const vs = [report.candidate, ...(report.baseline ? [report.baseline] : [])];
  const line = (name: string, f: (v: VariantReport) => string) => row([name, ...vs.map(f)]);
  return `<table><thead>${row(['', ...vs.map((v) => `version ${esc(v.version)}${v.version === report.version ? ' (candidate)' : ' (baseline)'}`)], true)}</thead><tbody>
${line('model size', (v) => bytes(v.sizeBytes))}
${line('lineage', (v) => (v.lineage ? `${esc(v.lineage.method)} of v${esc(v.lineage.sourceVersion)}` : '–'))}
${line('top-1 accuracy [95% CI]', (v) => interval(v.classification?.top1))}
${line(`top-${report.options.topK as number} accuracy`, (v) => interval(v.classification?.topK))}
${line('macro F1', (v) => fixed(v.classification?.macroF1, 4))}
${line('MAE', (v) => interval(v.regression?.mae, (x) => fixed(x, 5)))}
${line('RMSE', (v) => interval(v.regression?.rmse, (x) => fixed(x, 5)))}
${line('single-stream p50 / p90 / p99', (v) => (v.singleStream ? `${ms(v.singleStream.p50)} / ${ms(v.singleStream.p90)} / ${ms(v.singleStream.p99)}` : '–'))}
${line('offline throughput', (v) => (v.offline ? v.offline.map((o) => `batch ${o.batchSize}: ${o.samplesPerSecond.toFixed(1)}/s`).join('<br>') : '–'))}
${line('server', (v) => (v.server ? `target ${v.server.targetRate}/s, achieved ${v.server.achievedRate.toFixed(1)}/s, p99 ${ms(v.server.p99)}` : '–'))}
${line('cold start (create + first run)', (v) => (v.coldStart ? `${ms(v.coldStart.createMs)} + ${ms(v.coldStart.firstRunMs)}` : '–'))}
${line('session memory', (v) => (v.coldStart ? bytes(v.coldStart.sessionRssBytes) : '–'))}
${(Object.keys(ERROR_UNITS) as ErrorScenario[])
  .filter((k) => vs.some((v) => v.errors[k]))
  .map((k) => line(`errors: ${ERROR_UNITS[k]}`, (v) => (v.errors[k] ? `${v.errors[k].errors} of ${v.errors[k].inferences} (${pct(v.errors[k].rate)})` : '–')))
  .join('\n')}
</tbody></table>`;
}

/** The first failures of each version and scenario, with their reasons: a failure is shown, never only counted. */
function failuresSection(report: EvaluationReport): string {
  const items = [report.candidate, ...(report.baseline ? [report.baseline] : [])].flatMap((v) =>
    (Object.entries(v.errors) as [ErrorScenario, NonNullable<VariantReport['errors'][ErrorScenario]>][])
      .filter(([, e]) => e.errors > 0)
      .map(([k, e]) => `<li>version ${esc(v.version)}, ${esc(ERROR_UNITS[k])}: ${e.errors} of ${e.inferences} failed; first ${e.failures.length}:<ul>${e.failures.map((f) => `<li class="failure">${esc(failureText(f))}</li>`).join('')}</ul></li>`),
  );
  if (items.length === 0) return '';
  return `<h2 id="failures">Failures</h2><ul>${items.join('\n')}</ul>`;
}

export function renderReportHtml(report: EvaluationReport): string {
  const gate = report.gate;
  const cmp = report.comparison;
  const comparison = cmp
    ? `<h2>Candidate against baseline (version ${esc(report.baselineVersion)})</h2><table><tbody>
${row(['top-1 change [95% CI, paired bootstrap]', interval(cmp.top1Delta)])}
${row([`top-${report.options.topK as number} change`, interval(cmp.topKDelta)])}
${cmp.maeDelta ? row(['MAE change', interval(cmp.maeDelta, (x) => fixed(x, 5))]) : ''}
${row([
  'single-stream speedup (median of interleaved baseline / candidate pairs) [interval]',
  cmp.speedupInterval
    ? `${cmp.speedupInterval.value.toFixed(3)}x <span class="ci">[${cmp.speedupInterval.low.toFixed(3)}x, ${cmp.speedupInterval.high.toFixed(3)}x] over ${cmp.speedupInterval.pairs} pairs</span>`
    : cmp.speedupUnavailable
      ? `not established: ${esc(cmp.speedupUnavailable)}`
      : '–',
])}
${row(['p99 change', ms(cmp.p99DeltaMs)])}
${row(['offline throughput ratio (largest batch)', cmp.throughputRatio === undefined ? '–' : `${cmp.throughputRatio.toFixed(3)}x`])}
${row(['size ratio', `${cmp.sizeRatio.toFixed(3)}x`])}
${report.agreement ? row(['top-1 agreement', interval(report.agreement.top1Agreement)]) : ''}
${report.agreement ? row(['max / mean absolute output difference', `${report.agreement.maxAbsDiff.toExponential(3)} / ${interval(report.agreement.meanAbsDiff, (x) => x.toExponential(3))}`]) : ''}
</tbody></table>`
    : '';
  const robustness = report.robustness
    ? `<h2>Robustness (first ${report.robustness.rows} rows)</h2><table><thead>${row(['family', 'augmentation', 'strength', 'candidate top-1', ...(report.baseline ? ['baseline top-1', 'change'] : [])], true)}</thead><tbody>
${row(['clean', '–', '–', interval(report.robustness.clean.candidate), ...(report.baseline ? [interval(report.robustness.clean.baseline), ''] : [])])}
${report.robustness.results.map((r) => row([esc(r.family), esc(r.kind), `${r.strength} <span class="ci">${esc(r.unit)}</span>`, interval(r.candidate), ...(report.baseline ? [interval(r.baseline), interval(r.delta)] : [])])).join('\n')}
</tbody></table>`
    : '';
  const perClass = report.candidate.classification
    ? `<details><summary>Per-class precision, recall and F1 (version ${esc(report.version)})</summary><table><thead>${row(['class', 'support', 'precision', 'recall', 'F1'], true)}</thead><tbody>
${report.candidate.classification.perClass.map((c) => row([String(c.class), String(c.support), fixed(c.precision, 4), fixed(c.recall, 4), fixed(c.f1, 4)])).join('\n')}
</tbody></table></details>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation ${esc(report.model)} v${esc(report.version)} on ${esc(report.dataset.name)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#111;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f4f6}
.ci{color:#6b7280;font-size:12px}.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600;color:#fff}
.pass{background:#16a34a}.fail{background:#dc2626}figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}
svg.chart{font-size:11px;background:#fff;border:1px solid #e5e7eb;max-width:100%;height:auto}.cell-label{font-size:9px}
.meta{color:#4b5563}
</style></head><body>
<h1>${esc(report.model)} version ${esc(report.version)} on data set ${esc(report.dataset.name)}</h1>
<p class="meta">evaluation ${esc(report.id)} · ${report.dataset.rows} rows (${esc(report.dataset.labels)}) · baseline ${report.baselineVersion === null ? 'none' : `version ${esc(report.baselineVersion)}`} · finished ${esc(report.evaluatedAt)} in ${(report.durationMs / 1000).toFixed(1)} s · scenarios: ${report.scenarios.map(esc).join(', ')}</p>
<h2>Promotion gate</h2>
<p><span id="verdict" class="verdict ${gate.passed ? 'pass' : 'fail'}">${gate.passed ? 'PASS' : 'FAIL'}</span> policy from ${esc(gate.policySource)}: <code>${esc(JSON.stringify(gate.policy))}</code></p>
<table><thead>${row(['rule', 'limit', 'actual', 'result'], true)}</thead><tbody>
${gate.checks.map((c) => row([esc(c.rule), String(c.limit), c.actual === null ? '–' : fixed(c.actual, 5), c.skipped ? `skipped: ${esc(c.detail)}` : `${c.passed ? 'pass' : 'FAIL'}: ${esc(c.detail)}`])).join('\n')}
</tbody></table>
<h2>Results</h2>
${variantTable(report)}
${failuresSection(report)}
<p class="meta">peak resident memory of the evaluating process: ${bytes(report.memory.peakRssBytes)}; environment: <code>${esc(JSON.stringify(report.environment))}</code></p>
${comparison}
<h2>Charts</h2>
${latencyChart(report)}
${variantsChart(report)}
${confusionChart(report.candidate)}
${perClass}
${robustness}
</body></html>
`;
}
