import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { createDynamoClient, createS3Client, createSqsClient } from '../core/clients.ts';
import { federatedRoundKind } from '../core/federated/aggregation.ts';
import { readFederationConfig } from '../core/federated/config.ts';
import { SqsDeadlineQueue } from '../core/federated/deadline-queue.ts';
import { FederationTable } from '../core/federated/federation-table.ts';
import { s3Presigner } from '../core/federated/presign.ts';
import { FederationService } from '../core/federated/rounds.ts';
import { JobTable } from '../core/jobs/job-table.ts';
import { JobKinds } from '../core/jobs/kinds.ts';
import { JobRuntime } from '../core/jobs/runtime.ts';
import { SqsStepQueue } from '../core/jobs/step-queue.ts';
import { ModelStore } from '../core/model-store.ts';
import { createObservability } from '../core/observability.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { RegistryTable } from '../core/registry/registry-table.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { createDeadlineHandler, createFederationApiHandler } from './app.ts';

// Lambda init: configuration checked and clients made once per environment.
const config = readFederationConfig();
const { logger } = createObservability();
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}) => logger[level](message, fields);
const dynamo = createDynamoClient({ endpoint: config.dynamoEndpoint });
const s3 = createS3Client();
const sqs = createSqsClient();
const store = new ModelStore({ s3, bucket: config.bucket, cacheDir: config.cacheDir, registry: new RegistryTable(dynamo, config.table), events: modelEventsFromEnv() });
const table = new FederationTable(dynamo, config.table);
const kinds = new JobKinds();
const runtime = new JobRuntime({ table: new JobTable(dynamo, config.table), kinds, queue: new SqsStepQueue(sqs, () => config.stepQueueName), visibilitySeconds: config.visibilitySeconds, log });
const service = new FederationService({
  table,
  store,
  presigner: s3Presigner({ bucket: config.bucket, region: config.region, endpoint: config.s3Endpoint, credentials: () => s3.config.credentials() }),
  deadlines: new SqsDeadlineQueue(sqs, config.deadlineQueueName),
  submitJob: (submission) => runtime.submit(submission),
  log,
});
kinds.register(federatedRoundKind(() => ({ table, store, service, log })));

export const api = middy(createFederationApiHandler({ service, log })).use(injectLambdaContext(logger, { resetKeys: true }));
export const deadlines = middy(createDeadlineHandler(service, log)).use(injectLambdaContext(logger, { resetKeys: true }));
export const worker = middy(createJobStepHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true }));
export const deadLetters = middy(createJobDeadLetterHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true }));
