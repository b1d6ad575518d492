import * as z from 'zod';
import { parsedConfig } from '../platform/config.ts';

const federationConfigSchema = z.strictObject({
  /** Federations, rounds and their aggregation jobs live in the registry table (REGISTRY_TABLE, stack-wide). */
  table: z.string().min(3, 'REGISTRY_TABLE environment variable is not set'),
  bucket: z.string().min(1, 'MODEL_BUCKET environment variable is not set'),
  /** The delayed messages that close rounds at their deadline. */
  deadlineQueueName: z.string().min(1, 'FEDERATION_DEADLINE_QUEUE_NAME environment variable is not set'),
  /** The aggregation job's step queue (the job runtime's, one per kind). */
  stepQueueName: z.string().min(1, 'FEDERATION_STEP_QUEUE_NAME environment variable is not set'),
  /** The step queue's visibility timeout: the step lease lasts as long. */
  visibilitySeconds: z.number().int().min(1).max(43_200),
  region: z.string().min(1),
  /** Path-style S3 endpoint for the pre-signed URLs (the emulators); unset in AWS. */
  s3Endpoint: z.string().url().optional(),
  dynamoEndpoint: z.string().url().optional(),
  cacheDir: z.string().min(1),
});
export type FederationConfig = z.infer<typeof federationConfigSchema>;

/** The federation functions' configuration, checked once at init: a missing variable fails the cold start, not a request. */
export function readFederationConfig(env: NodeJS.ProcessEnv = process.env): FederationConfig {
  const parsed = federationConfigSchema.safeParse({
    table: env.REGISTRY_TABLE ?? '',
    bucket: env.MODEL_BUCKET ?? '',
    deadlineQueueName: env.FEDERATION_DEADLINE_QUEUE_NAME ?? '',
    stepQueueName: env.FEDERATION_STEP_QUEUE_NAME ?? '',
    visibilitySeconds: Number(env.FEDERATION_STEP_VISIBILITY_SECONDS ?? 960),
    region: env.AWS_REGION ?? 'us-east-1',
    ...(env.AWS_ENDPOINT_URL ? { s3Endpoint: env.AWS_ENDPOINT_URL } : {}),
    ...(env.DYNAMODB_ENDPOINT_URL ? { dynamoEndpoint: env.DYNAMODB_ENDPOINT_URL } : {}),
    cacheDir: env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/models',
  });
  return parsedConfig('federation', parsed);
}
