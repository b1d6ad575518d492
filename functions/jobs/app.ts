import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { cancelJob, readJob } from '../core/jobs/control.ts';
import type { JobTable } from '../core/jobs/job-table.ts';
import { jobView } from '../core/jobs/record.ts';
import { json, type ErrorLog } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';

export interface JobsApiDeps {
  table: JobTable;
  log: ErrorLog & ((level: 'info', message: string, fields: Record<string, unknown>) => void);
  now?: () => number;
}

/** The jobs API, one for every kind: GET /v2/jobs/{id} reads a job, POST /v2/jobs/{id}/cancel cancels it. */
export function createJobsApiHandler(deps: JobsApiDeps): (event: APIGatewayProxyEventV2, context?: Context) => Promise<APIGatewayProxyStructuredResultV2> {
  return new ApiRouter(deps.log)
    .on('GET', '/v2/jobs/:id', async ({ params }) => json(200, jobView(await readJob(deps.table, params.id!))))
    .on('POST', '/v2/jobs/:id/cancel', async ({ params }) => {
      const job = await cancelJob(deps.table, params.id!, deps.now);
      deps.log('info', 'job cancel requested', { job: job.id, kind: job.kind, state: job.state });
      return json(200, jobView(job));
    })
    .handler();
}
