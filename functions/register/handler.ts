import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { modelStoreFromEnv } from '../core/model-store-env.ts';
import { createObservability } from '../core/observability.ts';
import { DEFAULT_MAX_MODEL_BYTES } from '../core/registry/validation.ts';
import { createRegisterHandler } from './app.ts';

const { logger, metrics } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/register');
const maxModelBytes = process.env.MAX_MODEL_BYTES ? Number(process.env.MAX_MODEL_BYTES) : DEFAULT_MAX_MODEL_BYTES;

export const handler = middy(createRegisterHandler({ store, logger, metrics, maxModelBytes }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));
