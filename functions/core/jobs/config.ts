import * as z from 'zod';
import { ConfigError } from '../platform/errors.ts';

const jobsApiConfigSchema = z.strictObject({
  /** The registry table, where job records live (serverless.yml sets REGISTRY_TABLE stack-wide). */
  table: z.string().min(3, 'REGISTRY_TABLE environment variable is not set'),
  dynamoEndpoint: z.string().url().optional(),
});
export type JobsApiConfig = z.infer<typeof jobsApiConfigSchema>;

/** The jobs API function's configuration, checked once at init: a missing table fails the cold start, not a request. */
export function readJobsApiConfig(env: NodeJS.ProcessEnv = process.env): JobsApiConfig {
  const parsed = jobsApiConfigSchema.safeParse({
    table: env.REGISTRY_TABLE ?? '',
    ...(env.DYNAMODB_ENDPOINT_URL ? { dynamoEndpoint: env.DYNAMODB_ENDPOINT_URL } : {}),
  });
  if (!parsed.success) throw new ConfigError(`invalid jobs configuration: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}
