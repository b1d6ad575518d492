import type { ReportTrial, StudyReport } from './report.ts';

/**
 * report.html of a study: one self-contained page (inline CSS and SVG, no script, no CDN), as the
 * evaluation's report is: the optimization history, the parameter importances, the Pareto front of
 * the first two objectives, and the best configurations.
 */

const esc = (value: unknown) =>
  String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const num = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '–' : Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toPrecision(4) : Number(v.toPrecision(6)).toString());
const W = 640;
const H = 280;
const pad = { l: 60, r: 16, t: 24, b: 40 };

function scale(values: number[], from: number, to: number): (v: number) => number {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi > lo ? hi - lo : 1;
  return (v) => from + ((v - (hi > lo ? lo : lo - 0.5)) / span) * (to - from);
}

function axes(xLabel: string, yLabel: string): string {
  return `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#9ca3af"/><line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#9ca3af"/>
<text x="${(W + pad.l) / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text><text x="14" y="${(H - pad.b + pad.t) / 2}" transform="rotate(-90 14 ${(H - pad.b + pad.t) / 2})" text-anchor="middle">${esc(yLabel)}</text>`;
}

function emptyChart(id: string, caption: string, why: string): string {
  return `<figure><figcaption>${esc(caption)}</figcaption><svg id="${id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}"><text x="${W / 2}" y="${H / 2}" text-anchor="middle">${esc(why)}</text></svg></figure>`;
}

function historyChart(report: StudyReport): string {
  const metric = report.objectives[0]!.metric;
  const done = report.history.filter((t) => t.values);
  if (done.length === 0) return emptyChart('chart-history', 'Optimization history', 'no complete trial');
  const sx = scale(report.history.map((t) => t.number), pad.l + 8, W - pad.r - 8);
  const sy = scale(done.map((t) => t.values![0]!), H - pad.b - 8, pad.t + 8);
  const points = done
    .map((t) => `<circle class="point" cx="${sx(t.number).toFixed(1)}" cy="${sy(t.values![0]!).toFixed(1)}" r="4" fill="${t.feasible ? '#2563eb' : '#9ca3af'}"><title>trial ${t.number}: ${esc(metric)} ${num(t.values![0])}${t.feasible ? '' : ' (infeasible)'}</title></circle>`)
    .join('');
  const best = report.history.filter((t) => t.bestSoFar !== undefined);
  const line = best.length > 1 ? `<polyline class="best" fill="none" stroke="#f97316" stroke-width="2" points="${best.map((t) => `${sx(t.number).toFixed(1)},${sy(t.bestSoFar!).toFixed(1)}`).join(' ')}"/>` : '';
  return `<figure><figcaption>Optimization history: ${esc(metric)} of each complete trial (grey: infeasible; orange: best feasible so far)</figcaption>
<svg id="chart-history" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="optimization history">${axes('trial', metric)}${line}${points}</svg></figure>`;
}

function importanceChart(report: StudyReport): string {
  const first = report.importances.byObjective[0]!;
  if (first.values.every((v) => v.importance === 0)) return emptyChart('chart-importance', `Parameter importances for ${first.metric}`, 'too few complete trials to tell');
  const rowH = Math.min(28, (H - pad.t - pad.b) / first.values.length);
  const bars = first.values
    .map((v, i) => {
      const y = pad.t + i * rowH;
      const width = (W - 200 - pad.r) * v.importance;
      return `<text x="190" y="${(y + rowH * 0.7).toFixed(1)}" text-anchor="end">${esc(v.parameter)}</text><rect class="bar" x="196" y="${y.toFixed(1)}" width="${Math.max(1, width).toFixed(1)}" height="${(rowH * 0.8).toFixed(1)}" fill="#2563eb"><title>${esc(v.parameter)}: ${(v.importance * 100).toFixed(1)}%</title></rect>`;
    })
    .join('');
  return `<figure><figcaption>Parameter importances for ${esc(first.metric)} (${esc(report.importances.method)})</figcaption>
<svg id="chart-importance" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="parameter importances">${bars}</svg></figure>`;
}

function paretoChart(report: StudyReport): string {
  if (report.objectives.length < 2) return '';
  const [a, b] = report.objectives;
  const done = report.history.filter((t) => t.values && t.feasible);
  if (done.length === 0) return emptyChart('chart-pareto', 'Pareto front', 'no feasible complete trial');
  const front = new Set((report.paretoFront ?? []).map((t) => t.number));
  const sx = scale(done.map((t) => t.values![0]!), pad.l + 8, W - pad.r - 8);
  const sy = scale(done.map((t) => t.values![1]!), H - pad.b - 8, pad.t + 8);
  const points = done
    .map((t) => `<circle class="${front.has(t.number) ? 'front' : 'dominated'}" cx="${sx(t.values![0]!).toFixed(1)}" cy="${sy(t.values![1]!).toFixed(1)}" r="${front.has(t.number) ? 5 : 3}" fill="${front.has(t.number) ? '#f97316' : '#9ca3af'}"><title>trial ${t.number}: ${esc(a!.metric)} ${num(t.values![0])}, ${esc(b!.metric)} ${num(t.values![1])}</title></circle>`)
    .join('');
  return `<figure><figcaption>Pareto front of ${esc(a!.metric)} (${a!.direction}) and ${esc(b!.metric)} (${b!.direction}): orange on the front, grey dominated (feasible trials)</figcaption>
<svg id="chart-pareto" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Pareto front">${axes(a!.metric, b!.metric)}${points}</svg></figure>`;
}

function configurationTable(report: StudyReport, trials: readonly ReportTrial[]): string {
  if (trials.length === 0) return '<p>No feasible complete trial.</p>';
  const params = [...new Set(trials.flatMap((t) => Object.keys(t.params)))];
  const metrics = [...new Set(trials.flatMap((t) => Object.keys(t.metrics ?? {})))];
  const head = `<tr><th>trial</th>${params.map((p) => `<th>${esc(p)}</th>`).join('')}${metrics.map((m) => `<th>${esc(m)}</th>`).join('')}</tr>`;
  const rows = trials
    .map((t) => `<tr class="config"><td>${t.number}</td>${params.map((p) => `<td>${p in t.params ? esc(typeof t.params[p] === 'number' ? num(t.params[p] as number) : t.params[p]) : '–'}</td>`).join('')}${metrics.map((m) => `<td>${num(t.metrics?.[m])}</td>`).join('')}</tr>`)
    .join('');
  return `<table id="best-configurations">${head}${rows}</table>`;
}

export function renderStudyReportHtml(report: StudyReport): string {
  const c = report.counts;
  const headline = report.best
    ? `Best: trial ${report.best.number}, ${esc(report.objectives[0]!.metric)} ${num(report.best.values?.[0])}`
    : report.paretoFront
      ? `Pareto front: ${report.paretoFront.length} trial${report.paretoFront.length === 1 ? '' : 's'}`
      : 'No feasible complete trial';
  const notes = report.notes ? `<h2>Notes</h2><ul>${Object.entries(report.notes).map(([k, v]) => `<li>${esc(k)}: ${esc(typeof v === 'string' ? v : JSON.stringify(v))}</li>`).join('')}</ul>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Study ${esc(report.study)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111827;max-width:1000px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e5e7eb;padding:3px 8px;text-align:right}th{background:#f3f4f6}
svg.chart{display:block;background:#fff;border:1px solid #e5e7eb}svg text{font-size:11px;fill:#374151}figure{margin:16px 0}
#headline{font-size:18px;font-weight:600}
</style></head><body>
<h1>Study ${esc(report.study)}</h1>
<p id="headline">${headline}</p>
<p>Objective <b>${esc(report.objective.type)}</b>; ${report.objectives.map((o) => `${esc(o.metric)} (${o.direction})`).join(', ')}${report.constraints.length ? `; constraints ${report.constraints.map((k) => `${esc(k.metric)} ${esc(k.op)} ${k.bound}`).join(', ')}` : ''}.
Sampler ${esc(report.sampler)}, pruner ${esc(report.pruner)}. Trials: ${c.total} (${c.complete} complete, ${c.pruned} pruned, ${c.failed} failed, ${c.running} running).${report.registered ? ` Winner registered as ${esc(report.registered.model)} version ${esc(report.registered.version)} (not routed until promoted).` : ''}</p>
${historyChart(report)}
${importanceChart(report)}
${paretoChart(report)}
<h2>Best configurations</h2>
${configurationTable(report, report.bestConfigurations)}
${notes}
<p>Generated ${esc(report.generated)}.</p>
</body></html>
`;
}
