import { Router } from '@aws-lambda-powertools/event-handler/http';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { BadRequestError, NotFoundError } from '../core/platform/errors.ts';
import { cancelJob, readJob } from '../core/jobs/control.ts';
import type { JobTable } from '../core/jobs/job-table.ts';
import { jobView } from '../core/jobs/record.ts';
import { errorResponse, json, type ErrorLog } from '../adapters/http.ts';

/** Fields API Gateway leaves out when empty, and serverless-offline (the local stack) sends as null. */
const OPTIONAL_FIELDS = ['body', 'pathParameters', 'queryStringParameters', 'stageVariables', 'cookies'] as const;

/** The event as API Gateway sends it: the router refuses a null where it expects a field to be absent. */
function withoutNulls(event: APIGatewayProxyEventV2): APIGatewayProxyEventV2 {
  const copy: Record<string, unknown> = { ...event };
  for (const field of OPTIONAL_FIELDS) if (copy[field] === null) delete copy[field];
  return copy as unknown as APIGatewayProxyEventV2;
}

export interface JobsApiDeps {
  table: JobTable;
  log: ErrorLog & ((level: 'info', message: string, fields: Record<string, unknown>) => void);
  now?: () => number;
}

/**
 * The jobs API, one for every kind: GET /v2/jobs/{id} reads a job, POST /v2/jobs/{id}/cancel
 * cancels it. Routes are declared once, with Powertools' router; errors map to responses in
 * adapters/http.ts as in every other API function.
 */
export function createJobsApiHandler(deps: JobsApiDeps) {
  const app = new Router();
  // Handlers return API Gateway results, which the router passes through as they are.
  const result = (r: APIGatewayProxyStructuredResultV2) => r as never;

  app.get('/v2/jobs/:id', async ({ params }) => result(json(200, jobView(await readJob(deps.table, params.id!)))));

  app.post('/v2/jobs/:id/cancel', async ({ params }) => {
    const job = await cancelJob(deps.table, params.id!, deps.now);
    deps.log('info', 'job cancel requested', { job: job.id, kind: job.kind, state: job.state });
    return result(json(200, jobView(job)));
  });

  app.notFound(async (_error, { event }) => {
    const { method, path } = (event as APIGatewayProxyEventV2).requestContext.http;
    return result(errorResponse(new NotFoundError(`no route for ${method} ${path}`), deps.log));
  });
  // The router decodes path parameters itself: a malformed %-escape is the client's error.
  app.errorHandler(URIError, async (_error, { event }) =>
    result(errorResponse(new BadRequestError(`malformed percent-encoding in path ${JSON.stringify((event as APIGatewayProxyEventV2).rawPath.slice(0, 200))}`), deps.log)),
  );
  app.errorHandler(Error, async (error) => result(errorResponse(error, deps.log)));

  return async function jobsApiHandler(event: APIGatewayProxyEventV2, context: Context): Promise<APIGatewayProxyStructuredResultV2> {
    return app.resolve(withoutNulls(event), context);
  };
}
