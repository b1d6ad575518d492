import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createDynamoClient, createSqsClient } from '../core/aws/clients.ts';
import { requireEnv } from '../core/platform/config.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { QuantizeJobs } from '../core/quantize/jobs.ts';
import { quantizeRequestSchema } from '../core/quantize/options.ts';
import { sqsDispatch, startQuantization } from '../core/quantize/start.ts';
import { createObservability } from '../core/platform/observability.ts';
import { DEFAULT_MAX_MODEL_BYTES } from '../core/artifacts/validation.ts';
import { createRegisterHandler } from './app.ts';

const { logger, metrics } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/register', { events: modelEventsFromEnv() });
const maxModelBytes = process.env.MAX_MODEL_BYTES ? Number(process.env.MAX_MODEL_BYTES) : DEFAULT_MAX_MODEL_BYTES;
/** The inference function's memory in this deployment (the tier's memorySize), set by serverless.yml. */
const servingMemoryMiB = process.env.SERVING_MEMORY_MB ? Number(process.env.SERVING_MEMORY_MB) : undefined;

/** The tier's DEFAULT_QUANTIZATION (none, int8-dynamic, fp16): a variant requested for each new upload. */
function defaultQuantization() {
  const method = process.env.DEFAULT_QUANTIZATION ?? 'none';
  if (method === 'none') return undefined;
  const request = quantizeRequestSchema.parse({ method });
  const deps = {
    store,
    jobs: new QuantizeJobs({ db: DynamoDBDocumentClient.from(createDynamoClient(), { marshallOptions: { removeUndefinedValues: true } }), table: requireEnv('QUANTIZE_JOBS_TABLE') }),
    dispatch: sqsDispatch(createSqsClient(), requireEnv('QUANTIZE_QUEUE_NAME')),
    workerMemoryMiB: Number(process.env.QUANTIZE_WORKER_MEMORY_MB ?? 3008),
  };
  return { method, start: (model: string, version: string) => startQuantization(deps, model, version, request) };
}

export const handler = middy(createRegisterHandler({ store, logger, metrics, maxModelBytes, servingMemoryMiB, defaultQuantization: defaultQuantization() }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));
