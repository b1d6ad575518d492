/**
 * Entry point of the worker container (infra/gpu-worker/Dockerfile), of `mass worker`, and of the
 * local stack's container worker. It polls the GPU shard queue (batch jobs routed to GPUs), the
 * container queue (jobs of any kind placed on the container worker, container-jobs.ts), or both.
 *
 *   MODEL_BUCKET, REGISTRY_TABLE       where models, inputs, outputs and job records are
 *   WORKER_QUEUE_URL                   the shard queue to poll (default GPU_SHARD_QUEUE_URL, or the URL of GPU_SHARD_QUEUE_NAME)
 *   CONTAINER_STEPS_QUEUE_URL          the container queue (or CONTAINER_STEPS_QUEUE_NAME), and its
 *   CONTAINER_STEPS_DLQ_URL            dead-letter queue (or _NAME); at least one of the two step queues is needed
 *   EXECUTION_PROVIDER=cuda|cpu        cuda (default) tries the CUDA provider and falls back to CPU
 *   INTRA_OP_THREADS                   onnxruntime threads per session (default: every CPU)
 *   VISIBILITY_TIMEOUT=60              seconds, the step lease, renewed with the message's visibility while a shard runs
 *   DRAIN_SECONDS=100                  on SIGTERM, how long the current shard may still run (ECS stopTimeout is 120)
 *   WORKER_CONCURRENCY=2               shards in progress at once (the second fills the first one's I/O waits)
 *   CONTAINER_CONCURRENCY=1            container-queue steps at once (a training step uses every core)
 */
import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createBatchRuntime } from '../../functions/core/batch/runtime.ts';
import { ConfigError } from '../../functions/core/platform/errors.ts';
import { createContainerJobRuntime } from './container-jobs.ts';
import { ContainerWorker, type WorkerLog } from './container-worker.ts';

const log: WorkerLog = (level, message, fields = {}) => {
  process.stdout.write(`${JSON.stringify({ level, message, pid: process.pid, time: new Date().toISOString(), ...fields })}\n`);
};

const env = process.env;
const provider = (env.EXECUTION_PROVIDER ?? 'cuda').toLowerCase();
if (provider !== 'cuda' && provider !== 'cpu') throw new ConfigError(`EXECUTION_PROVIDER must be cuda or cpu, got ${provider}`);
const workers: ContainerWorker[] = [];

const shardQueue = env.WORKER_QUEUE_URL || env.GPU_SHARD_QUEUE_URL || env.GPU_SHARD_QUEUE_NAME;
let batchRuntime: ReturnType<typeof createBatchRuntime> | undefined;
if (shardQueue) {
  const runtime = createBatchRuntime({
    // A job's merge step goes back to the queue this worker polls.
    env: { ...env, GPU_SHARD_QUEUE_URL: env.GPU_SHARD_QUEUE_URL || env.WORKER_QUEUE_URL || '' },
    log,
    // CUDA first, CPU for the nodes CUDA does not take; ModelSessions falls back to CPU alone when
    // the CUDA provider cannot load (no GPU, no driver, or an image built without it).
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: Number(env.CUDA_DEVICE_ID ?? 0) }, 'cpu'] : ['cpu'],
    visibilitySeconds: Number(env.VISIBILITY_TIMEOUT ?? 60),
  });
  batchRuntime = runtime;
  const queue = env.WORKER_QUEUE_URL || runtime.config.gpuShardQueue || shardQueue;
  const queueUrl = /^https?:\/\//.test(queue) ? queue : (await runtime.sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl!;
  workers.push(
    new ContainerWorker({
      sqs: runtime.sqs,
      queueUrl,
      runtime: runtime.jobs,
      visibilityTimeout: Number(env.VISIBILITY_TIMEOUT ?? 60),
      waitTimeSeconds: Number(env.WAIT_TIME_SECONDS ?? 20),
      concurrency: Number(env.WORKER_CONCURRENCY ?? 2),
      log,
    }),
  );
  log('info', 'polling the GPU shard queue', { queueUrl });
}

const sqs = batchRuntime?.sqs ?? createSqsClient({ endpoint: env.AWS_ENDPOINT_URL });
const container = await createContainerJobRuntime({ env, sqs, dynamo: batchRuntime?.dynamo ?? createDynamoClient({ endpoint: env.DYNAMODB_ENDPOINT_URL }), log });
if (container) {
  const common = { sqs, runtime: container.runtime, visibilityTimeout: container.visibilitySeconds, waitTimeSeconds: Number(env.WAIT_TIME_SECONDS ?? 20), log };
  workers.push(new ContainerWorker({ ...common, queueUrl: container.queueUrl, concurrency: Number(env.CONTAINER_CONCURRENCY ?? 1) }));
  if (container.deadLetterQueueUrl) workers.push(new ContainerWorker({ ...common, queueUrl: container.deadLetterQueueUrl, deadLetters: true, concurrency: 1 }));
  log('info', 'polling the container queue', { queueUrl: container.queueUrl, deadLetterQueueUrl: container.deadLetterQueueUrl ?? null });
}
if (workers.length === 0) throw new ConfigError('WORKER_QUEUE_URL (or GPU_SHARD_QUEUE_URL / GPU_SHARD_QUEUE_NAME) or CONTAINER_STEPS_QUEUE_URL (or _NAME) environment variable is not set');

const drainMs = Number(env.DRAIN_SECONDS ?? 100) * 1000;
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log('info', 'stopping', { signal, drainMs });
    void Promise.all(workers.map((w) => w.stop(drainMs))).then(() => {
      const sum = (field: 'shardsScored' | 'shardsReleased' | 'shardsFailed') => workers.reduce((n, w) => n + w[field], 0);
      log('info', 'stopped', { scored: sum('shardsScored'), released: sum('shardsReleased'), failed: sum('shardsFailed') });
      process.exit(0);
    });
  });
}

log('info', 'worker ready', { provider, intraOpThreads: batchRuntime?.config.intraOpThreads ?? null, concurrency: Number(env.WORKER_CONCURRENCY ?? 2), queues: workers.length });
await Promise.all(workers.map((w) => w.start()));
