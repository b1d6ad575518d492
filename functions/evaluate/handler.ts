import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { createDynamoClient, createSqsClient } from '../core/aws/clients.ts';
import { readEvaluateConfig } from '../core/evaluate/config.ts';
import { EvaluationService } from '../core/evaluate/jobs.ts';
import { JobTable } from '../core/jobs/job-table.ts';
import { SqsStepQueue } from '../core/jobs/step-queue.ts';
import { ModelSessions } from '../core/sessions/model-sessions.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createEvaluateApiHandler } from './app.ts';
import { pipelineSessionLoader } from '../core/pipelines/session.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: clients, store and sessions are created once per environment; sessions and decoded
// data sets then serve every step this environment runs.
const config = readEvaluateConfig();
const { logger, metrics } = createObservability();
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
const store = modelStoreFromEnv(config.cacheDir);
const sessions = new ModelSessions({
  store,
  intraOpThreads: config.intraOpThreads,
  onWarmupFailure: (model, version, error) => logger.warn('warm-up run failed', { model, version, error: error.message }),
  composite: pipelineSessionLoader(store),
});
const service = new EvaluationService({
  store,
  sessions,
  table: new JobTable(createDynamoClient({ endpoint: config.dynamoEndpoint }), config.table),
  queue: new SqsStepQueue(createSqsClient(), () => config.stepQueueName),
  intraOpThreads: config.intraOpThreads,
  log,
});

/** HTTP API: start an evaluation, read its status and report. */
export const api = traced(middy(createEvaluateApiHandler({ service, maxBodyBytes: config.maxBodyBytes, logger, metrics }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics)));

/** SQS: the evaluate kind's steps, each run while this invocation's time allows and continued from its checkpoint. */
export const worker = traced(middy(createJobStepHandler(service.runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));

/** SQS: step messages no delivery could run end their job failed, with that reason. */
export const deadLetter = traced(middy(createJobDeadLetterHandler(service.runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
