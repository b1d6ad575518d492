import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createBatchRuntime } from '../core/batch/runtime.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createBatchDeadLetterHandler, createBatchScoreHandler } from './app.ts';

// Lambda init: one session per model version for the life of the environment (ModelSessions).
const { logger, metrics } = createObservability();
const runtime = createBatchRuntime({ logger });
/** Init's asynchronous part, which the packaged shim awaits in Lambda's init phase (infra/esbuild/script-loader.ts). */
export const ready = runtime.init();

export const handler = middy(createBatchScoreHandler({ scorer: runtime.scorer(), logger, metrics }))
  .before(() => ready)
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));

export const deadLetter = middy(createBatchDeadLetterHandler({ scorer: runtime.scorer(), logger, metrics }))
  .before(() => ready)
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));
