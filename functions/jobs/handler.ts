import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { createDynamoClient } from '../core/aws/clients.ts';
import { readJobsApiConfig } from '../core/jobs/config.ts';
import { JobTable } from '../core/jobs/job-table.ts';
import { createObservability } from '../core/platform/observability.ts';
import { createJobsApiHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: configuration checked and clients made once per environment.
const config = readJobsApiConfig();
const { logger } = createObservability();
const table = new JobTable(createDynamoClient({ endpoint: config.dynamoEndpoint }), config.table);
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);

export const handler = traced(middy(createJobsApiHandler({ table, log })).use(injectLambdaContext(logger, { resetKeys: true })));
