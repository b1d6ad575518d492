import * as z from 'zod';
import { requireEnv } from '../platform/config.ts';
import { ConfigError } from '../platform/errors.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';

const evaluateConfigSchema = z.object({
  bucket: z.string().min(1),
  /** The registry table, where evaluation jobs live as job records (serverless.yml sets REGISTRY_TABLE stack-wide). */
  table: z.string().min(3),
  /** The evaluate kind's step queue, found by name. */
  stepQueueName: z.string().min(1),
  dynamoEndpoint: z.string().url().optional(),
  cacheDir: z.string().min(1),
  intraOpThreads: z.number().int().positive().optional(),
  maxBodyBytes: z.number().int().positive(),
});
export type EvaluateConfig = z.infer<typeof evaluateConfigSchema>;

export function readEvaluateConfig(env: NodeJS.ProcessEnv = process.env): EvaluateConfig {
  const parsed = evaluateConfigSchema.safeParse({
    bucket: requireEnv('MODEL_BUCKET', env),
    table: requireEnv('REGISTRY_TABLE', env),
    stepQueueName: requireEnv('EVALUATE_STEP_QUEUE_NAME', env),
    ...(env.DYNAMODB_ENDPOINT_URL ? { dynamoEndpoint: env.DYNAMODB_ENDPOINT_URL } : {}),
    cacheDir: env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/models',
    intraOpThreads: env.INTRA_OP_THREADS ? Number(env.INTRA_OP_THREADS) : undefined,
    maxBodyBytes: env.MAX_BODY_BYTES ? Number(env.MAX_BODY_BYTES) : 1024 * 1024,
  }, PARSED_ONCE);
  if (!parsed.success) throw new ConfigError(`invalid evaluate configuration: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
