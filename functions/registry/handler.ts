import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { latestEvaluationVerdict } from '../core/evaluate/gate.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createRegistryHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

const { logger } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/registry', { events: modelEventsFromEnv() });

export const handler = traced(middy(createRegistryHandler({ store, logger, gate: latestEvaluationVerdict })).use(injectLambdaContext(logger, { resetKeys: true })));
