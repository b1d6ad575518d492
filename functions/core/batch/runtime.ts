import type { Logger } from '@aws-lambda-powertools/logger';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type ort from 'onnxruntime-node';
import { createDynamoClient, createS3Client, createSqsClient } from '../aws/clients.ts';
import { ConfigError } from '../platform/errors.ts';
import { InferenceService } from '../serving/inference-service.ts';
import { ModelSessions } from '../sessions/model-sessions.ts';
import { ModelRepository } from '../registry/repository.ts';
import { JobTable } from '../jobs/job-table.ts';
import { JobKinds } from '../jobs/kinds.ts';
import { JobRuntime } from '../jobs/runtime.ts';
import { SqsStepQueue } from '../jobs/step-queue.ts';
import { pipelineSessionLoader } from '../pipelines/session.ts';
import { RegistryTable } from '../registry/registry-table.ts';
import { readBatchConfig, type BatchConfig } from './config.ts';
import { BATCH_GPU_QUEUE, BATCH_KIND, createBatchKind, type BatchKindDeps } from './kind.ts';
import { BatchService } from './service.ts';
import { ShardScorer } from './shard-scorer.ts';

/**
 * The real dependencies of the batch path, built once per process from configuration: the Lambda
 * handlers, the GPU container and the local stack all start here. Jobs run on the one job runtime
 * (docs/jobs.md) with the batch kind; its steps go to the Lambda shard queue or the GPU one.
 */
export interface BatchRuntimeOptions {
  env?: NodeJS.ProcessEnv;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Instead of a Powertools logger (the container worker writes its own JSON lines). */
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
  s3?: S3Client;
  sqs?: SQSClient;
  dynamo?: DynamoDBClient;
  executionProviders?: readonly ort.InferenceSession.ExecutionProviderConfig[];
  /** The step lease and visibility, when this worker sets its own on receive (the container's VISIBILITY_TIMEOUT). */
  visibilitySeconds?: number;
  onShardScored?: BatchKindDeps['onShardScored'];
}

export function createBatchRuntime(options: BatchRuntimeOptions = {}) {
  const env = options.env ?? process.env;
  const config: BatchConfig = readBatchConfig(env);
  // Endpoints from the same environment as the rest of the configuration (unset in AWS).
  const s3 = options.s3 ?? createS3Client({ endpoint: env.AWS_ENDPOINT_URL });
  const sqs = options.sqs ?? createSqsClient({ endpoint: env.AWS_ENDPOINT_URL });
  const dynamo = options.dynamo ?? createDynamoClient({ endpoint: env.DYNAMODB_ENDPOINT_URL });
  const logger = options.logger;
  const log =
    options.log ?? ((level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger?.[level](message, fields));
  // Versions and aliases resolve as the inference API does, through the registry table that also holds the jobs.
  const registry = new RegistryTable(dynamo, config.table);
  const store = new ModelRepository({ s3, bucket: config.bucket, cacheDir: config.cacheDir, registry });
  const table = new JobTable(dynamo, config.table);
  const sessions = new ModelSessions({
    store,
    intraOpThreads: config.intraOpThreads,
    executionProviders: options.executionProviders,
    onWarmupFailure: (model, version, error) => log('warn', 'warm-up run failed', { model, version, error: error.message }),
    onProviderFallback: (model, version, error) =>
      log('warn', 'preferred execution providers unavailable; scoring on CPU', { model, version, error: error.message }),
    composite: pipelineSessionLoader(store),
  });
  let scorer: ShardScorer | undefined;
  const makeScorer = () => (scorer ??= new ShardScorer({ s3, bucket: config.bucket, store, sessions, log }));
  const queue = new SqsStepQueue(sqs, (name) => {
    const found = name === BATCH_GPU_QUEUE ? config.gpuShardQueue : name === BATCH_KIND ? config.shardQueue : undefined;
    if (!found) throw new ConfigError(`no queue for batch steps '${name}': set ${name === BATCH_GPU_QUEUE ? 'GPU_SHARD_QUEUE_URL or GPU_SHARD_QUEUE_NAME' : 'SHARD_QUEUE_URL or SHARD_QUEUE_NAME'}`);
    return found;
  });
  const jobs = new JobRuntime({
    table,
    kinds: new JobKinds([createBatchKind({ s3, scorer: makeScorer, log, ...(options.onShardScored ? { onShardScored: options.onShardScored } : {}) })]),
    queue,
    visibilitySeconds: options.visibilitySeconds ?? config.visibilitySeconds,
    retryDelaySeconds: config.retryDelaySeconds,
    // A duplicate submission sends a queued job's shards again only when its own submission has
    // surely died; before, its shards may just be waiting for a worker.
    resendQueuedAfterMs: 120_000,
    log,
  });
  let service: BatchService | undefined;
  return {
    config,
    s3,
    sqs,
    dynamo,
    store,
    /** The job runtime with the batch kind: its workers run `jobs.runStep`, its dead-letter consumer `jobs.deadLetter`. */
    jobs,
    table,
    service(): BatchService {
      if (!config.shardQueue) throw new ConfigError('SHARD_QUEUE_URL (or SHARD_QUEUE_NAME) environment variable is not set');
      service ??= new BatchService({
        s3,
        runtime: jobs,
        table,
        store,
        inference: new InferenceService({ store, sessions, serviceVersion: config.serviceVersion }),
        bucket: config.bucket,
        gpuWorkers: config.gpuShardQueue !== undefined,
        gpuThresholdBytes: config.gpuThresholdBytes,
        log,
      });
      return service;
    },
  };
}

export type BatchRuntime = ReturnType<typeof createBatchRuntime>;
