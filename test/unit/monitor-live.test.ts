import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { liveRows, renderLiveTable } from '../../functions/core/monitor/live.ts';
import { LocalMetricsStore, parseEmfLine } from '../../functions/core/monitor/metrics-source.ts';

const run = promisify(execFile);

/** An EMF line as the inference function prints it (functions/inference/app.ts, Powertools). */
const emf = (at: number, version: string, metrics: Record<string, number>) =>
  JSON.stringify({
    _aws: { Timestamp: at, CloudWatchMetrics: [{ Namespace: 'AIMass', Dimensions: [['service', 'model', 'version'], ['service']], Metrics: Object.keys(metrics).map((Name) => ({ Name, Unit: 'Milliseconds' })) }] },
    service: 'ai-mass',
    model: 'mnist',
    version,
    ...metrics,
  });

describe('mass monitor <model>', () => {
  const now = 1_000_000;
  const lines = [
    ...Array.from({ length: 10 }, (_, i) => emf(now - 1000 * i, '1', { InferenceLatency: i + 1 })),
    emf(now - 500, '1', { ColdStartInitMs: 300, InferenceLatency: 50 }),
    emf(now - 100_000, '1', { InferenceLatency: 999 }), // outside the 60 s window
    JSON.stringify({ _aws: { Timestamp: now - 200, CloudWatchMetrics: [{ Namespace: 'AIMass', Dimensions: [['service', 'model', 'version']], Metrics: [{ Name: 'InferenceRuntimeFailures', Unit: 'Count' }] }] }, service: 'ai-mass', model: 'mnist', version: '2', InferenceRuntimeFailures: 1 }),
    JSON.stringify({ _aws: { Timestamp: now - 50_000_000, CloudWatchMetrics: [{ Namespace: 'AIMass', Dimensions: [['service', 'model', 'version'], ['service']], Metrics: [{ Name: 'ModelDrift' }, { Name: 'DriftScore' }] }] }, service: 'ai-mass', model: 'mnist', version: '2', ModelDrift: 1, DriftScore: 0.73 }),
    'START RequestId: not a metric',
  ];

  it('gives per-version requests, latency percentiles, errors, cold starts and the latest drift', () => {
    const rows = liveRows(lines.flatMap(parseEmfLine), 'mnist', now, 60_000);
    expect(rows).toEqual([
      { version: '1', requests: 11, perSecond: 11 / 60, p50Ms: 6, p90Ms: 10, p99Ms: expect.closeTo(46, 9), errors: 0, coldStarts: 1, drift: null },
      { version: '2', requests: 1, perSecond: 1 / 60, p50Ms: null, p90Ms: null, p99Ms: null, errors: 1, coldStarts: 0, drift: { drifted: true, score: 0.73, at: now - 50_000_000 } },
    ]);
    expect(renderLiveTable('mnist', rows, 60)).toBe(
      [
        'mnist: last 60 s',
        'version  req  req/s  p50 ms  p90 ms  p99 ms  errors  cold  drift',
        '1         11   0.18    6.00   10.00   46.00       0     1  -',
        '2          1   0.02       -       -       -       1     0  DRIFT psi 0.730',
      ].join('\n'),
    );
  });

  it('prints them from the local stack\'s metrics file', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'monitor-live-')), 'metrics.jsonl');
    const store = new LocalMetricsStore(file);
    const at = Date.now();
    // Fed in pieces, as serverless-offline's output arrives: a line split across chunks is kept whole.
    const text = `${emf(at, '3', { InferenceLatency: 2 })}\n${emf(at, '3', { InferenceLatency: 4 })}\n`;
    store.ingest(text.slice(0, 40));
    store.ingest(text.slice(40));
    await store.settled();
    const { stdout } = await run(process.execPath, ['functions/cli/mass.ts', 'monitor', 'mnist', '--once'], { env: { ...process.env, MASS_METRICS_FILE: file } });
    expect(stdout.split('\n').slice(0, 3)).toEqual(['mnist: last 60 s', 'version  req  req/s  p50 ms  p90 ms  p99 ms  errors  cold  drift', '3          2   0.03    3.00    3.80    3.98       0     0  -']);
  });
});
