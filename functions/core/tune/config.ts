import * as z from 'zod';
import { parsedConfig } from '../platform/config.ts';

const tuneConfigSchema = z.strictObject({
  /** The registry table: studies, trials and job records (REGISTRY_TABLE, set stack-wide). */
  table: z.string().min(3, 'REGISTRY_TABLE environment variable is not set'),
  /** The tune kind's step queue, found by name (TUNE_STEPS_QUEUE_NAME). */
  stepsQueue: z.string().min(1, 'TUNE_STEPS_QUEUE_NAME environment variable is not set'),
  /** The step queue's visibility timeout: a lane's lease (TUNE_VISIBILITY_SECONDS). */
  visibilitySeconds: z.coerce.number().int().min(1).max(43_200),
  /** How long a trial is its worker's without a report (TUNE_TRIAL_LEASE_SECONDS); above the worker's timeout. */
  trialLeaseSeconds: z.coerce.number().int().min(1).max(43_200),
  dynamoEndpoint: z.string().url().optional(),
});
export type TuneConfig = z.infer<typeof tuneConfigSchema>;

/** The studies function's configuration, checked once at init: a missing setting fails the cold start, not a request. */
export function readTuneConfig(env: NodeJS.ProcessEnv = process.env): TuneConfig {
  const parsed = tuneConfigSchema.safeParse({
    table: env.REGISTRY_TABLE ?? '',
    stepsQueue: env.TUNE_STEPS_QUEUE_NAME ?? '',
    visibilitySeconds: env.TUNE_VISIBILITY_SECONDS ?? '5400',
    trialLeaseSeconds: env.TUNE_TRIAL_LEASE_SECONDS ?? '960',
    ...(env.DYNAMODB_ENDPOINT_URL ? { dynamoEndpoint: env.DYNAMODB_ENDPOINT_URL } : {}),
  });
  return parsedConfig('tuning', parsed);
}

const trialLeaseSchema = z.strictObject({ trialLeaseSeconds: tuneConfigSchema.shape.trialLeaseSeconds });

/**
 * How long a trial is its worker's without a report or a renewal (TUNE_TRIAL_LEASE_SECONDS, default
 * 960), for a worker that runs lanes but has no tune queue of its own: the container worker.
 */
export function readTrialLeaseSeconds(env: NodeJS.ProcessEnv = process.env): number {
  return parsedConfig('tuning', trialLeaseSchema.safeParse({ trialLeaseSeconds: env.TUNE_TRIAL_LEASE_SECONDS ?? '960' })).trialLeaseSeconds;
}
