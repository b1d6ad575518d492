/**
 * Entry point of the batch worker container (infra/gpu-worker/Dockerfile) and of `mass worker`.
 *
 *   MODEL_BUCKET, REGISTRY_TABLE       where models, inputs, outputs and job records are
 *   WORKER_QUEUE_URL                   the shard queue to poll (default GPU_SHARD_QUEUE_URL, or the URL of GPU_SHARD_QUEUE_NAME)
 *   EXECUTION_PROVIDER=cuda|cpu        cuda (default) tries the CUDA provider and falls back to CPU
 *   INTRA_OP_THREADS                   onnxruntime threads per session (default: every CPU)
 *   VISIBILITY_TIMEOUT=60              seconds, the step lease, renewed with the message's visibility while a shard runs
 *   DRAIN_SECONDS=100                  on SIGTERM, how long the current shard may still run (ECS stopTimeout is 120)
 *   WORKER_CONCURRENCY=2               shards in progress at once (the second fills the first one's I/O waits)
 */
import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import { createBatchRuntime } from '../../functions/core/batch/runtime.ts';
import { ConfigError } from '../../functions/core/platform/errors.ts';
import { ContainerWorker, type WorkerLog } from './container-worker.ts';

const log: WorkerLog = (level, message, fields = {}) => {
  process.stdout.write(`${JSON.stringify({ level, message, pid: process.pid, time: new Date().toISOString(), ...fields })}\n`);
};

const env = process.env;
const provider = (env.EXECUTION_PROVIDER ?? 'cuda').toLowerCase();
if (provider !== 'cuda' && provider !== 'cpu') throw new ConfigError(`EXECUTION_PROVIDER must be cuda or cpu, got ${provider}`);

const runtime = createBatchRuntime({
  // A job's merge step goes back to the queue this worker polls.
  env: { ...env, GPU_SHARD_QUEUE_URL: env.GPU_SHARD_QUEUE_URL || env.WORKER_QUEUE_URL || '' },
  log,
  // CUDA first, CPU for the nodes CUDA does not take; ModelSessions falls back to CPU alone when
  // the CUDA provider cannot load (no GPU, no driver, or an image built without it).
  executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: Number(env.CUDA_DEVICE_ID ?? 0) }, 'cpu'] : ['cpu'],
  visibilitySeconds: Number(env.VISIBILITY_TIMEOUT ?? 60),
});

const queue = env.WORKER_QUEUE_URL || runtime.config.gpuShardQueue;
if (!queue) throw new ConfigError('WORKER_QUEUE_URL (or GPU_SHARD_QUEUE_URL / GPU_SHARD_QUEUE_NAME) environment variable is not set');
const queueUrl = /^https?:\/\//.test(queue) ? queue : (await runtime.sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl!;

const worker = new ContainerWorker({
  sqs: runtime.sqs,
  queueUrl,
  runtime: runtime.jobs,
  visibilityTimeout: Number(env.VISIBILITY_TIMEOUT ?? 60),
  waitTimeSeconds: Number(env.WAIT_TIME_SECONDS ?? 20),
  concurrency: Number(env.WORKER_CONCURRENCY ?? 2),
  log,
});

const drainMs = Number(env.DRAIN_SECONDS ?? 100) * 1000;
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log('info', 'stopping', { signal, drainMs });
    void worker.stop(drainMs).then(() => {
      log('info', 'stopped', { scored: worker.shardsScored, released: worker.shardsReleased, failed: worker.shardsFailed });
      process.exit(0);
    });
  });
}

log('info', 'worker ready', { queueUrl, provider, intraOpThreads: runtime.config.intraOpThreads ?? null, concurrency: Number(env.WORKER_CONCURRENCY ?? 2) });
await worker.start();
