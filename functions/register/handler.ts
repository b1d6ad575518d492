import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { readQuantizeConfig } from '../core/quantize/config.ts';
import { quantizeRequestSchema } from '../core/quantize/options.ts';
import { startQuantization } from '../core/quantize/start.ts';
import { createObservability } from '../core/platform/observability.ts';
import { readEnv } from '../core/platform/env.ts';
import { DEFAULT_MAX_MODEL_BYTES } from '../core/artifacts/validation.ts';
import { quantizeRuntimeFromConfig } from '../core/quantize/runtime.ts';
import { createRegisterHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

const { logger, metrics } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/register', { events: modelEventsFromEnv() });
const env = readEnv(['MAX_MODEL_BYTES', 'SERVING_MEMORY_MB', 'DEFAULT_QUANTIZATION']);
const maxModelBytes = env.MAX_MODEL_BYTES ? Number(env.MAX_MODEL_BYTES) : DEFAULT_MAX_MODEL_BYTES;
/** The inference function's memory in this deployment (the tier's memorySize), set by serverless.yml. */
const servingMemoryMiB = env.SERVING_MEMORY_MB ? Number(env.SERVING_MEMORY_MB) : undefined;

/** The tier's DEFAULT_QUANTIZATION (none, int8-dynamic, fp16): a variant requested for each new upload. */
function defaultQuantization() {
  const method = env.DEFAULT_QUANTIZATION ?? 'none';
  if (method === 'none') return undefined;
  const request = quantizeRequestSchema.parse({ method });
  const config = readQuantizeConfig();
  // Submits jobs only: the quantize worker runs them (its kind needs only the store here).
  const { runtime } = quantizeRuntimeFromConfig(config, store);
  const deps = { store, runtime, workerMemoryMiB: config.workerMemoryMiB };
  return {
    method,
    start: async (model: string, version: string) => {
      const { job, created } = await startQuantization(deps, model, version, request);
      return { job: { job: job.id }, created };
    },
  };
}

export const handler = traced(middy(createRegisterHandler({ store, logger, metrics, maxModelBytes, servingMemoryMiB, defaultQuantization: defaultQuantization() }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics)));
