import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { judgeCanary, runCanaryGuard } from '../../functions/core/monitor/guard.ts';
import { parseEmfLine, type LocalMetricsStore } from '../../functions/core/monitor/metrics-source.ts';
import { defaultGuard, writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import { promote, setRoutes } from '../../functions/core/registry/rollout.ts';
import { createInferenceHandler, STICKY_HEADER } from '../../functions/inference/app.ts';
import { startRegistryStack, scaleModel, type RegistryStack } from '../helpers/registry-stack.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { emfMetricsStore } from '../helpers/emf-metrics.ts';
import { gatherModel } from '../helpers/monitor-models.ts';

// The canary guard against the registry on the emulators, fed with the EMF lines the real
// inference handler prints (Powertools' output parsed into the local stack's metrics store).
let stack: RegistryStack;
let metricsStore: LocalMetricsStore;
let handler: ReturnType<typeof createInferenceHandler>;
let publish: () => void;

/** Requests to the alias from `count` callers (sticky keys: each caller lands on one side). */
async function traffic(count: number, x: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i++) {
    const event = apiEvent('POST', '/v2/models/scale/versions/prod/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [x, x] }] });
    const response = await handler({ ...event, headers: { ...event.headers, [STICKY_HEADER]: `caller-${i}` } });
    publish();
    statuses.push(response.statusCode!);
  }
  await metricsStore.settled();
  return statuses;
}

/** Loads a version before its traffic: a first request that loads the model is slow (docs/monitoring.md). */
async function warm(version: string): Promise<void> {
  const response = await handler(apiEvent('GET', `/v2/models/scale/versions/${version}/ready`));
  expect(response.statusCode).toBe(200);
}

beforeAll(async () => {
  stack = await startRegistryStack('guard');
  for (const [version, bytes] of [['1', scaleModel(2)], ['2', gatherModel()], ['3', scaleModel(3)]] as const) await pushModel(stack.store, { name: 'scale', version, bytes });
  const emf = await emfMetricsStore('guard-metrics');
  ({ metricsStore, publish } = emf);
  const { logger, metrics } = emf;
  const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 'test', aliasTtlMs: 0 });
  handler = createInferenceHandler({ service, maxBodyBytes: 1 << 20, logger, metrics });
  // Latency is judged from measured p99s, which a loaded machine spreads by tens of milliseconds: these
  // tests judge errors and request counts, so latency is given slack no scheduler reaches (the latency
  // rule itself is tested on fixed figures below).
  await writeModelMonitoring(stack.store, 'scale', { guards: { prod: { enabled: true, minRequests: 10, windowSeconds: 60, minP99IncreaseMs: 60_000 } } });
});

afterAll(async () => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
  await stack?.stop();
});

describe('the canary guard', () => {
  it('rolls back a canary that fails, and says why with both versions\' figures', async () => {
    await setRoutes({ store: stack.store }, { model: 'scale', alias: 'prod', routes: [{ version: '1', weight: 100 }], revision: 0 });
    await promote({ store: stack.store }, { model: 'scale', version: '2', alias: 'prod', canaryWeight: 50 });
    await stack.receiveEvents();
    for (const version of ['1', '2']) await warm(version);
    // x = 1 is a valid index for the canary's Gather, x = 5 is not: the canary fails once it sees it.
    const healthy = await traffic(40, 1);
    expect(healthy.every((s) => s === 200)).toBe(true);
    expect((await runCanaryGuard({ store: stack.store, metrics: metricsStore }))[0]).toMatchObject({ outcome: 'healthy' });
    const statuses = await traffic(40, 5);
    const failures = statuses.filter((s) => s === 500).length;
    expect(statuses.filter((s) => s !== 200 && s !== 500)).toEqual([]);
    expect(failures).toBeGreaterThan(0);

    const [verdict] = await runCanaryGuard({ store: stack.store, metrics: metricsStore });
    expect(verdict).toMatchObject({
      model: 'scale',
      alias: 'prod',
      outcome: 'rolled-back',
      stable: { version: '1', weight: 50, figures: { errors: 0, errorRate: 0 } },
      canary: { version: '2', weight: 50, figures: { errors: failures } },
    });
    expect(verdict!.canary.figures.requests).toBe(statuses.length + healthy.length - verdict!.stable.figures.requests);
    expect(verdict!.reasons).toEqual([expect.stringMatching(/^error rate \d+\.\d\d% against 0\.00% \(more than 2\.00 points higher\)$/)]);
    expect((await stack.store.registry!.getAlias('scale', 'prod'))!.routes).toEqual([{ version: '1', weight: 100 }]);
    const events = await stack.receiveEvents();
    expect(events.map((e) => [e.type, e.version, e.alias])).toEqual([['ModelRolledBack', '1', 'prod'], ['ModelCanaryRolledBack', '2', 'prod']]);
    expect(events[1]!.details).toMatchObject({ reasons: verdict!.reasons, canary: { version: '2', figures: { errors: failures } }, windowSeconds: 60, minRequests: 10 });
    // Nothing left to guard: the alias serves one version.
    expect(await runCanaryGuard({ store: stack.store, metrics: metricsStore })).toEqual([]);
  });

  it('leaves a healthy canary alone, and waits while either side has fewer requests than the policy asks', async () => {
    const alias = await promote({ store: stack.store }, { model: 'scale', version: '3', alias: 'prod', canaryWeight: 50 });
    await stack.receiveEvents();
    await warm('3');
    const started = Date.now();
    await traffic(6, 1);
    const later = () => Date.now() + 1;
    // The window starts after the failures above: only this canary's requests count.
    const windowed = { ...metricsStore, figures: (m: string, v: string, _from: number, to: number) => metricsStore.figures(m, v, started, to) };
    expect((await runCanaryGuard({ store: stack.store, metrics: windowed, now: later }))[0]).toMatchObject({ outcome: 'waiting', reasons: [] });
    await traffic(40, 1);
    const [verdict] = await runCanaryGuard({ store: stack.store, metrics: windowed, now: later });
    expect(verdict).toMatchObject({ outcome: 'healthy', reasons: [], canary: { version: '3', figures: { errors: 0 } }, stable: { version: '1', figures: { errors: 0 } } });
    expect(verdict!.canary.figures.requests + verdict!.stable.figures.requests).toBe(46);
    expect(await stack.store.registry!.getAlias('scale', 'prod')).toMatchObject({ routes: alias.routes, revision: alias.revision });
    expect(await stack.receiveEvents()).toEqual([]);
  });

  it('judges latency by p99 against the stable version, from the EMF lines the handler writes', () => {
    const line = (version: string, ms: number, at: number) =>
      JSON.stringify({ _aws: { Timestamp: at, CloudWatchMetrics: [{ Namespace: 'AIMass', Dimensions: [['service', 'model', 'version'], ['service']], Metrics: [{ Name: 'InferenceLatency', Unit: 'Milliseconds' }] }] }, service: 'ai-mass', model: 'm', version, InferenceLatency: ms });
    const samples = [
      ...Array.from({ length: 50 }, (_, i) => parseEmfLine(line('1', 2 + (i % 5) * 0.1, 1000 + i))).flat(),
      ...Array.from({ length: 50 }, (_, i) => parseEmfLine(line('2', i < 45 ? 2 : 90, 1000 + i))).flat(),
    ];
    const figures = (version: string) => {
      const values = samples.filter((s) => s.dimensions.version === version).flatMap((s) => s.values).sort((a, b) => a - b);
      return { requests: values.length, errors: 0, errorRate: 0, p99Ms: values[Math.floor(0.99 * (values.length - 1))]! };
    };
    expect(samples).toHaveLength(100);
    expect(figures('1').p99Ms).toBeCloseTo(2.4, 12);
    expect(judgeCanary(figures('1'), figures('2'), { ...defaultGuard(), minRequests: 50 })).toEqual({ outcome: 'breach', reasons: ['p99 latency 90.0 ms against 2.4 ms (over 1.5x and 20 ms more)'] });
    expect(judgeCanary(figures('1'), figures('1'), { ...defaultGuard(), minRequests: 50 })).toEqual({ outcome: 'healthy', reasons: [] });
    // Three times slower but 4.8 ms: under the policy's 20 ms of slack.
    expect(judgeCanary(figures('1'), { ...figures('1'), p99Ms: 7.2 }, { ...defaultGuard(), minRequests: 50 })).toEqual({ outcome: 'healthy', reasons: [] });
    expect(judgeCanary(figures('1'), figures('2'), { ...defaultGuard(), minRequests: 51 })).toEqual({ outcome: 'waiting', reasons: [] });
  });
});
