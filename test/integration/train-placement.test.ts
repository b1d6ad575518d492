/**
 * Job placement on the container worker: a train job whose estimated size is over the threshold is
 * placed on the container queue and run to its end, exactly once, by a real container-worker
 * process (infra/gpu-worker/worker.ts, started as the local stack and `mass worker` start it); one
 * under the threshold runs on the Lambda path (the train queue and the Lambda step handler).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue, withContainerQueue } from '../../functions/core/jobs/step-queue.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { estimateTrainingSize, parseTrainJobRequest, trainJobKind } from '../../functions/core/train/jobs.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { createTrainApiHandler } from '../../functions/train/app.ts';
import { startWorkerProcess, stopWorkerProcesses, type WorkerProcess } from '../../infra/gpu-worker/processes.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { deliverStep, jobEnded, queueDepth } from '../helpers/job-delivery.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { mlp, quadrantIdx } from '../helpers/train-fixtures.ts';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
const NAME = 'train-placement';
// The quadrant MLP has 173 parameters and the data set 180 training rows: 31,140 per epoch.
const THRESHOLD = 50_000;

let stack: RegistryStack;
let trainQueueUrl: string;
let containerQueueUrl: string;
let deadLetterQueueUrl: string;
let runtime: JobRuntime;
const workers: WorkerProcess[] = [];
const silent = () => undefined;

const finetune = (epochs: number, extra: Record<string, unknown> = {}) => ({
  method: 'finetune',
  dataset: 'quadrants',
  training: { epochs, batchSize: 16, learningRate: 0.05, seed: 7, validationFraction: 0.25 },
  ...extra,
});

async function submit(body: unknown, api = createTrainApiHandler({ store: stack.store, runtime, log: silent })): Promise<{ statusCode: number; body: Record<string, unknown> }> {
  const out = await api(apiEvent('POST', '/v2/models/quad/versions/1/train', body));
  return { statusCode: out.statusCode!, body: JSON.parse(out.body as string) as Record<string, unknown> };
}

const depth = (queueUrl: string) => queueDepth(stack.sqs, queueUrl);

const until = (id: string) => jobEnded((job) => runtime.get(job), id, 180_000);

/** Versions of `quad` that a given job registered. */
async function versionsOf(job: string): Promise<string[]> {
  const found: string[] = [];
  for (const version of await stack.store.listVersions('quad')) {
    if ((await stack.store.getManifest('quad', version)).lineage?.options?.job === job) found.push(version);
  }
  return found;
}

beforeAll(async () => {
  stack = await startRegistryStack(NAME);
  const queue = async (name: string) => (await stack.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '30' } }))).QueueUrl!;
  trainQueueUrl = await queue(`${NAME}-train-steps`);
  containerQueueUrl = await queue(`${NAME}-container-steps`);
  deadLetterQueueUrl = await queue(`${NAME}-container-steps-dlq`);
  runtime = new JobRuntime({
    table: new JobTable(createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }), `${NAME}-registry`),
    kinds: new JobKinds([trainJobKind({ store: stack.store, containerThreshold: THRESHOLD, pauseMarginMs: 0 })]),
    // As the train API wires it where the stack runs the container worker (functions/train/handler.ts).
    queue: new SqsStepQueue(stack.sqs, withContainerQueue(`${NAME}-container-steps`, () => `${NAME}-train-steps`)),
    placements: ['lambda', 'container'],
    visibilitySeconds: 30,
    retryDelaySeconds: 0,
    reserveMs: 0,
  });
  await pushModel(stack.store, { name: 'quad', bytes: mlp() });
  const { images, labels } = quadrantIdx();
  await pushDataset(stack.store, { name: 'quadrants', upload: { format: 'idx', images, labels, shape: [1, 16] } });
});

afterAll(async () => {
  await stopWorkerProcesses(workers);
  await stack?.stop();
});

describe('train job placement', () => {
  it('estimates a job as parameters x training rows x epochs', async () => {
    expect(await estimateTrainingSize(stack.store, parseTrainJobRequest({ ...finetune(2), model: 'quad', version: '1' }))).toBe(173 * 180 * 2);
  });

  it('places a job over the threshold on the container queue, where a container-worker process runs it exactly once', async () => {
    const submitted = await submit(finetune(2));
    expect(submitted.statusCode).toBe(202);
    expect(submitted.body).toMatchObject({ kind: 'train', state: 'queued', placement: 'container' });
    expect(await depth(containerQueueUrl)).toBe(1);
    expect(await depth(trainQueueUrl)).toBe(0);

    const worker = startWorkerProcess({
      AWS_ENDPOINT_URL: stack.emulators.awsEndpoint,
      DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
      MODEL_BUCKET: `${NAME}-models`,
      REGISTRY_TABLE: `${NAME}-registry`,
      MODEL_CACHE_DIR: await mkdtemp(join(tmpdir(), `${NAME}-worker-`)),
      CONTAINER_STEPS_QUEUE_URL: containerQueueUrl,
      CONTAINER_STEPS_DLQ_URL: deadLetterQueueUrl,
      CONTAINER_VISIBILITY_SECONDS: '30',
      EXECUTION_PROVIDER: 'cpu',
      INTRA_OP_THREADS: '1',
      WAIT_TIME_SECONDS: '1',
      DRAIN_SECONDS: '0',
    });
    workers.push(worker);
    const id = submitted.body.id as string;
    const done = await worker.waitFor((line) => line.message === 'step done' && line.job === id, 120_000);
    const job = await until(id);

    expect(done).toMatchObject({ job: id, step: 'train', outcome: 'succeeded' });
    expect(job.state).toBe('succeeded');
    expect(job.attempts).toBe(1);
    const step = (await new JobTable(createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }), `${NAME}-registry`).getStep(id, 'train'))!;
    expect(step).toMatchObject({ state: 'succeeded', segments: 1, attempts: 1 });
    expect(await versionsOf(id)).toEqual([(job.result as { version: string }).version]);
    expect(worker.lines.filter((line) => line.job === id && line.message === 'step done')).toHaveLength(1);
    expect(await depth(containerQueueUrl)).toBe(0);
    expect(await depth(trainQueueUrl)).toBe(0);
  });

  it('runs a job under the threshold on the Lambda path', async () => {
    const submitted = await submit(finetune(1));
    expect(submitted.statusCode).toBe(202);
    expect(submitted.body).toMatchObject({ placement: 'lambda' });
    expect(await depth(containerQueueUrl)).toBe(0);
    expect(await depth(trainQueueUrl)).toBe(1);
    const delivered = await deliverStep(stack.sqs, trainQueueUrl, createJobStepHandler(runtime), { getRemainingTimeInMillis: () => 900_000 }, 1);
    expect(delivered).toEqual({ received: 1, failures: [] });
    const job = await runtime.get(submitted.body.id as string);
    expect(job).toMatchObject({ state: 'succeeded', attempts: 1, placement: 'lambda' });
    expect(await versionsOf(job.id)).toEqual([(job.result as { version: string }).version]);
  });

  it('takes an explicit placement over the estimate', async () => {
    const submitted = await submit(finetune(2, { placement: 'lambda' }));
    expect(submitted.body).toMatchObject({ placement: 'lambda' });
    expect(await depth(containerQueueUrl)).toBe(0);
    expect(await depth(trainQueueUrl)).toBe(1);
    await deliverStep(stack.sqs, trainQueueUrl, createJobStepHandler(runtime), { getRemainingTimeInMillis: () => 900_000 }, 1);
    expect((await runtime.get(submitted.body.id as string)).state).toBe('succeeded');
  });

  it('refuses a job asking for the container worker where the stack runs none, and starts nothing', async () => {
    const lambdaOnly = new JobRuntime({
      table: new JobTable(createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }), `${NAME}-registry`),
      kinds: new JobKinds([trainJobKind({ store: stack.store, containerThreshold: THRESHOLD })]),
      queue: new SqsStepQueue(stack.sqs, withContainerQueue(undefined, () => `${NAME}-train-steps`)),
      visibilitySeconds: 30,
    });
    const api = createTrainApiHandler({ store: stack.store, runtime: lambdaOnly, log: silent });
    const asked = await submit(finetune(1, { placement: 'container' }), api);
    expect(asked).toEqual({ statusCode: 400, body: { error: "a train job cannot be placed on 'container': this stack runs lambda workers only" } });
    // Over the threshold but no container worker: Lambda, continued across invocations from checkpoints.
    const large = await submit(finetune(2), api);
    expect(large.body).toMatchObject({ placement: 'lambda' });
    expect(await depth(containerQueueUrl)).toBe(0);
    await deliverStep(stack.sqs, trainQueueUrl, createJobStepHandler(lambdaOnly), { getRemainingTimeInMillis: () => 900_000 }, 1);
    expect((await runtime.get(large.body.id as string)).state).toBe('succeeded');
  });
});
