import * as z from 'zod';
import { parsedConfig } from '../platform/config.ts';

const trainConfigSchema = z.strictObject({
  /** The registry table: versions, and the job records (serverless.yml sets REGISTRY_TABLE stack-wide). */
  table: z.string().min(3, 'REGISTRY_TABLE environment variable is not set'),
  bucket: z.string().min(3, 'MODEL_BUCKET environment variable is not set'),
  /** The train kind's step queue, by name (GetQueueUrl works the same in AWS and locally). */
  stepQueue: z.string().min(1, 'TRAIN_STEPS_QUEUE_NAME environment variable is not set'),
  /** The step queue's visibility timeout: a step lease lasts as long. */
  visibilitySeconds: z.coerce.number().int().min(30).max(43_200),
  /** onnxruntime threads of the training session (0: onnxruntime's default, one per core). */
  intraOpThreads: z.coerce.number().int().min(0).max(64),
  /** Time a step keeps back, beyond the runtime's reserve, for its last checkpoint before it continues in a new invocation. */
  pauseMarginSeconds: z.coerce.number().min(0).max(900),
  /**
   * A job whose estimated size (trained parameters x training rows x epochs x phases) is over this
   * goes to the container worker, where the stack runs one (CONTAINER_WORKERS=true).
   */
  containerThreshold: z.coerce.number().positive(),
});
export type TrainConfig = z.infer<typeof trainConfigSchema>;

/** The train function's configuration, checked once at init: a missing setting fails the cold start, not a request. */
export function readTrainConfig(env: NodeJS.ProcessEnv = process.env): TrainConfig {
  const parsed = trainConfigSchema.safeParse({
    table: env.REGISTRY_TABLE ?? '',
    bucket: env.MODEL_BUCKET ?? '',
    stepQueue: env.TRAIN_STEPS_QUEUE_NAME ?? '',
    visibilitySeconds: env.TRAIN_VISIBILITY_SECONDS ?? 960,
    intraOpThreads: env.TRAIN_INTRA_OP_THREADS ?? 0,
    pauseMarginSeconds: env.TRAIN_PAUSE_MARGIN_SECONDS ?? 20,
    containerThreshold: env.TRAIN_CONTAINER_THRESHOLD || 1e14,
  });
  return parsedConfig('train', parsed, { paths: true });
}
