import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { Context, SQSRecord } from 'aws-lambda';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJobDeadLetterHandler } from '../../functions/adapters/job-steps.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createEvaluateApiHandler } from '../../functions/evaluate/app.ts';
import { createJobsApiHandler } from '../../functions/jobs/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { createLocalEvaluateWorker, drainEvaluateQueue, pollOnce } from '../../infra/local/evaluate-worker.ts';
import { apiEvent, waitFor } from '../helpers/batch-stack.ts';
import { serveApi } from '../helpers/api-server.ts';

// Evaluation as a job of the job runtime: the job record in dynalite read through both routes (the
// per-version one and GET /v2/jobs/{id}), its step continued from its checkpoint across invocations
// of the worker handler, cancel, and duplicate submissions. A small model (iris, 150 rows) and the
// accuracy scenario only: four planned steps (three chunks of 50 rows and the report).
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.EVALUATE_WORKER_LOG_LEVEL = 'SILENT';
const BUCKET = 'evaluate-jobs-test';
const irisDir = 'fixtures/models/iris-label';
const expected = JSON.parse(await readFile(`${irisDir}/expected.json`, 'utf8')) as { rows: number; sklearn_correct: number };
const REQUEST = { dataset: 'iris', baseline: null, scenarios: ['accuracy'], options: { chunkRows: 50, bootstrap: { resamples: 50 } } };
/**
 * What an invocation is told it has left: 55 s after the worker's 15 s reserve, below the 60 s an
 * accuracy chunk or the report may take, so each invocation runs one planned step and checkpoints.
 */
const TIGHT_MS = 70_000;
const VERDICT = { passed: true, reasons: ['error rate 0.00% in every scenario (150 accuracy rows); the policy allows at most 0.00%'] };
const ROOMY_MS = 900_000;

let emulators: Emulators;
let worker: ReturnType<typeof createLocalEvaluateWorker>;
let queueUrl: string;
let evaluateApi: ReturnType<typeof createEvaluateApiHandler>;
let jobsApi: ReturnType<typeof createJobsApiHandler>;
let cacheDir: string;
let server: Server;
let apiUrl: string;

async function call(api: 'evaluate' | 'jobs', method: string, path: string, body?: unknown) {
  const event = apiEvent(method, path, body);
  const result = api === 'evaluate' ? await evaluateApi(event) : await jobsApi(event, {} as Context);
  return { status: result.statusCode!, json: JSON.parse(result.body ?? '') };
}

/** One Lambda invocation of the worker with one message; false when the queue had none. */
const invoke = (remainingMs: number) => pollOnce({ sqs: worker.sqs, queueUrl, handler: worker.handler, remainingMs, waitSeconds: 1 });

beforeAll(async () => {
  emulators = await startEmulators();
  cacheDir = await mkdtemp(join(tmpdir(), 'evaluate-jobs-'));
  worker = createLocalEvaluateWorker({
    awsEndpoint: emulators.awsEndpoint,
    dynamoEndpoint: emulators.dynamoEndpoint,
    bucket: BUCKET,
    table: 'evaluate-jobs-registry',
    queueName: 'evaluate-jobs-steps',
    cacheDir,
    intraOpThreads: 1,
  });
  await worker.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  queueUrl = await worker.ensureResources();
  evaluateApi = createEvaluateApiHandler({ service: worker.service, maxBodyBytes: 65536, logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'test' }) });
  jobsApi = createJobsApiHandler({ table: worker.table, log: () => undefined });
  const irisBytes = await readFile(`${irisDir}/model.onnx`);
  for (const version of ['1', '2']) await pushModel(worker.store, { name: 'iris', version, bytes: irisBytes });
  const rows = await readFile(`${irisDir}/iris.jsonl`);
  await pushDataset(worker.store, { name: 'iris', upload: { format: 'jsonl', rows } });
  await pushDataset(worker.store, { name: 'iris-doomed', upload: { format: 'jsonl', rows } });
  // Both APIs over HTTP for the CLI, routed as API Gateway routes them to their functions.
  ({ server, url: apiUrl } = await serveApi((event) => (event.rawPath.startsWith('/v2/jobs/') ? jobsApi(event) : evaluateApi(event))));
}, 120_000);

afterAll(async () => {
  server?.close();
  await emulators?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe('an evaluation job', () => {
  it('continues from its checkpoint in each new invocation, one planned step each when time is short, and ends once', async () => {
    const started = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', REQUEST);
    expect(started.status).toBe(202);
    const { id, job } = started.json as { id: string; job: string };
    expect(started.json).toMatchObject({ model: 'iris', version: '1', baseline: null, status: 'queued', steps: 4 });
    expect((await call('jobs', 'GET', `/v2/jobs/${job}`)).json).toMatchObject({ id: job, kind: 'evaluate', state: 'queued', parent: { model: 'iris', version: '1' }, stepsTotal: 1 });

    const seen: unknown[] = [];
    while (await invoke(TIGHT_MS)) {
      const record = (await call('jobs', 'GET', `/v2/jobs/${job}`)).json as { state: string; progress: { done: number; total: number; ratePerSecond: number } };
      const step = (await worker.table.getStep(job, 'evaluation'))!;
      expect(record.progress.ratePerSecond).toBeGreaterThan(0);
      seen.push([record.state, record.progress.done, record.progress.total, step.checkpoint ?? null, step.segments]);
    }

    // Each invocation went on from where the last one stopped; no step ran twice.
    expect(seen).toEqual([
      ['running', 1, 4, { next: 1 }, 2],
      ['running', 2, 4, { next: 2 }, 3],
      ['running', 3, 4, { next: 3 }, 4],
      ['succeeded', 4, 4, { next: 3 }, 4],
    ]);
    const record = (await call('jobs', 'GET', `/v2/jobs/${job}`)).json;
    expect(record).toMatchObject({
      state: 'succeeded',
      attempts: 4,
      stepsSucceeded: 1,
      stepsFailed: 0,
      result: { reportKey: `evals/iris/1/${id}/report.json`, reportHtmlKey: `evals/iris/1/${id}/report.html`, verdict: VERDICT },
      links: { self: `/v2/jobs/${job}`, cancel: `/v2/jobs/${job}/cancel` },
    });
    const status = (await call('evaluate', 'GET', `/v2/models/iris/versions/1/evaluations/${id}`)).json;
    expect(status).toMatchObject({ id, job, status: 'succeeded', progress: { done: 4, total: 4 }, verdict: VERDICT, reportKey: `evals/iris/1/${id}/report.json` });
    expect(status.report.candidate.classification.top1.value).toBe(expected.sklearn_correct / 150);
    expect(status.report.candidate.errors.accuracy).toMatchObject({ errors: 0, inferences: 150 });
  });

  it('runs every planned step in one invocation when the time allows', async () => {
    const { json } = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', REQUEST);

    expect(await drainEvaluateQueue({ sqs: worker.sqs, queueUrl, handler: worker.handler, remainingMs: ROOMY_MS, waitSeconds: 1 })).toBe(1);

    expect(await worker.table.getStep(json.job, 'evaluation')).toMatchObject({ state: 'succeeded', segments: 1, attempts: 1 });
    expect((await call('jobs', 'GET', `/v2/jobs/${json.job}`)).json).toMatchObject({ state: 'succeeded', attempts: 1, progress: { done: 4, total: 4 } });
  });

  it('stops when cancelled: its continuation does nothing, the steps done keep their results, no report is written', async () => {
    const { json } = await call('evaluate', 'POST', '/v2/models/iris/versions/2/evaluate', REQUEST);
    const { id, job } = json as { id: string; job: string };
    expect(await invoke(TIGHT_MS)).toBe(true);

    const cancelled = await call('jobs', 'POST', `/v2/jobs/${job}/cancel`);
    expect([cancelled.status, cancelled.json.state]).toEqual([200, 'cancelled']);
    expect(await invoke(TIGHT_MS)).toBe(true); // the continuation the first invocation queued
    expect(await invoke(TIGHT_MS)).toBe(false);

    expect((await call('evaluate', 'GET', `/v2/models/iris/versions/2/evaluations/${id}`)).json).toMatchObject({
      status: 'cancelled',
      error: 'cancelled by request',
      progress: { done: 1, total: 4, next: 'accuracy rows 50-100' },
    });
    expect(await worker.table.getStep(job, 'evaluation')).toMatchObject({ state: 'pending', checkpoint: { next: 1 }, segments: 2 });
    expect(await worker.store.getObjectBytes(keys.evalStep('iris', '2', id, 0))).toBeDefined();
    expect(await worker.store.getObjectBytes(keys.evalStep('iris', '2', id, 1))).toBeUndefined();
    expect(await worker.store.getObjectBytes(keys.evalReport('iris', '2', id))).toBeUndefined();
    expect((await call('evaluate', 'GET', `/v2/models/iris/versions/2/evaluations/${id}/report.html`)).status).toBe(404);
    expect((await call('jobs', 'POST', `/v2/jobs/${job}/cancel`)).json.state).toBe('cancelled');
  });

  it('is the same job for a duplicate submission (same id and request), runs once, and refuses the id with another request', async () => {
    const body = { ...REQUEST, id: 'nightly' };
    const first = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', body);
    const again = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', body);
    const other = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', { ...body, options: { ...REQUEST.options, chunkRows: 75 } });
    const otherVersion = await call('evaluate', 'POST', '/v2/models/iris/versions/2/evaluate', body);

    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.json).toEqual(first.json);
    expect(first.json).toMatchObject({ id: 'nightly', status: 'queued', location: '/v2/models/iris/versions/1/evaluations/nightly' });
    expect([other.status, other.json]).toEqual([409, { error: "evaluation 'nightly' already exists with a different request" }]);
    // Evaluation ids are per version: the same id on another version is another job.
    expect(otherVersion.status).toBe(202);
    expect(otherVersion.json.job).not.toBe(first.json.job);

    // The duplicate sent the queued job's step again; the second delivery finds the job ended.
    expect(await drainEvaluateQueue({ sqs: worker.sqs, queueUrl, handler: worker.handler, remainingMs: ROOMY_MS, waitSeconds: 1 })).toBe(3);
    expect((await call('jobs', 'GET', `/v2/jobs/${first.json.job}`)).json).toMatchObject({ state: 'succeeded', attempts: 1, stepsSucceeded: 1 });
    const resubmitted = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', body);
    expect([resubmitted.status, resubmitted.json.job, resubmitted.json.status]).toEqual([202, first.json.job, 'succeeded']);
  });

  it('ends failed with the reason after its bounded attempts when its data set disappears mid-run, keeping the steps done', async () => {
    const { json } = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', { ...REQUEST, dataset: 'iris-doomed' });
    const { id, job } = json as { id: string; job: string };
    expect(await invoke(TIGHT_MS)).toBe(true);
    await worker.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: keys.datasetManifest('iris-doomed') }));

    // In this process, each failed attempt retried at once (a queue would wait its retry delay).
    const done = await worker.service.runToCompletion('iris', '1', id);

    const error = "step evaluation failed: unknown data set 'iris-doomed' (after 3 attempts)";
    expect(done).toMatchObject({ status: 'failed', error, nextStep: 1 });
    expect((await call('jobs', 'GET', `/v2/jobs/${job}`)).json).toMatchObject({ state: 'failed', error, attempts: 4, stepsFailed: 1 });
    expect((await call('evaluate', 'GET', `/v2/models/iris/versions/1/evaluations/${id}`)).json).toMatchObject({ status: 'failed', error, progress: { done: 1, total: 4 } });
    expect(await worker.store.getObjectBytes(keys.evalStep('iris', '1', id, 0))).toBeDefined();
    // The continuation the first invocation queued finds the job ended, and is deleted.
    expect(await invoke(TIGHT_MS)).toBe(true);
    expect(await invoke(TIGHT_MS)).toBe(false);
    expect((await call('jobs', 'GET', `/v2/jobs/${job}`)).json).toMatchObject({ state: 'failed', attempts: 4 });
  });
});

describe('the dead-letter consumer', () => {
  it('ends an evaluation failed, with that reason, when its step message reached the dead-letter queue', async () => {
    const { json } = await call('evaluate', 'POST', '/v2/models/iris/versions/1/evaluate', REQUEST);
    const received = await worker.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }));
    const message = received.Messages![0]!;
    await worker.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }));
    const record = { messageId: message.MessageId!, receiptHandle: message.ReceiptHandle!, body: message.Body!, attributes: {}, messageAttributes: {} } as SQSRecord;

    const response = await createJobDeadLetterHandler(worker.service.runtime)({ Records: [record] });

    expect(response.batchItemFailures).toEqual([]);
    expect((await call('evaluate', 'GET', `/v2/models/iris/versions/1/evaluations/${json.id}`)).json).toMatchObject({
      status: 'failed',
      error: 'step evaluation failed: its message went to the dead-letter queue: no delivery could run it',
      progress: { done: 0, total: 4, next: 'accuracy rows 0-50' },
    });
  });
});

describe('mass evaluate --watch', () => {
  it("shows the job's progress line as it changes until the evaluation ends, then the report's summary", async () => {
    const cli = spawn(
      process.execPath,
      ['functions/cli/mass.ts', '--api', apiUrl, 'evaluate', 'iris', '--version', '2', '--dataset', 'iris', '--no-baseline', '--scenarios', 'accuracy', '--options', JSON.stringify(REQUEST.options), '--watch', '--interval', '0.02'],
      { env: { ...process.env, MASS_AUTH: '', MASS_TOKEN: '' } },
    );
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(cli, 'exit');
    await waitFor('the CLI to show the queued job', async () => (stderr.includes('queued') ? true : undefined), 60_000, 10);
    // One planned step per invocation, each shown before the next runs.
    for (let done = 1; done <= 4; done++) {
      expect(await invoke(TIGHT_MS)).toBe(true);
      const shown = done < 4 ? ` ${done}/4 ` : 'succeeded';
      await waitFor(`the CLI to show ${shown}`, async () => (stderr.includes(shown) ? true : undefined), 60_000, 10);
    }
    const [code] = await exited;

    const id = /^evaluation (\S+) of iris version 2: 4 steps queued \(job j-[0-9a-f]{32}\)$/m.exec(stdout)?.[1];
    expect(id).toBeDefined();
    // Rates and times left depend on the machine (a line that changed only in them is one line here);
    // the counts, bar and stage do not. Moments the CLI may or may not catch (running before the first
    // progress report, before the first step, after the last) are left out.
    const lines = stderr
      .trimEnd()
      .split('\n')
      .map((line) => line.replace(/ \d+\.\d\/s( eta \S+)?/, ''))
      .filter((line, i, all) => line !== all[i - 1] && !/ running \S+ (0|100)% ([04]\/4|0\/1)/.test(line));
    expect(lines).toEqual([
      `evaluation ${id} queued [--------------------] 0% 0/1`,
      `evaluation ${id} running [#####---------------] 25% 1/4 accuracy rows 50-100`,
      `evaluation ${id} running [##########----------] 50% 2/4 accuracy rows 100-150`,
      `evaluation ${id} running [###############-----] 75% 3/4 report`,
      `evaluation ${id} succeeded [####################] 100% 4/4`,
    ]);
    expect(stdout).toContain(`version 2 on iris (150 rows)\n  top-1 ${((expected.sklearn_correct / 150) * 100).toFixed(2)}% [`);
    expect(stdout).toContain('gate: PASS (policy from default)');
    expect(code).toBe(0);
  }, 120_000); // the CLI's own start-up is slow on a loaded machine
});
