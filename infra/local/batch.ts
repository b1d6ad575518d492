import { createDynamoClient, createS3Client, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createBatchRuntime } from '../../functions/core/batch/runtime.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { createBatchSubmitQueueHandler, createBatchUploadHandler } from '../../functions/batch-submit/app.ts';
import { createBatchDeadLetterHandler, createBatchScoreHandler } from '../../functions/batch-score/app.ts';
import { batchEnvironment, createLocalBatchResources, type LocalBatchResources } from './batch-resources.ts';
import { pollSqsQueue, watchS3Prefix, type Trigger } from './triggers.ts';
import { startWorkerProcesses, stopWorkerProcesses, type WorkerLine, type WorkerProcess } from '../gpu-worker/processes.ts';

/**
 * The batch part of the local stack: the resources of infra/serverless/batch.yml on the emulators,
 * the triggers Lambda would run (upload under batches/incoming/, the submit queue, the shard queue
 * running the score function, the dead-letter queue), and optionally container-worker processes on
 * the GPU queue. The HTTP routes come from serverless-offline with `environment()` passed to it.
 */
export interface LocalBatchOptions {
  awsEndpoint: string;
  dynamoEndpoint: string;
  bucket: string;
  /** Resource names follow `${service}-${stage}-...` as in batch.yml; the local stage is `local`. */
  prefix?: string;
  /** Container-worker processes on the GPU shard queue (0 for none). */
  workers?: number;
  /** Concurrent invocations of the score function, as Lambda would scale out. */
  lambdaConcurrency?: number;
  cacheDir: string;
  /** Batch uploads already under batches/incoming/ at start: skipped, or delivered (a stack that keeps its state). */
  existingUploads?: 'skip' | 'deliver';
  onWorkerLine?: (line: WorkerLine) => void;
}

export interface LocalBatch {
  resources: LocalBatchResources;
  /** Variables for serverless-offline and the worker processes. */
  environment: Record<string, string>;
  workers: WorkerProcess[];
  stop(): Promise<void>;
}

export async function startLocalBatch(options: LocalBatchOptions): Promise<LocalBatch> {
  const s3 = createS3Client({ endpoint: options.awsEndpoint });
  const sqs = createSqsClient({ endpoint: options.awsEndpoint });
  const dynamo = createDynamoClient({ endpoint: options.dynamoEndpoint });
  const resources = await createLocalBatchResources({ s3, sqs, dynamo, bucket: options.bucket, prefix: options.prefix ?? 'ai-mass-local' });
  const environment = { ...batchEnvironment(resources, options), MODEL_CACHE_DIR: options.cacheDir };
  const runtime = createBatchRuntime({ env: environment, s3, sqs, dynamo });
  const { logger } = createObservability('ai-mass-local-batch');
  const service = runtime.service();
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
  const triggers: Trigger[] = [
    await watchS3Prefix({
      s3,
      bucket: resources.bucket,
      prefix: keys.batchIncomingPrefix,
      existing: options.existingUploads ?? 'skip',
      handler: createBatchUploadHandler({ service, s3, logger }),
    }),
    await pollSqsQueue({ sqs, queueUrl: resources.submitQueueUrl, handler: createBatchSubmitQueueHandler({ service, logger }) }),
    await pollSqsQueue({
      sqs,
      queueUrl: resources.shardQueueUrl,
      handler: createBatchScoreHandler({ runtime: runtime.jobs, log }),
      concurrency: options.lambdaConcurrency ?? 1,
    }),
    await pollSqsQueue({ sqs, queueUrl: resources.deadLetterQueueUrl, handler: createBatchDeadLetterHandler({ runtime: runtime.jobs, log }) }),
  ];
  const workers = startWorkerProcesses(
    options.workers ?? 0,
    { ...environment, WORKER_QUEUE_URL: resources.gpuShardQueueUrl, WAIT_TIME_SECONDS: '2', VISIBILITY_TIMEOUT: '30' },
    options.onWorkerLine,
  );
  return {
    resources,
    environment,
    workers,
    async stop() {
      await stopWorkerProcesses(workers);
      await Promise.all(triggers.map((t) => t.stop()));
      s3.destroy();
      sqs.destroy();
      dynamo.destroy();
    },
  };
}
