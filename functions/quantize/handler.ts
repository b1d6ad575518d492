import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createQuantizeApiHandler, createQuantizeWorkerHandler, createQuantizeDeadLetterHandler } from './app.ts';
import { readQuantizeConfig } from '../core/quantize/config.ts';
import { quantizeRuntimeFromConfig } from '../core/quantize/runtime.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: configuration checked and clients made once per environment. Three functions share
// this module (the API, the step worker, the dead-letter consumer), each with its own role.
const config = readQuantizeConfig();
const { logger } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/models', { events: modelEventsFromEnv() });
const log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => logger[level](message, fields ?? {});
const { runtime, table } = quantizeRuntimeFromConfig(config, store, log);

export const api = traced(middy(createQuantizeApiHandler({ store, runtime, table, workerMemoryMiB: config.workerMemoryMiB, log })).use(
  injectLambdaContext(logger, { resetKeys: true }),
));

export const worker = traced(middy(createQuantizeWorkerHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));

export const deadLetter = traced(middy(createQuantizeDeadLetterHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
