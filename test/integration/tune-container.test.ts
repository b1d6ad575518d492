/**
 * Tuning studies on the container worker: a study with `placement: container` sends its lanes to the
 * container queue (none to the tune queue), and a real container-worker process
 * (infra/gpu-worker/worker.ts, as the local stack and `mass worker` start it) runs its trials, writes
 * its report and ends its job; a stack without container workers refuses such a study with a 400 and
 * writes nothing.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue, withContainerQueue } from '../../functions/core/jobs/step-queue.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createTuneKind } from '../../functions/core/tune/jobs.ts';
import type { StudyReport } from '../../functions/core/tune/report.ts';
import type { StudyView } from '../../functions/core/tune/service.ts';
import { StudyTable } from '../../functions/core/tune/study-table.ts';
import { createStudiesApiHandler } from '../../functions/studies/app.ts';
import { startWorkerProcess, stopWorkerProcesses, type WorkerProcess } from '../../infra/gpu-worker/processes.ts';
import { LOCAL_AWS_ENV } from '../../infra/local/stack.ts';
import { serveApi } from '../helpers/api-server.ts';
import { apiEvent, waitFor } from '../helpers/batch-stack.ts';
import { jobEnded, queueDepth } from '../helpers/job-delivery.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { quadrantIdx, quadrantMlp } from '../helpers/train-fixtures.ts';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
const NAME = 'tune-container';
const TABLE = `${NAME}-registry`;

let stack: RegistryStack;
let tuneQueueUrl: string;
let containerQueueUrl: string;
let deadLetterQueueUrl: string;
let studies: StudyTable;
let jobs: JobTable;
const workers: WorkerProcess[] = [];

/** The studies API as functions/studies/handler.ts wires it, with or without container workers. */
function studiesApi(containerWorkers: boolean) {
  const api = studiesHandler(containerWorkers);
  return async (method: string, path: string, body?: unknown) => {
    const out = (await api(apiEvent(method, path, body), {} as Context)) as APIGatewayProxyStructuredResultV2;
    return { status: out.statusCode!, json: JSON.parse(out.body as string) as StudyView & { error?: string } };
  };
}

function studiesHandler(containerWorkers: boolean) {
  const runtime = new JobRuntime({
    table: jobs,
    kinds: new JobKinds([createTuneKind({ studies, store: stack.store })]),
    queue: new SqsStepQueue(stack.sqs, withContainerQueue(containerWorkers ? `${NAME}-container-steps` : undefined, () => `${NAME}-tune-steps`)),
    ...(containerWorkers ? { placements: ['lambda', 'container'] as const } : {}),
    visibilitySeconds: 30,
  });
  return createStudiesApiHandler({ studies, jobs, runtime, store: stack.store, log: () => undefined });
}

const depth = (queueUrl: string) => queueDepth(stack.sqs, queueUrl);

const until = (id: string) => jobEnded((job) => jobs.getJob(job), id, 180_000);

/** A container-worker process on the container queue, as the GPU service runs it (CPU here). */
async function startWorker(): Promise<WorkerProcess> {
  const worker = startWorkerProcess({
    ...LOCAL_AWS_ENV,
    AWS_ENDPOINT_URL: stack.emulators.awsEndpoint,
    DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint,
    MODEL_BUCKET: stack.store.bucket,
    REGISTRY_TABLE: TABLE,
    MODEL_CACHE_DIR: await mkdtemp(join(tmpdir(), `${NAME}-worker-`)),
    CONTAINER_STEPS_QUEUE_URL: containerQueueUrl,
    CONTAINER_STEPS_DLQ_URL: deadLetterQueueUrl,
    CONTAINER_VISIBILITY_SECONDS: '30',
    // Two lanes at once on the one worker.
    CONTAINER_CONCURRENCY: '2',
    EXECUTION_PROVIDER: 'cpu',
    INTRA_OP_THREADS: '1',
    WAIT_TIME_SECONDS: '1',
    DRAIN_SECONDS: '0',
  });
  workers.push(worker);
  return worker;
}

/** Both lanes' lines (the worker logs a step after the job's end, which its last step wrote). */
async function lanesDone(worker: WorkerProcess, job: string, lanes = ['lane-0', 'lane-1']): Promise<void> {
  for (const lane of lanes) await worker.waitFor((line) => line.message === 'step done' && line.job === job && line.step === lane, 60_000);
}

const trainingStudy = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  objective: { type: 'training', model: 'quad', version: '1', dataset: 'quads', seed: 1 },
  space: { parameters: { learningRate: { type: 'float', low: 0.01, high: 0.5, log: true }, epochs: { type: 'categorical', choices: [1] } } },
  objectives: [{ metric: 'accuracy', direction: 'maximize' }],
  sampler: { type: 'random' },
  seed: 3,
  maxTrials: 2,
  parallel: 2,
  ...extra,
});

beforeAll(async () => {
  stack = await startRegistryStack(NAME);
  const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
  studies = new StudyTable(dynamo, TABLE, { leaseMs: 30_000 });
  jobs = new JobTable(dynamo, TABLE);
  const queue = async (name: string) => (await stack.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '30' } }))).QueueUrl!;
  tuneQueueUrl = await queue(`${NAME}-tune-steps`);
  containerQueueUrl = await queue(`${NAME}-container-steps`);
  deadLetterQueueUrl = await queue(`${NAME}-container-steps-dlq`);
  await pushModel(stack.store, { name: 'quad', version: '1', bytes: quadrantMlp() });
  const { images, labels } = quadrantIdx(400);
  await pushDataset(stack.store, { name: 'quads', upload: { format: 'idx', images, labels, inputName: 'input', shape: [1, 16] } });
}, 60_000);

afterAll(async () => {
  await stopWorkerProcesses(workers);
  await stack?.stop();
});

describe('a study placed on the container worker', () => {
  it('sends its lanes to the container queue, where a container-worker process runs every trial and ends the study', async () => {
    const call = studiesApi(true);
    const started = await call('POST', '/v2/studies', trainingStudy('on-container', { placement: 'container' }));
    expect(started.status).toBe(202);
    expect(started.json).toMatchObject({ id: 'on-container', state: 'queued', placement: 'container', counts: { total: 0 } });
    const id = started.json.job!;
    expect(await jobs.getJob(id)).toMatchObject({ kind: 'tune', placement: 'container', stepsTotal: 2 });
    expect([await depth(containerQueueUrl), await depth(tuneQueueUrl)]).toEqual([2, 0]);

    const worker = await startWorker();
    const job = await until(id);
    await lanesDone(worker, id);
    const view = (await call('GET', '/v2/studies/on-container')).json;

    expect(job).toMatchObject({ state: 'succeeded', placement: 'container', stepsSucceeded: 2, stepsFailed: 0, result: { study: 'on-container', completed: 2 } });
    const lanes = worker.lines.filter((line) => line.message === 'step done' && line.job === id);
    expect(lanes.map((line) => [line.step, line.outcome]).sort()).toEqual([['lane-0', 'succeeded'], ['lane-1', 'succeeded']]);
    expect(view).toMatchObject({ state: 'succeeded', placement: 'container', counts: { total: 2, complete: 2, running: 0, pruned: 0, failed: 0 } });
    const trials = await studies.listTrials('on-container');
    for (const t of trials) {
      // Asked by the container's lanes, one epoch each, the trained model kept under the job.
      expect(t.worker).toMatch(/^lane-[01]\.[0-9a-f]{12}$/);
      expect(Object.keys(t.intermediate)).toEqual(['0']);
      expect(t.metrics!.accuracy).toBe(t.intermediate['0']);
      expect(t.metrics!.epochs_run).toBe(1);
      await checkOnnxModel((await stack.store.getObjectBytes(keys.tuneTrialModel(id, t.number)))!);
    }
    const best = trials.reduce((a, b) => (b.metrics!.accuracy! > a.metrics!.accuracy! ? b : a));
    expect(view.best).toEqual({ number: best.number, params: best.params, metrics: best.metrics });
    const report = JSON.parse(Buffer.from((await stack.store.getObjectBytes(keys.tuneReport(id)))!).toString('utf8')) as StudyReport;
    expect(report).toMatchObject({ study: 'on-container', counts: { total: 2, complete: 2 }, best: { number: best.number } });
    expect(view.outcome).toEqual({ report: keys.tuneReport(id), reportHtml: keys.tuneReportHtml(id) });
    expect(await studies.listActive()).not.toContain('on-container');
    expect([await depth(containerQueueUrl), await depth(tuneQueueUrl)]).toEqual([0, 0]);
  }, 240_000);

  it('runs a serving study there too: variants built and measured on the container, the winner registered unrouted', async () => {
    const call = studiesApi(true);
    const started = await call('POST', '/v2/studies', {
      id: 'serving-on-container',
      objective: { type: 'serving', model: 'quad', version: '1', dataset: 'quads', accuracyRows: 50, latencyRuns: 5, warmupRuns: 1 },
      space: { parameters: { quantization: { type: 'categorical', choices: ['none', 'int8-dynamic'] } } },
      objectives: [{ metric: 'size_mb', direction: 'minimize' }],
      sampler: { type: 'grid' },
      parallel: 2,
      register: true,
      placement: 'container',
    });
    expect(started.status).toBe(202);
    const id = started.json.job!;
    const job = await until(id);
    await lanesDone(workers[0]!, id);
    const view = (await call('GET', '/v2/studies/serving-on-container')).json;

    expect(job).toMatchObject({ state: 'succeeded', placement: 'container' });
    expect(workers[0]!.lines.filter((line) => line.message === 'step done' && line.job === id)).toHaveLength(2);
    expect(view.counts).toEqual({ total: 2, complete: 2, running: 0, pruned: 0, failed: 0 });
    const int8 = view.trials.find((t) => t.params.quantization === 'int8-dynamic')!;
    expect(view.best).toEqual({ number: int8.number, params: int8.params, metrics: int8.metrics });
    expect(int8.metrics!.size_mb).toBeLessThan(view.trials.find((t) => t.params.quantization === 'none')!.metrics!.size_mb!);
    expect(view.outcome!.registered).toEqual({ model: 'quad', version: '2' });
    const manifest = await stack.store.getManifest('quad', '2');
    expect(manifest.lineage).toMatchObject({ sourceVersion: '1', method: 'tune', options: { study: 'serving-on-container', trial: int8.number, quantization: 'int8-dynamic' } });
    await checkOnnxModel((await stack.store.getModelBytes(manifest)).bytes);
    expect(await stack.store.listRoutableVersions('quad')).toEqual({ versions: ['1', '2'], uploaded: ['1'] });
    expect([await depth(containerQueueUrl), await depth(tuneQueueUrl)]).toEqual([0, 0]);
  }, 240_000);

  it('fails the running trial at once when its container is told to stop, and another container goes on with the lane', async () => {
    const call = studiesApi(true);
    // A grid: trial 0 trains 500 epochs (stopped long before its end), trial 1 one epoch.
    const started = await call('POST', '/v2/studies', trainingStudy('stopped-worker', { space: { parameters: { epochs: { type: 'categorical', choices: [500, 1] } } }, sampler: { type: 'grid' }, maxTrials: undefined, parallel: 1, placement: 'container' }));
    expect(started.status).toBe(202);
    const id = started.json.job!;
    const first = workers[0]!;
    await waitFor('trial 0 running', async () => (await studies.listTrials('stopped-worker')).find((t) => t.number === 0 && t.state === 'running' && Object.keys(t.intermediate).length > 0));

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    const [trial0] = await studies.listTrials('stopped-worker');
    const step = (await jobs.getStep(id, 'lane-0'))!;

    expect(trial0).toMatchObject({ number: 0, state: 'failed', error: 'its worker stopped before the trial ended', params: { epochs: 500 } });
    expect(first.lines.filter((line) => line.job === id && line.message === 'step done').map((line) => line.outcome)).toEqual(['continued']);
    expect(step).toMatchObject({ state: 'pending', segments: 2, checkpoint: { completed: 0, pruned: 0, failed: 0 } });
    expect((await jobs.getJob(id))!.state).toBe('running');
    expect(await depth(containerQueueUrl)).toBe(1);

    const second = await startWorker();
    const job = await until(id);
    await lanesDone(second, id, ['lane-0']);
    const trials = await studies.listTrials('stopped-worker');

    expect(job).toMatchObject({ state: 'succeeded', placement: 'container', result: { study: 'stopped-worker', completed: 1 } });
    expect(trials.map((t) => [t.number, t.state, t.params.epochs])).toEqual([[0, 'failed', 500], [1, 'complete', 1]]);
    expect([await depth(containerQueueUrl), await depth(tuneQueueUrl)]).toEqual([0, 0]);
  }, 240_000);

  it('refuses a container placement where the stack runs no container worker (400), and an unknown placement, writing nothing', async () => {
    const api = studiesHandler(false);
    const call = studiesApi(false);
    const refused = await call('POST', '/v2/studies', trainingStudy('no-container', { placement: 'container' }));
    expect([refused.status, refused.json.error]).toEqual([400, "a tune job cannot be placed on 'container': this stack runs lambda workers only"]);
    const unknown = await call('POST', '/v2/studies', trainingStudy('no-container', { placement: 'gpu' }));
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatch(/^invalid study: placement: /);

    // mass tune sends --placement as the study's placement.
    const { server, url } = await serveApi((event) => api(event));
    try {
      const cli = spawn(process.execPath, ['functions/cli/mass.ts', '--api', url, '--bucket', stack.store.bucket, 'tune', 'train', 'quad', '--version', '1', '--dataset', 'quads', '--trials', '1', '--id', 'no-container', '--placement', 'container'], {
        env: { ...process.env, MASS_AUTH: '', MASS_TOKEN: '', AWS_ENDPOINT_URL: stack.emulators.awsEndpoint },
      });
      let stderr = '';
      cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code] = (await once(cli, 'exit')) as [number];
      expect([code, stderr]).toEqual([1, "error: 400: a tune job cannot be placed on 'container': this stack runs lambda workers only\n"]);
    } finally {
      server.close();
    }

    expect((await call('GET', '/v2/studies/no-container')).status).toBe(404);
    expect(await studies.listActive()).not.toContain('no-container');
    expect([await depth(containerQueueUrl), await depth(tuneQueueUrl)]).toEqual([0, 0]);
    // Without a placement the same stack runs the study on Lambda: its lanes go to the tune queue.
    const lambda = await call('POST', '/v2/studies', trainingStudy('on-lambda', { maxTrials: 1, parallel: 1 }));
    expect([lambda.status, lambda.json.state]).toEqual([202, 'queued']);
    expect(lambda.json.placement).toBe('lambda');
    expect([await depth(containerQueueUrl), await depth(tuneQueueUrl)]).toEqual([0, 1]);
  });
});
