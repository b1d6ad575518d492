import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createBatchRuntime } from '../core/batch/runtime.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createBatchDeadLetterHandler, createBatchScoreHandler, shardMetrics } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: one session per model version for the life of the environment (ModelSessions).
const { logger, metrics } = createObservability();
const runtime = createBatchRuntime({ logger, onShardScored: shardMetrics(metrics) });
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);

export const handler = traced(middy(createBatchScoreHandler({ runtime: runtime.jobs, log }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics)));

export const deadLetter = traced(middy(createBatchDeadLetterHandler({ runtime: runtime.jobs, log }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics)));
