import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createDynamoClient, createS3Client, createSnsClient } from '../core/clients.ts';
import { requireEnv } from '../core/config.ts';
import { ModelStore } from '../core/model-store.ts';
import { createObservability } from '../core/observability.ts';
import { SnsModelEvents } from '../core/registry/events.ts';
import { RegistryTable } from '../core/registry/registry-table.ts';
import { DEFAULT_MAX_MODEL_BYTES } from '../core/registry/validation.ts';
import { createRegisterHandler } from './app.ts';

const { logger, metrics } = createObservability();
const topic = process.env.MODEL_EVENTS_TOPIC_ARN;
const store = new ModelStore({
  s3: createS3Client(),
  bucket: requireEnv('MODEL_BUCKET'),
  cacheDir: process.env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/register',
  registry: new RegistryTable(createDynamoClient(), requireEnv('REGISTRY_TABLE')),
  events: topic ? new SnsModelEvents(createSnsClient(), topic) : undefined,
});
const maxModelBytes = process.env.MAX_MODEL_BYTES ? Number(process.env.MAX_MODEL_BYTES) : DEFAULT_MAX_MODEL_BYTES;

export const handler = middy(createRegisterHandler({ store, logger, metrics, maxModelBytes }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));
