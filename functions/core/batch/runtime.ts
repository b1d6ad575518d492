import type { Logger } from '@aws-lambda-powertools/logger';
import type { S3Client } from '@aws-sdk/client-s3';
import { GetQueueUrlCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type ort from 'onnxruntime-node';
import { createDynamoClient, createS3Client, createSqsClient } from '../clients.ts';
import { ConfigError } from '../errors.ts';
import { InferenceService } from '../inference-service.ts';
import { ModelSessions } from '../model-sessions.ts';
import { pipelineSessionLoader } from '../pipeline/session.ts';
import { ModelStore } from '../model-store.ts';
import { RegistryTable } from '../registry/registry-table.ts';
import { readBatchConfig, type BatchConfig } from './config.ts';
import { BatchJobStore } from './job-store.ts';
import { BatchService } from './service.ts';
import { ShardScorer } from './shard-scorer.ts';

/**
 * The real dependencies of the batch path, built once per process from configuration: the Lambda
 * handlers, the GPU container and the local stack all start here.
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
  // With the registry table (set stack-wide), versions and aliases resolve as the inference API does.
  const registry = env.REGISTRY_TABLE ? new RegistryTable(dynamo, env.REGISTRY_TABLE) : undefined;
  const store = new ModelStore({ s3, bucket: config.bucket, cacheDir: config.cacheDir, registry });
  const jobs = new BatchJobStore({ dynamo, table: config.table });
  const sessions = new ModelSessions({
    store,
    intraOpThreads: config.intraOpThreads,
    executionProviders: options.executionProviders,
    onWarmupFailure: (model, version, error) => log('warn', 'warm-up run failed', { model, version, error: error.message }),
    onProviderFallback: (model, version, error) =>
      log('warn', 'preferred execution providers unavailable; scoring on CPU', { model, version, error: error.message }),
    composite: pipelineSessionLoader(store),
  });
  const inference = new InferenceService({ store, sessions, serviceVersion: process.env.SERVICE_VERSION ?? '0.1.0' });
  let service: BatchService | undefined;
  let scorer: ShardScorer | undefined;
  return {
    config,
    /** Resolves queue names to URLs; handlers await it during init. */
    async init(): Promise<void> {
      const url = async (name: string) => (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
      if (!config.shardQueueUrl && config.shardQueueName) config.shardQueueUrl = await url(config.shardQueueName);
      if (!config.gpuShardQueueUrl && config.gpuShardQueueName) config.gpuShardQueueUrl = await url(config.gpuShardQueueName);
    },
    s3,
    sqs,
    dynamo,
    store,
    jobs,
    sessions,
    service(): BatchService {
      if (!config.shardQueueUrl) throw new ConfigError('SHARD_QUEUE_URL (or SHARD_QUEUE_NAME, then init()) environment variable is not set');
      service ??= new BatchService({
        s3,
        sqs,
        jobs,
        store,
        inference,
        bucket: config.bucket,
        shardQueueUrl: config.shardQueueUrl,
        gpuShardQueueUrl: config.gpuShardQueueUrl,
        gpuThresholdBytes: config.gpuThresholdBytes,
        log,
      });
      return service;
    },
    scorer(): ShardScorer {
      scorer ??= new ShardScorer({ s3, bucket: config.bucket, jobs, store, sessions, log });
      return scorer;
    },
  };
}

export type BatchRuntime = ReturnType<typeof createBatchRuntime>;
