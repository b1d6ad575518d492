import * as z from 'zod';
import { parsedConfig } from '../platform/config.ts';
import type { Placement } from './record.ts';

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
  return parsedConfig('jobs', parsed);
}

const containerPlacementSchema = z
  .strictObject({
    /** CONTAINER_WORKERS=true: the stack runs the container worker (infra/gpu-worker), so jobs may be placed there. */
    enabled: z.boolean(),
    /** The container queue, by name or URL (CONTAINER_STEPS_QUEUE_NAME or _URL). */
    queue: z.string().min(1).optional(),
  })
  .refine((c) => !c.enabled || c.queue !== undefined, 'CONTAINER_WORKERS=true needs CONTAINER_STEPS_QUEUE_NAME (or CONTAINER_STEPS_QUEUE_URL)');

export interface ContainerPlacement {
  /** What a submitting function's runtime may place jobs on (JobRuntimeOptions.placements). */
  placements: Placement[];
  /** The container queue's name or URL, when jobs may be placed there. */
  containerQueue?: string;
}

/** Where a function that submits jobs may place them: on Lambda, and on the container worker when the stack runs one. */
export function readContainerPlacement(env: NodeJS.ProcessEnv = process.env): ContainerPlacement {
  const queue = env.CONTAINER_STEPS_QUEUE_URL || env.CONTAINER_STEPS_QUEUE_NAME || undefined;
  const parsed = containerPlacementSchema.safeParse({ enabled: env.CONTAINER_WORKERS === 'true', ...(queue ? { queue } : {}) });
  const config = parsedConfig('job placement', parsed);
  return config.enabled ? { placements: ['lambda', 'container'], containerQueue: config.queue! } : { placements: ['lambda'] };
}
