import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { createBatchRuntime } from '../core/batch/runtime.ts';
import type { BatchService } from '../core/batch/service.ts';
import { DEFAULT_MAX_BODY_BYTES } from '../core/platform/config.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createBatchApiHandler, createBatchSubmitQueueHandler, createBatchUploadHandler } from './app.ts';

// Lambda init: clients and the service once per environment. Three functions share this module,
// one per trigger, so each can have its own role.
const { logger, metrics } = createObservability();
const runtime = createBatchRuntime({ logger });
/** Init's asynchronous part (queue names to URLs), which the packaged shim awaits in Lambda's init phase (infra/esbuild/script-loader.ts). */
export const ready = runtime.init();
const maxBodyBytes = process.env.MAX_BODY_BYTES ? Number(process.env.MAX_BODY_BYTES) : DEFAULT_MAX_BODY_BYTES;

/** A handler made once init is done: the batch service needs the queue URLs init resolves. */
function afterInit<A extends unknown[], R>(make: (service: BatchService) => (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  const made = ready.then(() => make(runtime.service()));
  made.catch(() => undefined); // a failed init fails the shim's import, and every call below
  return async (...args) => (await made)(...args);
}

export const api = middy(afterInit((service) => createBatchApiHandler({ service, maxBodyBytes, logger, metrics })))
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics));

export const upload = middy(afterInit((service) => createBatchUploadHandler({ service, s3: runtime.s3, logger })))
  .use(injectLambdaContext(logger, { resetKeys: true }));

export const submitQueue = middy(afterInit((service) => createBatchSubmitQueueHandler({ service, logger })))
  .use(injectLambdaContext(logger, { resetKeys: true }));
