/**
 * Tuning studies on the job runtime, on the emulators (dynalite, fauxqs, the S3 emulator) with the
 * real onnxruntime: the studies API starts a study, tune lanes delivered by SQS run its trials side
 * by side, a dead worker's trial is failed after its lease and its place given back, a pruner stops
 * trials per epoch, the serving figures are the measurements they claim, and the report renders.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { chromium, type Browser } from 'playwright-core';
import type { APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ort from '../../functions/core/onnx/ort.ts';
import { loadDataset, pushDataset, readDatasetManifest } from '../../functions/core/evaluate/datasets.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { decodeModel } from '../../functions/core/onnx/model-proto.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { classificationAccuracy, costPerMillion } from '../../functions/core/tune/objectives/serving.ts';
import type { StudyReport } from '../../functions/core/tune/report.ts';
import type { StudyView } from '../../functions/core/tune/service.ts';
import { createStudiesApiHandler } from '../../functions/studies/app.ts';
import { apiEvent, waitFor } from '../helpers/batch-stack.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { queueDepth, startTuneStack, type TuneStack } from '../helpers/tune-stack.ts';
import { quadrantIdx, quadrantMlp } from '../helpers/train-fixtures.ts';
import { serveApi } from '../helpers/api-server.ts';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let stack: TuneStack;
let api: ReturnType<typeof createStudiesApiHandler>;
const source = quadrantMlp();

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: () => StudyView & { error?: string }; headers: Record<string, string> }> {
  const out = (await api(apiEvent(method, path, body), {} as Context)) as APIGatewayProxyStructuredResultV2;
  return { status: out.statusCode!, json: () => JSON.parse(out.body as string), headers: (out.headers ?? {}) as Record<string, string> };
}

async function text(key: string): Promise<string> {
  const bytes = await stack.registry.store.getObjectBytes(key);
  if (!bytes) throw new Error(`${key} is missing`);
  return Buffer.from(bytes).toString('utf8');
}

const serving = (options: Record<string, unknown> = {}) => ({ type: 'serving', model: 'quad', version: '1', dataset: 'quads', accuracyRows: 200, latencyRuns: 10, warmupRuns: 2, ...options });

beforeAll(async () => {
  stack = await startTuneStack('tune-jobs');
  api = createStudiesApiHandler({ studies: stack.studies, jobs: stack.jobs, runtime: stack.runtime, store: stack.registry.store, log: () => undefined });
  await pushModel(stack.registry.store, { name: 'quad', version: '1', bytes: source });
  const { images, labels } = quadrantIdx(400);
  await pushDataset(stack.registry.store, { name: 'quads', upload: { format: 'idx', images, labels, inputName: 'input', shape: [1, 16] } });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('a serving study', () => {
  let view: StudyView;

  it('runs every grid point once over two lanes, building each variant once, and registers the smallest as an unrouted version', async () => {
    const started = await call('POST', '/v2/studies', {
      id: 'serving-grid',
      objective: serving(),
      space: {
        parameters: {
          quantization: { type: 'categorical', choices: ['none', 'int8-dynamic', 'fp16'] },
          batchSize: { type: 'categorical', choices: [1, 8] },
        },
      },
      objectives: [{ metric: 'size_mb', direction: 'minimize' }],
      constraints: [{ metric: 'accuracy_drop', op: '<=', bound: 50 }],
      sampler: { type: 'grid' },
      parallel: 2,
      register: true,
    });
    expect([started.status, started.headers.location]).toEqual([202, '/v2/studies/serving-grid']);
    expect(started.json()).toMatchObject({ id: 'serving-grid', state: 'queued', counts: { total: 0 }, objective: { type: 'serving', options: { model: 'quad', dataset: 'quads' } } });
    const again = await call('POST', '/v2/studies', { id: 'serving-grid', objective: serving(), sampler: { type: 'grid' }, objectives: [{ metric: 'p99_ms', direction: 'minimize' }] });
    expect([again.status, again.json().error]).toEqual([409, "study 'serving-grid' already exists with another configuration"]);

    const job = await stack.runToEnd(started.json().job!, 2);
    view = (await call('GET', '/v2/studies/serving-grid')).json();

    expect(job.state).toBe('succeeded');
    expect(view.counts).toEqual({ total: 6, complete: 6, running: 0, pruned: 0, failed: 0 });
    const configurations = view.trials.map((t) => `${t.params.quantization as string}/${t.params.batchSize as number}`).sort();
    expect(configurations).toEqual(['fp16/1', 'fp16/8', 'int8-dynamic/1', 'int8-dynamic/8', 'none/1', 'none/8']);
    const variants = await stack.registry.s3.send(new ListObjectsV2Command({ Bucket: stack.registry.store.bucket, Prefix: `jobs/${job.id}/variants/` }));
    expect(variants.Contents).toHaveLength(2);
    // The best size is int8's; of the two int8 trials (equal size) the lower number wins.
    const int8 = view.trials.filter((t) => t.params.quantization === 'int8-dynamic').sort((a, b) => a.number - b.number);
    expect(view.best).toEqual({ number: int8[0]!.number, params: int8[0]!.params, metrics: int8[0]!.metrics });
    expect(view.outcome).toEqual({ report: keys.tuneReport(job.id), reportHtml: keys.tuneReportHtml(job.id), registered: { model: 'quad', version: '2' } });
    const manifest = await stack.registry.store.getManifest('quad', '2');
    expect(manifest.lineage).toMatchObject({ sourceVersion: '1', method: 'tune', options: { study: 'serving-grid', trial: int8[0]!.number, quantization: 'int8-dynamic' } });
    expect(await stack.registry.store.listRoutableVersions('quad')).toEqual({ versions: ['1', '2'], uploaded: ['1'] });
    const { bytes: registered } = await stack.registry.store.getModelBytes(manifest);
    await checkOnnxModel(registered);
    expect(await queueDepth(stack)).toBe(0);
    expect(await stack.studies.listActive()).not.toContain('serving-grid');
  }, 180_000);

  it('reports measured figures: accuracy and size of the very variant, cost from the measured time at the tier memory', async () => {
    const manifest = await readDatasetManifest(stack.registry.store, 'quads');
    const dataset = await loadDataset(stack.registry.store, manifest);
    const job = view.job!;
    const variants = await stack.registry.s3.send(new ListObjectsV2Command({ Bucket: stack.registry.store.bucket, Prefix: `jobs/${job}/variants/` }));
    const bySize = new Map<number, Uint8Array>([[source.byteLength, source]]);
    for (const { Key } of variants.Contents!) {
      const bytes = (await stack.registry.store.getObjectBytes(Key!))!;
      await checkOnnxModel(bytes);
      bySize.set(bytes.byteLength, bytes);
    }
    const accuracyOf = async (bytes: Uint8Array) => {
      const session = await ort.InferenceSession.create(bytes);
      try {
        return await classificationAccuracy(session, dataset, 200, 32);
      } finally {
        await session.release();
      }
    };
    const sourceAccuracy = await accuracyOf(source);

    for (const trial of view.trials) {
      const m = trial.metrics!;
      const bytes = bySize.get(Math.round(m.size_mb! * 1e6));
      expect(bytes, `trial ${trial.number} size`).toBeDefined();
      expect(bytes!.byteLength).toBe(trial.params.quantization === 'none' ? source.byteLength : bytes!.byteLength);
      expect(m.accuracy).toBe(await accuracyOf(bytes!));
      expect(m.accuracy_drop).toBe(sourceAccuracy - m.accuracy!);
      expect(m.p50_ms).toBeGreaterThan(0);
      expect(m.p99_ms).toBeGreaterThanOrEqual(m.p50_ms!);
      expect(m.memory_mib).toBe(1024);
      expect(m.cost_per_million).toBe(costPerMillion(1024, m.mean_ms!, trial.params.batchSize as number));
      expect(m.throughput).toBeCloseTo(((trial.params.batchSize as number) * 1000) / m.mean_ms!, 6);
    }
    expect(bySize.size).toBe(3);
  });

  it('writes report.json and a report.html whose charts render in headless Chromium without console errors', async () => {
    const report = JSON.parse(await text(view.outcome!.report)) as StudyReport;
    const html = await text(view.outcome!.reportHtml);

    expect(report).toMatchObject({ study: 'serving-grid', sampler: 'grid', counts: { total: 6, complete: 6 }, registered: { model: 'quad', version: '2' }, notes: { lambdaPrice: { usdPerGbSecond: 0.0000166667 } } });
    expect(report.history.map((t) => t.number)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(report.best?.number).toBe(view.best!.number);
    const importances = report.importances.byObjective[0]!.values;
    expect(importances.map((v) => v.parameter).sort()).toEqual(['batchSize', 'quantization']);
    // Size depends on the quantization alone: all of its variance is that parameter's.
    expect(importances[0]).toEqual({ parameter: 'quantization', importance: 1 });
    expect(html).not.toMatch(/<script|https?:\/\//);
    const rendered = await render(html, { history: '#chart-history circle.point', bars: '#chart-importance rect.bar', configurations: '#best-configurations tr.config' });
    expect(rendered).toEqual({ errors: [], history: 6, bars: 2, configurations: 5 });
  }, 60_000);
});

describe('workers that die', () => {
  it('fails a dead worker’s trial after its lease, gives its place back, and the study still completes its budget', async () => {
    const started = await call('POST', '/v2/studies', {
      id: 'dead-worker',
      objective: serving({ latencyRuns: 5, accuracyRows: 50 }),
      space: { parameters: { batchSize: { type: 'int', low: 1, high: 16 } } },
      objectives: [{ metric: 'p50_ms', direction: 'minimize' }],
      sampler: { type: 'random' },
      seed: 3,
      maxTrials: 3,
    });
    // A worker takes trial 0 and dies: its lease (1 ms here) runs out and nobody reports for it.
    const dead = await stack.studyTable({ leaseMs: 1 }).ask('dead-worker', 'lane-9.dead');
    expect(dead?.number).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 5));

    const job = await stack.runToEnd(started.json().job!);
    const view = (await call('GET', '/v2/studies/dead-worker')).json();

    expect(job.state).toBe('succeeded');
    expect(view.counts).toEqual({ total: 4, complete: 3, running: 0, pruned: 0, failed: 1 });
    expect(view.trials[0]).toMatchObject({ number: 0, state: 'failed', error: "worker 'lane-9.dead' stopped reporting; its lease ran out" });
    expect(view.trials.slice(1).map((t) => [t.number, t.state])).toEqual([[1, 'complete'], [2, 'complete'], [3, 'complete']]);
  }, 120_000);

  it('has the scheduled sweep fail expired trials of active studies when no lane runs', async () => {
    const table = stack.studyTable({ leaseMs: 1 });
    await table.createStudy('swept', { space: { parameters: { x: { type: 'float', low: 0, high: 1 } } }, objectives: [{ metric: 'y', direction: 'minimize' }], sampler: { type: 'random' }, maxTrials: 2 });
    await table.ask('swept', 'w1');
    await table.ask('swept', 'w2');
    expect(await table.ask('swept', 'w3')).toBeUndefined(); // the budget is taken
    await new Promise((resolve) => setTimeout(resolve, 5));

    // A study on the list that was never written (its create failed after the list's put).
    await createDynamoClient({ endpoint: stack.registry.emulators.dynamoEndpoint }).send(new PutItemCommand({ TableName: stack.table, Item: { pk: { S: 'STUDIES' }, sk: { S: 'ACTIVE#listed-only' }, id: { S: 'listed-only' } } }));
    expect(await stack.studies.listActive()).toContain('listed-only');
    const failed = await stack.studies.sweep();

    expect(failed.swept).toEqual([0, 1]);
    expect(failed['listed-only']).toBeUndefined();
    expect(await stack.studies.listActive()).not.toContain('listed-only');
    expect((await table.ask('swept', 'w3'))?.number).toBe(2); // a place came back
    await table.deactivate('swept');
    expect(await stack.studies.listActive()).not.toContain('swept');
  });
});

describe('a training study with a pruner', () => {
  it('reports validation accuracy per epoch and stops trials below the median, keeping each trained model', async () => {
    const started = await call('POST', '/v2/studies', {
      id: 'train-median',
      objective: { type: 'training', model: 'quad', version: '1', dataset: 'quads', seed: 1 },
      space: { parameters: { learningRate: { type: 'float', low: 0.0005, high: 0.5, log: true }, batchSize: { type: 'categorical', choices: [16, 32] } } },
      objectives: [{ metric: 'accuracy', direction: 'maximize' }],
      sampler: { type: 'random' },
      pruner: { type: 'median', startupTrials: 2 },
      seed: 2,
      maxTrials: 6,
    });
    expect(started.status).toBe(202);

    const job = await stack.runToEnd(started.json().job!);
    const view = (await call('GET', '/v2/studies/train-median')).json();

    expect(job.state).toBe('succeeded');
    const complete = view.trials.filter((t) => t.state === 'complete');
    const pruned = view.trials.filter((t) => t.state === 'pruned');
    expect(complete.length + pruned.length).toBe(6);
    expect(pruned.length).toBeGreaterThan(0);
    for (const t of complete) {
      expect(Object.keys(t.intermediate)).toEqual(['0', '1', '2']);
      expect(t.metrics!.accuracy).toBe(Math.max(...Object.values(t.intermediate)));
      expect(t.metrics!.epochs_run).toBe(3);
      const model = await stack.registry.store.getObjectBytes(keys.tuneTrialModel(job.id, t.number));
      await checkOnnxModel(model!);
    }
    for (const t of pruned) {
      // The median pruner's rule at the trial's last step: its best so far is below the median of
      // the trials that had completed before it at that step.
      const step = Math.max(...Object.keys(t.intermediate).map(Number));
      expect(step).toBeLessThan(2);
      const best = Math.max(...Object.entries(t.intermediate).filter(([s]) => Number(s) <= step).map(([, v]) => v));
      const earlier = complete.filter((c) => c.number < t.number).map((c) => c.intermediate[String(step)]!).sort((a, b) => a - b);
      const median = earlier.length % 2 ? earlier[(earlier.length - 1) / 2]! : (earlier[earlier.length / 2 - 1]! + earlier[earlier.length / 2]!) / 2;
      expect(best).toBeLessThan(median);
    }
    expect(view.best!.metrics!.accuracy).toBe(Math.max(...complete.map((t) => t.metrics!.accuracy!)));
  }, 240_000);
});

describe('a training study over widths and augmentation strengths', () => {
  it('trains an MLP of each trial\'s hidden widths on augmented batches, and refuses augmentation of a data set without images', async () => {
    const started = await call('POST', '/v2/studies', {
      id: 'train-widths',
      objective: { type: 'training', model: 'quad', version: '1', dataset: 'quads', seed: 1 },
      space: {
        parameters: {
          width1: { type: 'int', low: 4, high: 12 },
          width2: { type: 'categorical', choices: [3, 5] },
          epochs: { type: 'categorical', choices: [1] },
          augmentProbability: { type: 'float', low: 0.2, high: 0.8 },
          augmentShift: { type: 'int', low: 1, high: 2 },
          augmentContrast: { type: 'float', low: 0.1, high: 0.5 },
        },
      },
      objectives: [{ metric: 'accuracy', direction: 'maximize' }],
      sampler: { type: 'random' },
      seed: 4,
      maxTrials: 2,
    });
    expect(started.status).toBe(202);
    const job = await stack.runToEnd(started.json().job!);
    const view = (await call('GET', '/v2/studies/train-widths')).json();

    expect(job.state).toBe('succeeded');
    expect(view.trials.map((t) => t.state)).toEqual(['complete', 'complete']);
    for (const t of view.trials) {
      const bytes = (await stack.registry.store.getObjectBytes(keys.tuneTrialModel(job.id, t.number)))!;
      await checkOnnxModel(bytes);
      const proto = decodeModel(bytes);
      const dims = (name: string) => proto.graph!.initializer!.find((i) => i.name === name)!.dims!.map(Number);
      expect([dims('dense1.weight'), dims('dense2.weight'), dims('dense3.weight')]).toEqual([[16, t.params.width1], [t.params.width1, t.params.width2], [t.params.width2, 4]]);
      expect(t.metrics!.epochs_run).toBe(1);
    }

    await pushDataset(stack.registry.store, { name: 'quad-rows', upload: { format: 'jsonl', rows: new TextEncoder().encode(Array.from({ length: 8 }, (_, i) => JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 16], data: new Array(16).fill(i) }], label: i % 4 })).join('\n')) } });
    const refused = await call('POST', '/v2/studies', {
      id: 'train-augment-rows',
      objective: { type: 'training', model: 'quad', version: '1', dataset: 'quad-rows' },
      space: { parameters: { augmentNoise: { type: 'float', low: 0, high: 0.2 } } },
      objectives: [{ metric: 'accuracy', direction: 'maximize' }],
      sampler: { type: 'random' },
      maxTrials: 2,
    });
    expect([refused.status, refused.json().error]).toEqual([400, "invalid search space: parameter 'augmentNoise' augments images; data set 'quad-rows' has no image layout"]);
    expect((await call('GET', '/v2/studies/train-augment-rows')).status).toBe(404);
  }, 240_000);
});

describe('refusals', () => {
  it('refuses an unknown objective, a parameter or metric the objective does not know and a bad space with 400, writing nothing', async () => {
    const base = { id: 'refused', objectives: [{ metric: 'p99_ms', direction: 'minimize' }], sampler: { type: 'random' }, maxTrials: 4 };
    const cases: [unknown, string][] = [
      [{ ...base, objective: { type: 'speed', model: 'quad' } }, "unknown objective 'speed'; known: serving, training"],
      [{ ...base, objective: serving(), space: { parameters: { colour: { type: 'categorical', choices: ['red'] } } } }, "invalid search space: the serving objective has no parameter 'colour'; it reads quantization, perChannel, reduceRange, calibration, graphOptimizationLevel, intraOpThreads, batchSize, memoryMiB"],
      [{ ...base, objective: serving(), space: { parameters: { batchSize: { type: 'int', low: 8, high: 8 } } } }, "invalid search space: parameter 'batchSize': low (8) must be below high (8)"],
      [{ ...base, objective: serving(), objectives: [{ metric: 'loss', direction: 'minimize' }] }, "invalid study: the serving objective measures no metric 'loss'; it measures p50_ms, p99_ms, mean_ms, throughput, accuracy, accuracy_drop, size_mb, cost_per_million, memory_mib"],
      [{ ...base, objective: serving({ model: 'Not A Name' }) }, 'invalid serving objective: model: a model name: [a-z0-9][a-z0-9._-]{0,63}'],
      [{ ...base, objective: serving(), maxTrials: undefined }, 'invalid study: give maxTrials or timeBudgetSeconds (only a grid ends by itself)'],
      [{ ...base, objective: serving(), sampler: { type: 'nsga2' }, objectives: [{ metric: 'p99_ms', direction: 'minimize' }, { metric: 'accuracy', direction: 'maximize' }], register: true }, 'invalid study: register needs a single objective; a Pareto front has no one winner'],
    ];
    for (const [body, error] of cases) {
      const r = await call('POST', '/v2/studies', body);
      expect([r.status, r.json().error]).toEqual([400, error]);
    }
    const unknownVersion = await call('POST', '/v2/studies', { ...base, objective: serving({ version: '9' }) });
    const unknownDataset = await call('POST', '/v2/studies', { ...base, objective: serving({ dataset: 'nope' }) });
    expect([unknownVersion.status, unknownVersion.json().error, unknownDataset.status, unknownDataset.json().error]).toEqual([404, "model 'quad' has no version '9'", 404, "unknown data set 'nope'"]);
    const missing = await call('GET', '/v2/studies/refused');
    expect([missing.status, missing.json().error]).toEqual([404, "no study 'refused'"]);
    expect((await call('POST', '/v2/studies', 'not json')).status).toBe(400);
    expect((await call('GET', '/v2/studies/Bad%20Id')).json().error).toBe("study id 'Bad Id' must match [a-z0-9][a-z0-9._-]{0,63}");
  });
});

describe('mass tune', () => {
  it('starts a serving study from flags, follows it with --watch until it ends, and saves its report', async () => {
    const { server, url: apiUrl } = await serveApi((event) => api(event));
    const dir = await mkdtemp(join(tmpdir(), 'tune-cli-'));
    try {
      await writeFile(join(dir, 'space.json'), JSON.stringify({ parameters: { quantization: { type: 'categorical', choices: ['none', 'fp16'] } } }));
      const env = { ...process.env, MASS_AUTH: '', MASS_TOKEN: '', AWS_ENDPOINT_URL: stack.registry.emulators.awsEndpoint };
      const mass = (...args: string[]) => {
        const cli = spawn(process.execPath, ['functions/cli/mass.ts', '--api', apiUrl, '--bucket', stack.registry.store.bucket, ...args], { env });
        let stdout = '';
        let stderr = '';
        cli.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        return { output: () => ({ stdout, stderr }), exited: once(cli, 'exit') as Promise<[number]> };
      };

      const watching = mass('tune', 'serving', 'quad', '--version', '1', '--dataset', 'quads', '--space', join(dir, 'space.json'), '--objective', 'size_mb:min', '--constraint', 'accuracy_drop<=50', '--id', 'cli-serving', '--watch', '--interval', '0.2');
      await waitFor('the study', async () => (await stack.studies.getStudyRecord('cli-serving').catch(() => undefined))?.job);
      await stack.runToEnd((await stack.studies.getStudyRecord('cli-serving')).job!);
      const [code] = await watching.exited;
      const { stdout, stderr } = watching.output();

      expect(code, stderr).toBe(0);
      expect(stderr).toContain('study cli-serving (job j-');
      expect(stderr).toMatch(/cli-serving succeeded \[#+\] 100% 2\/2 best size_mb [\d.]+ \(trial 1\)/);
      const summary = JSON.parse(stdout) as StudyView;
      expect(summary).toMatchObject({ id: 'cli-serving', state: 'succeeded', counts: { total: 2, complete: 2 }, best: { number: 1, params: { quantization: 'fp16' } } });

      const status = mass('tune', 'status', 'cli-serving', '--report', join(dir, 'report.html'));
      expect((await status.exited)[0], status.output().stderr).toBe(0);
      expect(await readFile(join(dir, 'report.html'), 'utf8')).toBe(await text(summary.outcome!.reportHtml));
      const refused = mass('tune', 'serving', 'quad', '--dataset', 'quads', '--objective', 'speed:fast');
      expect([(await refused.exited)[0], refused.output().stderr]).toEqual([1, "error: objective 'speed:fast' must be <metric>:min or <metric>:max\n"]);
    } finally {
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

async function render(html: string, selectors: Record<string, string>): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'tune-report-'));
  const file = join(dir, 'report.html');
  await writeFile(file, html);
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await (await browser.newContext()).newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`file://${file}`);
    const counts: Record<string, number> = {};
    for (const [name, selector] of Object.entries(selectors)) counts[name] = await page.locator(selector).filter({ visible: true }).count();
    return { errors, ...counts };
  } finally {
    await browser?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
