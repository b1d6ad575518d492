import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { createDynamoClient, createS3Client, createSqsClient } from '../core/aws/clients.ts';
import { readFederationConfig } from '../core/federated/config.ts';
import { wireFederation } from '../core/federated/wiring.ts';
import { ModelRepository } from '../core/registry/repository.ts';
import { createObservability } from '../core/platform/observability.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { RegistryTable } from '../core/registry/registry-table.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { createDeadlineHandler, createFederationApiHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: configuration checked and clients made once per environment.
const config = readFederationConfig();
const { logger } = createObservability();
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}) => logger[level](message, fields);
const dynamo = createDynamoClient({ endpoint: config.dynamoEndpoint });
const s3 = createS3Client();
const store = new ModelRepository({ s3, bucket: config.bucket, cacheDir: config.cacheDir, registry: new RegistryTable(dynamo, config.table), events: modelEventsFromEnv() });
const { service, runtime } = wireFederation({ dynamo, s3, sqs: createSqsClient(), store, tableName: config.table, region: config.region, s3Endpoint: config.s3Endpoint, deadlineQueueName: config.deadlineQueueName, stepQueueName: config.stepQueueName, visibilitySeconds: config.visibilitySeconds, log });

export const api = traced(middy(createFederationApiHandler({ service, log })).use(injectLambdaContext(logger, { resetKeys: true })));
export const deadlines = traced(middy(createDeadlineHandler(service, log)).use(injectLambdaContext(logger, { resetKeys: true })));
export const worker = traced(middy(createJobStepHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
export const deadLetters = traced(middy(createJobDeadLetterHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
