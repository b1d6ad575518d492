import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { HttpError, NotFoundError } from '../core/platform/errors.ts';
import type { EvaluationService } from '../core/evaluate/jobs.ts';
import { errorResponse, json, jsonBody, pathSegment } from '../adapters/http.ts';
import { MetricUnit, recordMetric } from '../core/platform/observability.ts';

export interface EvaluateApiDeps {
  service: EvaluationService;
  maxBodyBytes: number;
  logger: Logger;
  metrics: Metrics;
}

type Result = APIGatewayProxyStructuredResultV2;

const ROUTE = /^\/v2\/models\/([^/]+)\/versions\/([^/]+)\/(evaluate|evaluations\/([^/]+)(\/report\.html)?)\/?$/;

/**
 * HTTP API adapter: POST .../evaluate starts a job (202 and its id), GET .../evaluations/{id} gives
 * its status and, once done, its report; .../report.html the rendered report. The job itself is one
 * of the job runtime's (`job` in the answers: GET /v2/jobs/{job}); its worker is the runtime's
 * step handler (functions/adapters/job-steps.ts).
 */
export function createEvaluateApiHandler(deps: EvaluateApiDeps) {
  const { service, logger, metrics } = deps;

  async function route(event: APIGatewayProxyEventV2): Promise<Result> {
    const method = event.requestContext.http.method.toUpperCase();
    const path = event.rawPath;
    const match = ROUTE.exec(path);
    if (!match) throw new NotFoundError(`no route for ${method} ${path}`);
    const name = pathSegment(match[1]!);
    const version = pathSegment(match[2]!);
    logger.appendKeys({ model: name, version });
    if (match[3] === 'evaluate') {
      if (method !== 'POST') throw new HttpError(405, `method ${method} is not allowed on ${path}; use POST`);
      const job = await service.create(name, version, jsonBody(event, { maxBytes: deps.maxBodyBytes, emptyHint: 'send JSON with at least {"dataset": "<name>"}' }));
      recordMetric(metrics, 'EvaluationsStarted', MetricUnit.Count, 1, { model: name });
      const location = `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/evaluations/${job.id}`;
      return {
        ...json(202, { id: job.id, job: job.job, model: name, version, baseline: job.baseline, status: job.status, steps: job.steps.length, location }),
        headers: { 'content-type': 'application/json', location },
      };
    }
    if (method !== 'GET') throw new HttpError(405, `method ${method} is not allowed on ${path}; use GET`);
    const id = pathSegment(match[4]!);
    if (match[5]) {
      const job = await service.readJob(name, version, id);
      const html = await service.readReportHtml(job);
      if (!html) throw new NotFoundError(`evaluation '${id}' has no report yet (status ${job.status})`);
      return { statusCode: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: html };
    }
    return json(200, await service.status(name, version, id));
  }

  return async function evaluateApiHandler(event: APIGatewayProxyEventV2): Promise<Result> {
    logger.resetKeys();
    try {
      return await route(event);
    } catch (error) {
      return errorResponse(error, (level, message, fields) => logger[level](message, fields), metrics);
    }
  };
}
