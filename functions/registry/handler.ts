import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { createDynamoClient, createS3Client, createSnsClient } from '../core/clients.ts';
import { requireEnv } from '../core/config.ts';
import { latestEvaluationVerdict } from '../core/evaluate/gate.ts';
import { ModelStore } from '../core/model-store.ts';
import { createObservability } from '../core/observability.ts';
import { SnsModelEvents } from '../core/registry/events.ts';
import { RegistryTable } from '../core/registry/registry-table.ts';
import { createRegistryHandler } from './app.ts';

const { logger } = createObservability();
const topic = process.env.MODEL_EVENTS_TOPIC_ARN;
const store = new ModelStore({
  s3: createS3Client(),
  bucket: requireEnv('MODEL_BUCKET'),
  cacheDir: '/tmp/ai-mass/registry',
  registry: new RegistryTable(createDynamoClient(), requireEnv('REGISTRY_TABLE')),
  events: topic ? new SnsModelEvents(createSnsClient(), topic) : undefined,
});

export const handler = middy(createRegistryHandler({ store, logger, gate: latestEvaluationVerdict })).use(injectLambdaContext(logger, { resetKeys: true }));
