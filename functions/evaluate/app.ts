import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { NotFoundError } from '../core/platform/errors.ts';
import type { EvaluationService } from '../core/evaluate/jobs.ts';
import { json, jsonBody } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';
import { MetricUnit, recordMetric } from '../core/platform/observability.ts';

export interface EvaluateApiDeps {
  service: EvaluationService;
  maxBodyBytes: number;
  logger: Logger;
  metrics: Metrics;
}

type Result = APIGatewayProxyStructuredResultV2;

/**
 * HTTP API adapter: POST .../evaluate starts a job (202 and its id), GET .../evaluations/{id} gives
 * its status and, once done, its report; .../report.html the rendered report. The job itself is one
 * of the job runtime's (`job` in the answers: GET /v2/jobs/{job}); its worker is the runtime's
 * step handler (functions/adapters/job-steps.ts).
 */
export function createEvaluateApiHandler(deps: EvaluateApiDeps) {
  const { service, logger, metrics } = deps;

  const target = (params: Record<string, string>) => {
    logger.appendKeys({ model: params.name, version: params.version });
    return { name: params.name!, version: params.version! };
  };
  const handler = new ApiRouter((level, message, fields) => logger[level](message, fields), metrics)
    .on('POST', '/v2/models/:name/versions/:version/evaluate', async ({ params, event }) => {
      const { name, version } = target(params);
      const job = await service.create(name, version, jsonBody(event, { maxBytes: deps.maxBodyBytes, emptyHint: 'send JSON with at least {"dataset": "<name>"}' }));
      recordMetric(metrics, 'EvaluationsStarted', MetricUnit.Count, 1, { model: name });
      const location = `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/evaluations/${job.id}`;
      return {
        ...json(202, { id: job.id, job: job.job, model: name, version, baseline: job.baseline, status: job.status, steps: job.steps.length, location }),
        headers: { 'content-type': 'application/json', location },
      };
    })
    .on('GET', '/v2/models/:name/versions/:version/evaluations/:id', async ({ params }) => {
      const { name, version } = target(params);
      return json(200, await service.status(name, version, params.id!));
    })
    .on('GET', '/v2/models/:name/versions/:version/evaluations/:id/report.html', async ({ params }) => {
      const { name, version } = target(params);
      const job = await service.readJob(name, version, params.id!);
      const html = await service.readReportHtml(job);
      if (!html) throw new NotFoundError(`evaluation '${params.id}' has no report yet (status ${job.status})`);
      return { statusCode: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: html };
    })
    .handler();

  return async function evaluateApiHandler(event: APIGatewayProxyEventV2, context?: Context): Promise<Result> {
    logger.resetKeys();
    return handler(event, context);
  };
}
