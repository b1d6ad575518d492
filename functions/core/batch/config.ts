import * as z from 'zod';
import { requireEnv } from '../platform/config.ts';
import { ConfigError } from '../platform/errors.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';

/** What every batch function and the GPU worker read from their environment. */
const batchConfigSchema = z.object({
  bucket: z.string().min(1),
  /** The registry table, where the job runtime keeps job records (serverless.yml sets REGISTRY_TABLE stack-wide). */
  table: z.string().min(1),
  /** The shard queues, each by URL or by name (serverless-offline cannot pass a CloudFormation Ref; a name is found with GetQueueUrl). */
  shardQueue: z.string().min(1).optional(),
  gpuShardQueue: z.string().min(1).optional(),
  gpuThresholdBytes: z.number().int().positive().optional(),
  /** The shard queues' VisibilityTimeout, which is also the step lease (docs/jobs.md). */
  visibilitySeconds: z.number().int().positive(),
  /** How long a failed shard attempt waits before it is handed out again. */
  retryDelaySeconds: z.number().int().nonnegative(),
  cacheDir: z.string().min(1),
  intraOpThreads: z.number().int().positive().optional(),
  serviceVersion: z.string().min(1),
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
    table: requireEnv('REGISTRY_TABLE', env),
    shardQueue: optionalString(env.SHARD_QUEUE_URL) ?? optionalString(env.SHARD_QUEUE_NAME),
    gpuShardQueue: gpu ? (optionalString(env.GPU_SHARD_QUEUE_URL) ?? optionalString(env.GPU_SHARD_QUEUE_NAME)) : undefined,
    gpuThresholdBytes: optionalNumber(env.GPU_THRESHOLD_BYTES),
    visibilitySeconds: optionalNumber(env.SHARD_VISIBILITY_SECONDS) ?? 360,
    retryDelaySeconds: optionalNumber(env.SHARD_RETRY_DELAY_SECONDS) ?? 10,
    cacheDir: env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/models',
    intraOpThreads: optionalNumber(env.INTRA_OP_THREADS),
    serviceVersion: env.SERVICE_VERSION ?? '0.1.0',
  }, PARSED_ONCE);
  if (!parsed.success) throw new ConfigError(`invalid batch configuration: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
