import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type { JobTable } from '../core/jobs/job-table.ts';
import type { JobRuntime } from '../core/jobs/runtime.ts';
import type { ModelRepository } from '../core/registry/repository.ts';
import { readStudy, startStudy } from '../core/tune/service.ts';
import type { StudyTable } from '../core/tune/study-table.ts';
import { json, jsonBody, type ErrorLog } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';

export interface StudiesApiDeps {
  studies: StudyTable;
  jobs: JobTable;
  runtime: JobRuntime;
  store: ModelRepository;
  log: ErrorLog & ((level: 'info', message: string, fields: Record<string, unknown>) => void);
}

/**
 * The studies API: POST /v2/studies starts a study (its tune job runs the trials), GET
 * /v2/studies/{id} reads it with its trials and best so far. Routes declared once (adapters/router.ts).
 */
export function createStudiesApiHandler(deps: StudiesApiDeps): (event: APIGatewayProxyEventV2, context?: Context) => Promise<APIGatewayProxyStructuredResultV2> {
  return new ApiRouter(deps.log)
    .on('POST', '/v2/studies', async ({ event }) => {
      const started = await startStudy(deps, jsonBody(event, { maxBytes: 64 * 1024, emptyHint: 'send the study as JSON (docs/tuning.md)' }));
      deps.log('info', 'study started', { study: started.id, job: started.job.id, created: started.created });
      const view = await readStudy(deps, started.id);
      return json(started.created ? 202 : 200, view, { location: `/v2/studies/${started.id}` });
    })
    .on('GET', '/v2/studies/:id', async ({ params }) => json(200, await readStudy(deps, params.id!)))
    .handler();
}
