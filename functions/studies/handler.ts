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
import { readTuneConfig } from '../core/tune/config.ts';
import { createTuneKind } from '../core/tune/jobs.ts';
import { StudyTable } from '../core/tune/study-table.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { createStudiesApiHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: configuration checked and clients made once per environment. One module for the
// studies API, the tune kind's step worker, its dead-letter consumer and the scheduled sweep.
const config = readTuneConfig();
const placement = readContainerPlacement();
const { logger } = createObservability();
const dynamo = createDynamoClient({ endpoint: config.dynamoEndpoint });
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
// A trial's lease outlasts one invocation: a trial whose lane died is failed by the other lanes or the sweep.
const studies = new StudyTable(dynamo, config.table, { leaseMs: config.trialLeaseSeconds * 1000 });
const jobs = new JobTable(dynamo, config.table);
const store = modelStoreFromEnv('/tmp/ai-mass/models', { events: modelEventsFromEnv() });
const runtime = new JobRuntime({
  table: jobs,
  kinds: new JobKinds([createTuneKind({ studies, store, log })]),
  // A study placed on the container worker sends every lane to the container queue (docs/jobs.md, placement).
  queue: new SqsStepQueue(createSqsClient(), withContainerQueue(placement.containerQueue, () => config.stepsQueue)),
  placements: placement.placements,
  visibilitySeconds: config.visibilitySeconds,
  log,
});

export const api = traced(middy(createStudiesApiHandler({ studies, jobs, runtime, store, log })).use(injectLambdaContext(logger, { resetKeys: true })));
export const worker = traced(middy(createJobStepHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
export const deadLetters = traced(middy(createJobDeadLetterHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));

/** The scheduled sweep: trials whose worker died are failed and their budget places returned. */
export const sweep = traced(middy(async () => {
  const failed = await studies.sweep();
  const count = Object.values(failed).reduce((n, list) => n + list.length, 0);
  if (count > 0) log('warn', 'expired trials failed by the sweep', { failed });
  return { failed: count };
}).use(injectLambdaContext(logger, { resetKeys: true })));
