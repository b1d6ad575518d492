import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createRegisterFailureHandler, type FailedInvocationRecord } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

const { logger } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/register-failure');
const recordFailure = createRegisterFailureHandler({ store, logger });
const processor = new BatchProcessor(EventType.SQS);

/**
 * Consumes the register function's on-failure queue (Lambda puts each event that failed every retry
 * there, with its error): each upload in it gets a rejection record. A message that cannot be handled
 * stays on the queue and, after its receives, goes to the queue's dead-letter queue, which alarms.
 */
async function recordOne(record: SQSRecord): Promise<void> {
  await recordFailure(JSON.parse(record.body) as FailedInvocationRecord);
}

export const handler = traced(middy((event: SQSEvent) => processPartialResponse(event, recordOne, processor, { throwOnFullBatchFailure: false })).use(
  injectLambdaContext(logger, { resetKeys: true }),
));
