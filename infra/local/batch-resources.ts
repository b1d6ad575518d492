import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';

/**
 * The batch resources of infra/serverless/batch.yml, created on the local emulators: the shard
 * queues (Lambda and GPU) with one dead-letter queue, the submit queue, the bucket, and the
 * registry table the job runtime keeps its records in. Idempotent, so the local stack and every
 * test can call it.
 */
export interface LocalBatchResources {
  bucket: string;
  /** The registry table (job records live there, as in AWS). */
  table: string;
  /** The shard queues' visibility timeout: the job runtime's step lease. */
  visibilitySeconds: number;
  shardQueueUrl: string;
  gpuShardQueueUrl: string;
  deadLetterQueueUrl: string;
  submitQueueUrl: string;
}

export interface LocalBatchOptions {
  s3: S3Client;
  sqs: SQSClient;
  dynamo: DynamoDBClient;
  bucket?: string;
  table?: string;
  /** Seconds; short locally so a killed worker's shard comes back quickly. */
  visibilityTimeout?: number;
  /** Above the batch kind's maxAttempts (3), as docs/jobs.md requires: the runtime fails a shard itself. */
  maxReceiveCount?: number;
  prefix?: string;
}

export async function createLocalBatchResources(options: LocalBatchOptions): Promise<LocalBatchResources> {
  const prefix = options.prefix ?? 'ai-mass-local';
  const bucket = options.bucket ?? `${prefix}-models`;
  const table = options.table ?? `${prefix}-registry`;
  await options.s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((error: { name?: string }) => {
    if (error.name !== 'BucketAlreadyOwnedByYou' && error.name !== 'BucketAlreadyExists') throw error;
  });
  await createPkSkTable(options.dynamo, table);
  const create = async (name: string, attributes: Record<string, string> = {}) =>
    (await options.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).QueueUrl!;
  const deadLetterQueueUrl = await create(`${prefix}-batch-shards-dlq`);
  const dlqArn = (await options.sqs.send(new GetQueueAttributesCommand({ QueueUrl: deadLetterQueueUrl, AttributeNames: ['QueueArn'] })))
    .Attributes!.QueueArn!;
  const visibilitySeconds = options.visibilityTimeout ?? 30;
  const shardAttributes = {
    VisibilityTimeout: String(visibilitySeconds),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: String(options.maxReceiveCount ?? 5) }),
  };
  const shardQueueUrl = await create(`${prefix}-batch-shards`, shardAttributes);
  const gpuShardQueueUrl = await create(`${prefix}-batch-gpu-shards`, shardAttributes);
  const submitQueueUrl = await create(`${prefix}-batch-submit`, { VisibilityTimeout: '60' });
  return { bucket, table, visibilitySeconds, shardQueueUrl, gpuShardQueueUrl, deadLetterQueueUrl, submitQueueUrl };
}

/** The environment the batch functions and workers read (functions/core/batch/config.ts). */
export function batchEnvironment(resources: LocalBatchResources, endpoints: { awsEndpoint: string; dynamoEndpoint: string }): Record<string, string> {
  return {
    MODEL_BUCKET: resources.bucket,
    REGISTRY_TABLE: resources.table,
    SHARD_QUEUE_URL: resources.shardQueueUrl,
    SHARD_VISIBILITY_SECONDS: String(resources.visibilitySeconds),
    // Locally a failed shard is retried at once (AWS waits SHARD_RETRY_DELAY_SECONDS, batch.yml).
    SHARD_RETRY_DELAY_SECONDS: '0',
    GPU_SHARD_QUEUE_URL: resources.gpuShardQueueUrl,
    AWS_ENDPOINT_URL: endpoints.awsEndpoint,
    DYNAMODB_ENDPOINT_URL: endpoints.dynamoEndpoint,
    AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'test',
    AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
    AWS_REGION: process.env.AWS_REGION ?? 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}
