import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createSqsClient } from '../core/clients.ts';
import { readEvaluateConfig } from '../core/evaluate/config.ts';
import { EvaluationService } from '../core/evaluate/jobs.ts';
import { SqsEvaluationQueue } from '../core/evaluate/queue.ts';
import { ModelSessions } from '../core/model-sessions.ts';
import { pipelineSessionLoader } from '../core/pipeline/session.ts';
import { modelStoreFromEnv } from '../core/model-store-env.ts';
import { createObservability } from '../core/observability.ts';
import { createEvaluateApiHandler, createEvaluateWorkerHandler } from './app.ts';

// Lambda init: clients, store and sessions are created once per environment; sessions and decoded
// data sets then serve every step this environment runs.
const config = readEvaluateConfig();
const { logger, metrics } = createObservability();
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
  queue: new SqsEvaluationQueue(createSqsClient(), config.queueName),
  intraOpThreads: config.intraOpThreads,
  log: (level, message, fields) => logger[level](message, fields),
});

/** HTTP API: start an evaluation, read its status and report. */
export const api = middy(createEvaluateApiHandler({ service, maxBodyBytes: config.maxBodyBytes, logger, metrics }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));

/** SQS (FIFO): run an evaluation's steps within this invocation's time, queue the rest. */
export const worker = middy(createEvaluateWorkerHandler({ service, logger })).use(injectLambdaContext(logger, { resetKeys: true }));
