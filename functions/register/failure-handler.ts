import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { modelStoreFromEnv } from '../core/model-store-env.ts';
import { createObservability } from '../core/observability.ts';
import { createRegisterFailureHandler } from './failure-app.ts';

const { logger } = createObservability();
const store = modelStoreFromEnv('/tmp/ai-mass/register-failure');

/** The register function's on-failure destination (serverless: destinations.onFailure of `register`). */
export const handler = middy(createRegisterFailureHandler({ store, logger })).use(injectLambdaContext(logger, { resetKeys: true }));
