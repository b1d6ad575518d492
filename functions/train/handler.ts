import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { createDynamoClient, createSqsClient } from '../core/aws/clients.ts';
import { JobTable } from '../core/jobs/job-table.ts';
import { JobKinds } from '../core/jobs/kinds.ts';
import { JobRuntime } from '../core/jobs/runtime.ts';
import { readContainerPlacement } from '../core/jobs/config.ts';
import { SqsStepQueue, withContainerQueue } from '../core/jobs/step-queue.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { createObservability } from '../core/platform/observability.ts';
import { readTrainConfig } from '../core/train/config.ts';
import { trainJobKind } from '../core/train/jobs.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { createTrainApiHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: configuration checked and clients made once per environment.
const config = readTrainConfig();
const placement = readContainerPlacement();
const { logger } = createObservability();
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}) => logger[level](message, fields);
const store = modelStoreFromEnv('/tmp/ai-mass/models', { events: modelEventsFromEnv() });
const kind = trainJobKind({
  store,
  sessionOptions: { intraOpNumThreads: config.intraOpThreads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' },
  pauseMarginMs: config.pauseMarginSeconds * 1000,
  containerThreshold: config.containerThreshold,
  log: (message, fields) => log('info', message, fields),
});
const runtime = new JobRuntime({
  table: new JobTable(createDynamoClient(), config.table),
  kinds: new JobKinds([kind]),
  // A job placed on the container worker sends every step to the container queue (docs/jobs.md, placement).
  queue: new SqsStepQueue(createSqsClient(), withContainerQueue(placement.containerQueue, () => config.stepQueue)),
  placements: placement.placements,
  visibilitySeconds: config.visibilitySeconds,
  log,
});

export const api = traced(middy(createTrainApiHandler({ store, runtime, log })).use(injectLambdaContext(logger, { resetKeys: true })));
export const worker = traced(middy(createJobStepHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
export const deadLetters = traced(middy(createJobDeadLetterHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
