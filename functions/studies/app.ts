import { Router } from '@aws-lambda-powertools/event-handler/http';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { BadRequestError, NotFoundError } from '../core/platform/errors.ts';
import type { JobTable } from '../core/jobs/job-table.ts';
import type { JobRuntime } from '../core/jobs/runtime.ts';
import type { ModelRepository } from '../core/registry/repository.ts';
import { readStudy, startStudy } from '../core/tune/service.ts';
import type { StudyTable } from '../core/tune/study-table.ts';
import { errorResponse, json, jsonBody, type ErrorLog } from '../adapters/http.ts';

/** Fields API Gateway leaves out when empty, and serverless-offline (the local stack) sends as null. */
const OPTIONAL_FIELDS = ['body', 'pathParameters', 'queryStringParameters', 'stageVariables', 'cookies'] as const;

function withoutNulls(event: APIGatewayProxyEventV2): APIGatewayProxyEventV2 {
  const copy: Record<string, unknown> = { ...event };
  for (const field of OPTIONAL_FIELDS) if (copy[field] === null) delete copy[field];
  return copy as unknown as APIGatewayProxyEventV2;
}

export interface StudiesApiDeps {
  studies: StudyTable;
  jobs: JobTable;
  runtime: JobRuntime;
  store: ModelRepository;
  log: ErrorLog & ((level: 'info', message: string, fields: Record<string, unknown>) => void);
}

/**
 * The studies API: POST /v2/studies starts a study (its tune job runs the trials), GET
 * /v2/studies/{id} reads it with its trials and best so far. Errors map to responses in
 * adapters/http.ts as in every other API function.
 */
export function createStudiesApiHandler(deps: StudiesApiDeps) {
  const app = new Router();
  const result = (r: APIGatewayProxyStructuredResultV2) => r as never;

  app.post('/v2/studies', async ({ event }) => {
    const started = await startStudy(deps, jsonBody(event as APIGatewayProxyEventV2, { maxBytes: 64 * 1024, emptyHint: 'send the study as JSON (docs/tuning.md)' }));
    deps.log('info', 'study started', { study: started.id, job: started.job.id, created: started.created });
    const view = await readStudy(deps, started.id);
    return result(json(started.created ? 202 : 200, view, { location: `/v2/studies/${started.id}` }));
  });

  app.get('/v2/studies/:id', async ({ params }) => result(json(200, await readStudy(deps, params.id!))));

  app.notFound(async (_error, { event }) => {
    const { method, path } = (event as APIGatewayProxyEventV2).requestContext.http;
    return result(errorResponse(new NotFoundError(`no route for ${method} ${path}`), deps.log));
  });
  app.errorHandler(URIError, async (_error, { event }) =>
    result(errorResponse(new BadRequestError(`malformed percent-encoding in path ${JSON.stringify((event as APIGatewayProxyEventV2).rawPath.slice(0, 200))}`), deps.log)),
  );
  app.errorHandler(Error, async (error) => result(errorResponse(error, deps.log)));

  return async function studiesApiHandler(event: APIGatewayProxyEventV2, context: Context): Promise<APIGatewayProxyStructuredResultV2> {
    return app.resolve(withoutNulls(event), context);
  };
}
