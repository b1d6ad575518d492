import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import type { Baseline } from '../../functions/core/monitor/baseline.ts';
import { CaptureWriter } from '../../functions/core/monitor/capture.ts';
import { compareWithBaseline } from '../../functions/core/monitor/drift.ts';
import { defaultDrift, readModelMonitoring, writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import type { DriftReport } from '../../functions/core/monitor/report.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { createLocalMonitor, type LocalMonitor } from '../../infra/local/monitor.ts';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { batchOf, idxFiles, loadMnist, mnistBaseline, mnistFeatures, permutation, PIXELS, type Mnist, type Shift } from '../helpers/mnist-drift.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { apiEvent } from '../helpers/batch-stack.ts';

// Drift on MNIST, with the fixture model and MNIST's test images: a baseline from 3000 random
// images, captured samples of 200 from the other 7000, as they are (a fresh sample of the same
// distribution), inverted (255 - x) or rotated a quarter turn.
const BASELINE_ROWS = 3000;
const SAMPLE_ROWS = 200;
const SEEDS = 20;

let mnist: Mnist;
let order: number[];

const features = (indices: readonly number[], shift: Shift) => mnistFeatures(mnist, indices, shift);

/** The sample of one seed: SAMPLE_ROWS images none of which is in the baseline. */
const sampleOf = (seed: number) => permutation(mnist.rows - BASELINE_ROWS, 100 + seed).slice(0, SAMPLE_ROWS).map((i) => order[BASELINE_ROWS + i]!);

beforeAll(async () => {
  mnist = await loadMnist();
  order = permutation(mnist.rows, 1);
});

describe('drift tests on MNIST', () => {
  let baseline: Baseline;
  beforeAll(async () => {
    baseline = await mnistBaseline(mnist, order.slice(0, BASELINE_ROWS), 'mnist-base');
  });

  it(`raises no alarm on fresh samples of the same distribution in at least 95% of ${SEEDS} seeds`, async () => {
    const alarms: number[] = [];
    for (let seed = 0; seed < SEEDS; seed++) if (compareWithBaseline(baseline, await features(sampleOf(seed), 'none'), defaultDrift()).drift) alarms.push(seed);
    expect(alarms.length / SEEDS).toBeLessThanOrEqual(0.05);
    expect(alarms).toEqual([]);
  });

  it('finds drift in inverted and in rotated images on every seed, in the features that moved', async () => {
    for (let seed = 0; seed < SEEDS; seed++) {
      const inverted = compareWithBaseline(baseline, await features(sampleOf(seed), 'inverted'), defaultDrift());
      const rotated = compareWithBaseline(baseline, await features(sampleOf(seed), 'rotated'), defaultDrift());
      expect([seed, inverted.drift, rotated.drift]).toEqual([seed, true, true]);
      const drifted = (r: typeof inverted) => r.features.filter((f) => f.drifted).map((f) => f.name);
      // Inverting moves the mean brightness (about 33 to about 222); rotating keeps it and moves where the ink is, and what the model predicts.
      expect(drifted(inverted)).toContain('input.mean');
      expect(drifted(rotated)).not.toContain('input.mean');
      expect(drifted(rotated)).toContain('probabilities.class');
    }
  });

  it('says a sample is too small instead of judging it', async () => {
    const small = compareWithBaseline(baseline, await features(sampleOf(0).slice(0, 50), 'inverted'), defaultDrift());
    expect(small).toMatchObject({ samples: 50, enough: false, drift: false, features: [] });
  });
});

describe('the drift job on the job runtime', () => {
  let stack: RegistryStack;
  let monitor: LocalMonitor;
  const today = new Date().toISOString().slice(0, 10);

  beforeAll(async () => {
    stack = await startRegistryStack('drift-job');
    const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
    monitor = await createLocalMonitor({ store: stack.store, sqs: createSqsClient({ endpoint: stack.emulators.awsEndpoint }), dynamo, table: stack.store.registry!.tableName, prefix: 'drift-job', metricsFile: `/tmp/drift-job-${process.pid}/metrics.jsonl`, intraOpThreads: 1 });
    const bytes = await readFile('fixtures/models/mnist/model.onnx');
    for (const version of ['1', '2']) await pushModel(stack.store, { name: 'mnist', version, bytes });
    await pushDataset(stack.store, { name: 'mnist-base', upload: { format: 'idx', ...idxFiles(mnist.pixels, order.slice(0, BASELINE_ROWS)), inputName: 'input', shape: [1, PIXELS] } });
    await stack.receiveEvents();
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('computes a baseline from a data set and stores it with the version', async () => {
    for (const version of ['1', '2']) {
      const job = await monitor.run({ task: 'baseline', model: 'mnist', version, dataset: 'mnist-base' });
      expect([job.state, job.result]).toEqual(['succeeded', { baseline: `models/mnist/${version}/monitoring/baseline.json`, rows: BASELINE_ROWS, inputs: 18, predictions: 2 }]);
    }
    const stored = JSON.parse(Buffer.from((await stack.store.getObjectBytes('models/mnist/1/monitoring/baseline.json'))!).toString('utf8')) as Baseline;
    expect(stored.dataset).toMatchObject({ name: 'mnist-base', rows: BASELINE_ROWS });
    expect(stored.predictions.map((p) => [p.name, p.kind, p.count])).toEqual([['probabilities.class', 'categorical', BASELINE_ROWS], ['probabilities.score', 'numeric', BASELINE_ROWS]]);
  });

  it('reports drift on captured inverted images (report.json, report.html, metric, event) and none on a fresh sample', async () => {
    await writeModelMonitoring(stack.store, 'mnist', { capture: { enabled: true, samplingRate: 1 } });
    const sessions = new ModelSessions({ store: stack.store, intraOpThreads: 1 });
    const service = new InferenceService({ store: stack.store, sessions, serviceVersion: 'test' });
    const { logger, metrics } = createObservability('ai-mass-test');
    logger.setLogLevel('SILENT');
    const capture = new CaptureWriter({ put: (key, body) => stack.store.putObjectBytes(key, body), modelConfig: (m) => readModelMonitoring(stack.store, m), onError: (what, error) => { throw new Error(`${what}: ${error.message}`); } });
    const handler = createInferenceHandler({ service, maxBodyBytes: 8 << 20, logger, metrics, capture });
    const sample = sampleOf(3);
    for (const [version, shift] of [['1', 'inverted'], ['2', 'none']] as const) {
      for (let s = 0; s < sample.length; s += 20) {
        const rows = sample.slice(s, s + 20);
        const response = await handler(apiEvent('POST', `/v2/models/mnist/versions/${version}/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, PIXELS], data: Array.from(batchOf(mnist.pixels, rows, shift)) }] }));
        expect(response.statusCode).toBe(200);
      }
    }
    await capture.flush();

    const drifted = await monitor.run({ task: 'drift', model: 'mnist', version: '1', date: today });
    expect(drifted.state).toBe('succeeded');
    expect(drifted.result).toMatchObject({ drift: true, enough: true, samples: SAMPLE_ROWS, report: `monitoring/mnist/1/${today}/report.json`, html: `monitoring/mnist/1/${today}/report.html`, unreadableLines: 0 });
    const report = JSON.parse(Buffer.from((await stack.store.getObjectBytes(`monitoring/mnist/1/${today}/report.json`))!).toString('utf8')) as DriftReport;
    expect(report).toMatchObject({ model: 'mnist', version: '1', date: today, days: [today], records: 10, samples: SAMPLE_ROWS, drift: true, missing: [] });
    const meanOf = (data: Float32Array) => data.reduce((a, b) => a + b, 0) / data.length;
    expect(report.features.find((f) => f.name === 'input.mean')).toMatchObject({
      drifted: true,
      baselineMean: expect.closeTo(meanOf(batchOf(mnist.pixels, order.slice(0, BASELINE_ROWS), 'none')), 6),
      capturedMean: expect.closeTo(255 - meanOf(batchOf(mnist.pixels, sample, 'none')), 6),
    });
    const html = Buffer.from((await stack.store.getObjectBytes(`monitoring/mnist/1/${today}/report.html`))!).toString('utf8');
    expect(html).toContain('<p class="verdict">drift in ');
    expect(html).toContain('<td>input.mean</td>');

    const fresh = await monitor.run({ task: 'drift', model: 'mnist', version: '2', date: today });
    expect(fresh.result).toMatchObject({ drift: false, enough: true, samples: SAMPLE_ROWS, drifted: [] });

    const events = await stack.receiveEvents();
    expect(events.map((e) => [e.type, e.model, e.version])).toEqual([['ModelDriftDetected', 'mnist', '1']]);
    expect(events[0]!.details).toMatchObject({ report: `monitoring/mnist/1/${today}/report.json`, date: today, samples: SAMPLE_ROWS });
    expect((events[0]!.details!.features as { name: string }[]).map((f) => f.name)).toContain('input.mean');
    const drift = monitor.emitted.filter((s) => s.name === 'ModelDrift').map((s) => [s.dimensions, s.values]);
    expect(drift).toEqual([
      [{ service: 'ai-mass', model: 'mnist', version: '1' }, [1]],
      [{ service: 'ai-mass' }, [1]],
      [{ service: 'ai-mass', model: 'mnist', version: '2' }, [0]],
      [{ service: 'ai-mass' }, [0]],
    ]);
  }, 120_000);

  it('fails a drift job for a version without a baseline, saying how to make one, and refuses a bad request', async () => {
    await pushModel(stack.store, { name: 'mnist', version: '3', bytes: await readFile('fixtures/models/mnist/model.onnx') });
    const job = await monitor.run({ task: 'drift', model: 'mnist', version: '3', date: today });
    expect([job.state, job.error]).toEqual(['failed', "step main failed: model 'mnist' version '3' has no baseline; compute one with `mass monitor baseline mnist 3 --dataset <name>` (after 3 attempts)"]);
    await expect(monitor.runtime.submit({ kind: 'monitor', request: { task: 'drift', model: 'mnist', version: '1', date: '6 Dec' } })).rejects.toThrow('invalid monitoring job: date: date must be YYYY-MM-DD');
    await expect(monitor.runtime.submit({ kind: 'monitor', request: { task: 'baseline', model: 'mnist', version: '1' } })).rejects.toThrow('invalid monitoring job: dataset:');
  });
});
