import { quantileSorted } from '../evaluate/metrics.ts';
import { FAILURE_METRIC, hasSeries, LATENCY_METRIC, type EmfSample } from './metrics-source.ts';

/** One version's figures over a window, as `mass monitor <model>` shows them. */
export interface LiveRow {
  version: string;
  requests: number;
  perSecond: number;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  errors: number;
  coldStarts: number;
  /** The latest drift report's verdict and score, when one was made. */
  drift: { drifted: boolean; score: number | null; at: number } | null;
}

/** Figures per version of a model from the samples of the last `windowMs` (drift: the latest ever). */
export function liveRows(samples: readonly EmfSample[], model: string, nowMs: number, windowMs: number): LiveRow[] {
  const byVersion = new Map<string, { latencies: number[]; errors: number; cold: number; drift: LiveRow['drift']; score: number | null }>();
  const row = (version: string) => {
    let r = byVersion.get(version);
    if (!r) byVersion.set(version, (r = { latencies: [], errors: 0, cold: 0, drift: null, score: null }));
    return r;
  };
  for (const s of samples) {
    if (s.dimensions.model !== model || !s.dimensions.version || !hasSeries(s, ['model', 'version'])) continue;
    const r = row(s.dimensions.version);
    if (s.name === 'ModelDrift' && (!r.drift || s.at >= r.drift.at)) r.drift = { drifted: s.values.at(-1)! >= 1, score: r.score, at: s.at };
    if (s.name === 'DriftScore') {
      r.score = s.values.at(-1)!;
      if (r.drift) r.drift.score = r.score;
    }
    if (s.at < nowMs - windowMs || s.at > nowMs) continue;
    if (s.name === LATENCY_METRIC) r.latencies.push(...s.values);
    else if (s.name === FAILURE_METRIC) r.errors += s.values.reduce((a, b) => a + b, 0);
    else if (s.name === 'ColdStartInitMs') r.cold += s.values.length;
  }
  return [...byVersion.entries()]
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([version, r]) => {
      const sorted = r.latencies.sort((a, b) => a - b);
      const q = (p: number) => (sorted.length ? quantileSorted(sorted, p) : null);
      const requests = sorted.length + r.errors;
      return { version, requests, perSecond: requests / (windowMs / 1000), p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99), errors: r.errors, coldStarts: r.cold, drift: r.drift };
    });
}

const ms = (v: number | null) => (v === null ? '-' : v.toFixed(2));

/** The rows as a fixed-width table. */
export function renderLiveTable(model: string, rows: readonly LiveRow[], windowSeconds: number): string {
  const header = ['version', 'req', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'errors', 'cold', 'drift'];
  const lines = rows.map((r) => [
    r.version,
    String(r.requests),
    r.perSecond.toFixed(2),
    ms(r.p50Ms),
    ms(r.p90Ms),
    ms(r.p99Ms),
    String(r.errors),
    String(r.coldStarts),
    r.drift ? `${r.drift.drifted ? 'DRIFT' : 'ok'}${r.drift.score !== null ? ` psi ${r.drift.score.toFixed(3)}` : ''}` : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [`${model}: last ${windowSeconds} s`, fmt(header), ...(lines.length ? lines.map(fmt) : ['(no requests yet)'])].join('\n');
}
