import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { CaptureWriter } from '../../functions/core/monitor/capture.ts';
import { comparePredictions } from '../../functions/core/monitor/canary-predictions.ts';
import { FeatureTable } from '../../functions/core/monitor/features.ts';
import { runCanaryGuard } from '../../functions/core/monitor/guard.ts';
import type { LocalMetricsStore } from '../../functions/core/monitor/metrics-source.ts';
import { readModelMonitoring, writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import { promote, setRoutes } from '../../functions/core/registry/rollout.ts';
import { createInferenceHandler, STICKY_HEADER } from '../../functions/inference/app.ts';
import { startRegistryStack, scaleModel, type RegistryStack } from '../helpers/registry-stack.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { emfMetricsStore } from '../helpers/emf-metrics.ts';

// The canary guard's prediction check: canaries as healthy as the stable version by errors and
// latency, whose captured predictions (the real handler, the real capture writer, the S3 emulator)
// are shifted (y = 4x against y = 2x) or not (y = 2x again).
let stack: RegistryStack;
let metricsStore: LocalMetricsStore;
let handler: ReturnType<typeof createInferenceHandler>;
let capture: CaptureWriter;
let publish: () => void;

let seed = 7;
/** Uniform on [0, 1), seeded (mulberry32): each side of the split gets its own sample of one distribution. */
function uniform(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Requests to the alias from `count` callers (sticky keys: each caller lands on one side), inputs uniform on [0, 1). */
async function traffic(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const x = Math.fround(uniform());
    const event = apiEvent('POST', '/v2/models/scale/versions/prod/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [x, x] }] });
    const response = await handler({ ...event, headers: { ...event.headers, [STICKY_HEADER]: `caller-${i}` } });
    publish();
    expect(response.statusCode).toBe(200);
  }
  await metricsStore.settled();
  await capture.flush();
}

beforeAll(async () => {
  stack = await startRegistryStack('guard-predictions');
  for (const [version, k] of [['1', 2], ['2', 4], ['3', 2]] as const) await pushModel(stack.store, { name: 'scale', version, bytes: scaleModel(k) });
  const emf = await emfMetricsStore('guard-predictions');
  ({ metricsStore, publish } = emf);
  const { logger, metrics } = emf;
  capture = new CaptureWriter({
    put: (key, body) => stack.store.putObjectBytes(key, body),
    modelConfig: (model) => readModelMonitoring(stack.store, model),
    onError: (what, error) => {
      throw new Error(`capture ${what} failed: ${error.message}`);
    },
    configTtlMs: 0,
  });
  const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 'test', aliasTtlMs: 0 });
  handler = createInferenceHandler({ service, maxBodyBytes: 1 << 20, logger, metrics, capture });
  await writeModelMonitoring(stack.store, 'scale', {
    capture: { enabled: true, samplingRate: 1 },
    guards: { prod: { enabled: true, minRequests: 10, windowSeconds: 300, minPredictions: 50, minP99IncreaseMs: 1000 } },
  });
  await setRoutes({ store: stack.store }, { model: 'scale', alias: 'prod', routes: [{ version: '1', weight: 100 }], revision: 0 });
});

afterAll(async () => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
  await stack?.stop();
});

describe('the canary guard on captured predictions', () => {
  it('compares per feature by Jensen-Shannon: 0 for the same values, 1 bit for disjoint classes', () => {
    const table = (classes: string[], scores: number[]) => {
      const t = new FeatureTable();
      t.add([
        { name: 'y.class', kind: 'categorical', values: classes },
        { name: 'y.score', kind: 'numeric', values: scores },
      ]);
      return t;
    };
    const same = table(['0', '1', '1', '0'], [0.1, 0.2, 0.3, 0.4]);
    expect(comparePredictions(same, table(['0', '1', '1', '0'], [0.1, 0.2, 0.3, 0.4]))).toEqual([
      { feature: 'y.class', jensenShannon: 0, stableRows: 4, canaryRows: 4 },
      { feature: 'y.score', jensenShannon: 0, stableRows: 4, canaryRows: 4 },
    ]);
    const [classes] = comparePredictions(table(['0', '0'], [1, 1]), table(['1', '1', '1'], [1, 1, 1]));
    // Disjoint: 1 bit, less what the empty bins' floor (stats.ts BIN_FLOOR) adds to each side.
    expect(classes!.jensenShannon).toBeGreaterThan(0.998);
    expect(classes!.jensenShannon).toBeLessThanOrEqual(1);
  });

  it('rolls back a canary whose predictions shifted though its errors and latency are healthy, and names the figure', async () => {
    await promote({ store: stack.store }, { model: 'scale', version: '2', alias: 'prod', canaryWeight: 50 });
    await stack.receiveEvents();
    await traffic(200);
    const [verdict] = await runCanaryGuard({ store: stack.store, metrics: metricsStore });
    expect(verdict).toMatchObject({ outcome: 'rolled-back', unreadableCaptureLines: 0, stable: { version: '1', figures: { errors: 0 } }, canary: { version: '2', figures: { errors: 0 } } });
    const score = verdict!.predictions!.find((p) => p.feature === 'y.score')!;
    expect(verdict!.predictions!.find((p) => p.feature === 'y.class')).toMatchObject({ jensenShannon: 0 });
    expect(score.jensenShannon).toBeGreaterThan(0.1);
    expect(score.stableRows + score.canaryRows).toBe(200);
    expect(verdict!.canary.figures.requests + verdict!.stable.figures.requests).toBe(200);
    expect(verdict!.reasons).toEqual([
      `prediction distribution of y.score: Jensen-Shannon ${score.jensenShannon.toFixed(3)} bits from the stable version's (over 0.1; ${score.canaryRows} and ${score.stableRows} captured rows)`,
    ]);
    expect((await stack.store.registry!.getAlias('scale', 'prod'))!.routes).toEqual([{ version: '1', weight: 100 }]);
    // The rollbacks' events (the promotion's may arrive late through SNS: not counted here).
    const events = (await stack.receiveEvents()).filter((e) => e.type.endsWith('RolledBack'));
    expect(events.map((e) => [e.type, e.version])).toEqual([['ModelRolledBack', '1'], ['ModelCanaryRolledBack', '2']]);
    expect(events[1]!.details).toMatchObject({ reasons: verdict!.reasons, predictions: verdict!.predictions });
  });

  it('leaves a canary with the same prediction distribution alone, and compares nothing below minPredictions', async () => {
    const later = Date.now() + 1000;
    const alias = await promote({ store: stack.store }, { model: 'scale', version: '3', alias: 'prod', canaryWeight: 50 });
    await stack.receiveEvents();
    // The window starts after the traffic above: only this canary's requests and captures count.
    const since = (from: number) => ({ ...metricsStore, figures: (m: string, v: string, _f: number, to: number) => metricsStore.figures(m, v, from, to) });
    const windowStart = Date.now();
    await traffic(30);
    const guard = (now: number) => runCanaryGuard({ store: stack.store, metrics: since(windowStart), now: () => now });
    // 30 requests split between the two: fewer than 50 captured rows on the canary's side, so no comparison yet.
    const [early] = await guard(Math.max(later, Date.now()) + 1);
    expect(early).toMatchObject({ outcome: 'healthy', predictions: null, reasons: [] });
    await traffic(200);
    // The guard's window (300 s) also holds version 1's earlier captures; the distributions are the same y = 2x.
    const [verdict] = await guard(Date.now() + 1);
    expect(verdict).toMatchObject({ outcome: 'healthy', reasons: [], canary: { version: '3' }, stable: { version: '1' } });
    expect(verdict!.predictions!.map((p) => p.feature)).toEqual(['y.class', 'y.score']);
    for (const p of verdict!.predictions!) expect(p.jensenShannon).toBeLessThan(0.1);
    expect(await stack.store.registry!.getAlias('scale', 'prod')).toMatchObject({ routes: alias.routes, revision: alias.revision });
    expect((await stack.receiveEvents()).filter((e) => e.type.endsWith('RolledBack'))).toEqual([]);
  });
});
