import * as z from 'zod';
import { ConfigError } from '../platform/errors.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';

/** What the quantize functions (and the register function's default policy) read from their environment. */
const quantizeConfigSchema = z.object({
  /** The registry table, where job records live (serverless.yml sets REGISTRY_TABLE stack-wide). */
  table: z.string().min(3, 'REGISTRY_TABLE environment variable is not set'),
  /** The quantize step queue, by name (serverless-offline cannot pass a CloudFormation Ref) or URL. */
  stepQueue: z.string().min(1, 'QUANTIZE_STEP_QUEUE environment variable is not set'),
  /** The worker's memory: the API refuses models whose estimate exceeds it (quantize.yml sets both from one value). */
  workerMemoryMiB: z.number().int().positive(),
  /** The step queue's VisibilityTimeout, which is also the step lease (docs/jobs.md); at least the worker's timeout. */
  visibilitySeconds: z.number().int().positive(),
  dynamoEndpoint: z.string().url().optional(),
  sqsEndpoint: z.string().url().optional(),
});
export type QuantizeConfig = z.infer<typeof quantizeConfigSchema>;

const number = (value: string | undefined, fallback: number) => (value === undefined || value === '' ? fallback : Number(value));

/** Checked once at init: a missing table or queue fails the cold start, not a request. */
export function readQuantizeConfig(env: NodeJS.ProcessEnv = process.env): QuantizeConfig {
  const parsed = quantizeConfigSchema.safeParse({
    table: env.REGISTRY_TABLE ?? '',
    stepQueue: env.QUANTIZE_STEP_QUEUE ?? '',
    workerMemoryMiB: number(env.QUANTIZE_WORKER_MEMORY_MB, 3008),
    visibilitySeconds: number(env.QUANTIZE_VISIBILITY_SECONDS, 5400),
    ...(env.DYNAMODB_ENDPOINT_URL ? { dynamoEndpoint: env.DYNAMODB_ENDPOINT_URL } : {}),
    ...(env.AWS_ENDPOINT_URL ? { sqsEndpoint: env.AWS_ENDPOINT_URL } : {}),
  }, PARSED_ONCE);
  if (!parsed.success) throw new ConfigError(`invalid quantize configuration: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
