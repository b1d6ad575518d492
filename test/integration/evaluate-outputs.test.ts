import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { loadDataset, pushDataset, readDatasetManifest } from '../../functions/core/evaluate/datasets.ts';
import type { EvaluationReport } from '../../functions/core/evaluate/report.ts';
import { server } from '../../functions/core/evaluate/scenarios.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { createLocalEvaluateWorker } from '../../infra/local/evaluate-worker.ts';

// Evaluation of outputs that are not fp32 scores, of rows that fail, and of speed against a copy:
// the real service on the emulators with real onnxruntime sessions, each job run to its end in-process.
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const BUCKET = 'evaluate-outputs-test';
const irisDir = 'fixtures/models/iris-label';
const irisBytes = await readFile(`${irisDir}/model.onnx`);
const irisRows = await readFile(`${irisDir}/iris.jsonl`);
const expected = JSON.parse(await readFile(`${irisDir}/expected.json`, 'utf8')) as { rows: number; sklearn_correct: number };

let emulators: Emulators;
let worker: ReturnType<typeof createLocalEvaluateWorker>;
let cacheDir: string;

beforeAll(async () => {
  emulators = await startEmulators();
  cacheDir = await mkdtemp(join(tmpdir(), 'evaluate-outputs-'));
  worker = createLocalEvaluateWorker({ awsEndpoint: emulators.awsEndpoint, dynamoEndpoint: emulators.dynamoEndpoint, bucket: BUCKET, table: 'evaluate-outputs-registry', queueName: 'evaluate-outputs-steps', cacheDir, intraOpThreads: 1 });
  await worker.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await worker.ensureResources();
  await pushDataset(worker.store, { name: 'iris', upload: { format: 'jsonl', rows: irisRows } });
}, 120_000);

afterAll(async () => {
  await emulators?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

/** Creates the job and runs it to its end here, without the queue (evaluate-api.test.ts covers the queue). */
async function evaluate(name: string, version: string, body: Record<string, unknown>): Promise<{ report: EvaluationReport; html: string }> {
  const job = await worker.service.create(name, version, body);
  const done = await worker.service.runToCompletion(name, version, job.id);
  expect(done.error).toBeUndefined();
  return { report: (await worker.service.readReport(done))!, html: (await worker.service.readReportHtml(done))! };
}

/** An independent count: a plain onnxruntime session over the rows' features, its INT64 labels read directly. */
async function independentIrisCorrect(): Promise<number> {
  const rows = irisRows.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { inputs: { data: number[] }[]; label: number });
  const session = await ort.InferenceSession.create(irisBytes);
  const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from(rows.flatMap((r) => r.inputs[0]!.data)), [rows.length, 4]) });
  const labels = out.label!.data as BigInt64Array;
  await session.release();
  return rows.filter((r, i) => labels[i] === BigInt(r.label)).length;
}

describe('a classifier whose first output is an INT64 label', () => {
  it('is evaluated to the accuracy an independent count gives, with no errors', async () => {
    await pushModel(worker.store, { name: 'iris', version: '1', bytes: irisBytes });
    const correct = await independentIrisCorrect();

    const { report } = await evaluate('iris', '1', { dataset: 'iris', baseline: null, scenarios: ['accuracy'], options: { batchSize: 32, chunkRows: 100, bootstrap: { resamples: 200 } } });

    expect(correct).toBe(expected.sklearn_correct);
    expect(report.candidate.classification!.top1.value).toBe(correct / 150);
    expect(report.candidate.classification!.confusion.flat().reduce((a, b) => a + b, 0)).toBe(150);
    expect(report.candidate.errors).toEqual({ accuracy: { errors: 0, inferences: 150, rate: 0, failures: [] } });
    expect(report.gate.passed).toBe(true);
  });

  it('scores its probability output when asked, to the same top-1', async () => {
    const { report } = await evaluate('iris', '1', { dataset: 'iris', baseline: null, scenarios: ['accuracy'], options: { output: 'probabilities', topK: 2, bootstrap: { resamples: 200 } } });

    expect(report.candidate.classification!.top1.value).toBe(expected.sklearn_correct / 150);
    expect(report.candidate.classification!.topK.k).toBe(2);
    expect(report.candidate.classification!.topK.value).toBeGreaterThan(report.candidate.classification!.top1.value);
  });
});

describe('a row the runtime refuses', () => {
  it('is counted with its reason, shown in the report and the HTML, and fails the gate with it', async () => {
    // A lookup table: an index outside it makes onnxruntime refuse that row.
    const table = graph({
      name: 'lookup',
      nodes: [node('Gather', ['table', 'index'], ['scores'], { axis: { type: 'int', value: 0 } }, 'Gather')],
      inputs: [valueInfo('index', 'int64', ['n'])],
      outputs: [valueInfo('scores', 'float32', ['n', 3])],
      initializers: [tensorFromFloat32('table', [3, 3], [1, 0, 0, 0, 1, 0, 0, 0, 1])],
    });
    await pushModel(worker.store, { name: 'lookup', version: '1', bytes: encodeModel(model({ graph: table, opset: 13, irVersion: 8 })) });
    const rows = [0, 1, 2, 7].map((index) => JSON.stringify({ inputs: [{ name: 'index', datatype: 'INT64', shape: [1], data: [index] }], label: Math.min(index, 2) }));
    await pushDataset(worker.store, { name: 'lookups', upload: { format: 'jsonl', rows: new TextEncoder().encode(rows.join('\n')) } });

    const { report, html } = await evaluate('lookup', '1', { dataset: 'lookups', baseline: null, scenarios: ['accuracy'], options: { batchSize: 1, topK: 1, bootstrap: { resamples: 50 } } });

    const reason = "Non-zero status code returned while running Gather node. Name:'Gather' Status Message: indices element out of data bounds, idx=7 must be within the inclusive range [-3,2]";
    expect(report.candidate.errors.accuracy).toEqual({ errors: 1, inferences: 4, rate: 0.25, failures: [{ row: 3, rows: 1, reason }] });
    expect(report.candidate.classification!.top1.value).toBe(0.75);
    expect(report.gate.passed).toBe(false);
    expect(report.gate.reasons).toEqual([`error rate 25.00% of accuracy rows (1 of 4 failed; first: row 3: ${reason}); the policy allows at most 0.00%`]);
    expect(html).toContain(`<li class="failure">row 3: ${reason.replaceAll("'", '&#39;')}</li>`);
  });
});

describe('the server scenario', () => {
  it('measures each query from the moment it was sent: no latency is negative, even when queries are due less than 1 ms apart', async () => {
    const dataset = await loadDataset(worker.store, await readDatasetManifest(worker.store, 'iris'));
    const session = await ort.InferenceSession.create(irisBytes, { intraOpNumThreads: 1 });

    const result = await server(session, dataset, { rate: 3000, seconds: 0.3, seed: 3 });
    await session.release();

    expect(result.completed).toBe(result.issued);
    expect(result.min).toBeGreaterThan(0);
    expect(result.maxSendLagMs).toBeGreaterThanOrEqual(0);
  });
});

describe('the speed comparison', () => {
  it('never passes minSpeedup 1.2 for a copy of the baseline: the gate reads the lower bound of the interval', async () => {
    await pushModel(worker.store, { name: 'iris', version: '2', bytes: irisBytes });
    const v2 = await worker.store.getManifest('iris', '2');
    await worker.store.putManifest({ ...v2, policy: { minSpeedup: 1.2 } });

    const { report } = await evaluate('iris', '2', { dataset: 'iris', baseline: '1', scenarios: ['single-stream'], options: { singleStreamQueries: 300 } });

    const interval = report.comparison!.speedupInterval!;
    expect(interval.pairs).toBe(300);
    expect(interval.low).toBeLessThan(1.2);
    expect(interval.low).toBeLessThanOrEqual(interval.value);
    expect(interval.high).toBeGreaterThanOrEqual(interval.value);
    expect(report.gate.passed).toBe(false);
    expect(report.gate.checks).toEqual([
      expect.objectContaining({ rule: 'minSpeedup', limit: 1.2, actual: interval.low, passed: false, skipped: false }),
    ]);
    expect(report.gate.reasons[0]).toMatch(/^single-stream speedup \d\.\d{3}x over version 1 \(95% interval \d\.\d{3}x to \d\.\d{3}x over 300 interleaved query pairs\); the policy needs the interval's lower bound at 1\.2x or more$/);
  });
});
