import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createDynamoClient, createSqsClient } from '../core/aws/clients.ts';
import { requireEnv } from '../core/platform/config.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { createObservability } from '../core/platform/observability.ts';
import { QuantizeJobs } from '../core/quantize/jobs.ts';
import { sqsDispatch } from '../core/quantize/start.ts';
import { createQuantizeApiHandler, createQuantizeWorkerHandler, runJob } from './app.ts';

// Lambda init: clients once per environment.
const { logger } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/models', { events: modelEventsFromEnv() });
const jobs = new QuantizeJobs({ db: DynamoDBDocumentClient.from(createDynamoClient(), { marshallOptions: { removeUndefinedValues: true } }), table: requireEnv('QUANTIZE_JOBS_TABLE') });
const log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => logger[level](message, fields ?? {});
const workerDeps = { store, jobs, log };

/**
 * QUANTIZE_DISPATCH=inline runs the job in this process after answering (the local stack, where
 * serverless-offline keeps the handler's process alive); anything else sends it to the queue, found
 * by name so that serverless-offline needs no CloudFormation reference.
 */
function createDispatch() {
  if (process.env.QUANTIZE_DISPATCH === 'inline') {
    return async (job: string) => {
      void runJob(workerDeps, job).catch((error: Error) => logger.error('inline quantization failed', { job, error: error.message }));
    };
  }
  return sqsDispatch(createSqsClient(), requireEnv('QUANTIZE_QUEUE_NAME'));
}

export const api = middy(
  createQuantizeApiHandler({ store, jobs, dispatch: createDispatch(), workerMemoryMiB: Number(process.env.QUANTIZE_WORKER_MEMORY_MB ?? 3008), log }),
).use(injectLambdaContext(logger, { resetKeys: true }));

export const worker = middy(createQuantizeWorkerHandler(workerDeps)).use(injectLambdaContext(logger, { resetKeys: true }));
