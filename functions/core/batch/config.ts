import * as z from 'zod';
import { requireEnv } from '../platform/config.ts';
import { ConfigError } from '../platform/errors.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';

/** What every batch function and the GPU worker read from their environment. */
const batchConfigSchema = z.object({
  bucket: z.string().min(1),
  table: z.string().min(1),
  shardQueueUrl: z.string().min(1).optional(),
  gpuShardQueueUrl: z.string().min(1).optional(),
  /** Names instead of URLs: resolved with GetQueueUrl at init (serverless-offline cannot pass a CloudFormation Ref). */
  shardQueueName: z.string().min(1).optional(),
  gpuShardQueueName: z.string().min(1).optional(),
  gpuThresholdBytes: z.number().int().positive().optional(),
  cacheDir: z.string().min(1),
  intraOpThreads: z.number().int().positive().optional(),
});
export type BatchConfig = z.infer<typeof batchConfigSchema>;

function optionalNumber(value: string | undefined): number | undefined {
  return value === undefined || value === '' ? undefined : Number(value);
}

function optionalString(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

export function readBatchConfig(env: NodeJS.ProcessEnv = process.env): BatchConfig {
  // GPU_WORKERS=false: the GPU queue exists but no service consumes it, so no job may be routed there.
  const gpu = env.GPU_WORKERS !== 'false';
  const parsed = batchConfigSchema.safeParse({
    bucket: requireEnv('MODEL_BUCKET', env),
    table: requireEnv('BATCH_TABLE', env),
    shardQueueUrl: optionalString(env.SHARD_QUEUE_URL),
    gpuShardQueueUrl: gpu ? optionalString(env.GPU_SHARD_QUEUE_URL) : undefined,
    shardQueueName: optionalString(env.SHARD_QUEUE_NAME),
    gpuShardQueueName: gpu ? optionalString(env.GPU_SHARD_QUEUE_NAME) : undefined,
    gpuThresholdBytes: optionalNumber(env.GPU_THRESHOLD_BYTES),
    cacheDir: env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/models',
    intraOpThreads: optionalNumber(env.INTRA_OP_THREADS),
  }, PARSED_ONCE);
  if (!parsed.success) throw new ConfigError(`invalid batch configuration: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
