import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createBatchRuntime } from '../core/batch/runtime.ts';
import { DEFAULT_MAX_BODY_BYTES } from '../core/platform/config.ts';
import { createObservability } from '../core/platform/observability.ts';
import { readEnv } from '../core/platform/env.ts';
import { createBatchApiHandler, createBatchSubmitQueueHandler, createBatchUploadHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: clients and the service once per environment. Three functions share this module,
// one per trigger, so each can have its own role.
const { logger, metrics } = createObservability();
const runtime = createBatchRuntime({ logger });
const service = runtime.service();
const { MAX_BODY_BYTES } = readEnv(['MAX_BODY_BYTES']);
const maxBodyBytes = MAX_BODY_BYTES ? Number(MAX_BODY_BYTES) : DEFAULT_MAX_BODY_BYTES;

export const api = traced(middy(createBatchApiHandler({ service, maxBodyBytes, logger, metrics }))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics)));

export const upload = traced(middy(createBatchUploadHandler({ service, s3: runtime.s3, logger })).use(injectLambdaContext(logger, { resetKeys: true })));

export const submitQueue = traced(middy(createBatchSubmitQueueHandler({ service, logger })).use(injectLambdaContext(logger, { resetKeys: true })));
