import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import * as z from 'zod';
import { BadRequestError, HttpError, NotFoundError } from '../core/platform/errors.ts';
import type { ModelRepository } from '../core/registry/repository.ts';
import { assertValidName } from '../core/artifacts/names.ts';
import { errorResponse, json, jsonBody, pathSegment } from '../adapters/http.ts';
import { runQuantizeJob, type QuantizeJob, type QuantizeJobs } from '../core/quantize/jobs.ts';
import { quantizeRequestSchema, type QuantizeRequest } from '../core/quantize/options.ts';
import { startQuantization, type StartQuantizationDeps } from '../core/quantize/start.ts';

type Result = APIGatewayProxyStructuredResultV2;
type Log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface QuantizeApiDeps extends StartQuantizationDeps {
  log: Log;
}

const QUANTIZE_ROUTE = /^\/v2\/models\/([^/]+)\/versions\/([^/]+)\/quantize\/?$/;
const JOB_ROUTE = /^\/v2\/models\/([^/]+)\/quantizations\/([^/]+)\/?$/;
const MAX_BODY = 64 * 1024;



/** The request as the schemas parse it; the re-parse on the worker sees the same defaults. */
export function parseQuantizeRequest(body: unknown): QuantizeRequest {
  const parsed = quantizeRequestSchema.safeParse(body);
  if (!parsed.success) throw new BadRequestError(`invalid quantize request: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export function jobView(job: QuantizeJob) {
  return { ...job, links: { self: `/v2/models/${job.model}/quantizations/${job.job}`, ...(job.resultVersion ? { result: `/v2/models/${job.model}/versions/${job.resultVersion}` } : {}) } };
}

/** HTTP API: POST .../versions/{v}/quantize starts (or finds) a job, GET .../quantizations/{job} reads it. */
export function createQuantizeApiHandler(deps: QuantizeApiDeps) {
  async function route(event: APIGatewayProxyEventV2): Promise<Result> {
    const method = event.requestContext.http.method.toUpperCase();
    const path = event.rawPath;
    const start = QUANTIZE_ROUTE.exec(path);
    if (start) {
      if (method !== 'POST') throw new HttpError(405, `method ${method} is not allowed on ${path}; use POST`);
      const name = assertValidName(pathSegment(start[1]!), 'model name');
      const version = assertValidName(pathSegment(start[2]!), 'version');
      const request = parseQuantizeRequest(jsonBody(event, { maxBytes: MAX_BODY, empty: {} }));
      const { job, created } = await startQuantization(deps, name, version, request);
      deps.log('info', created ? 'quantization queued' : 'quantization already known', { job: job.job, model: name, version, method: request.method });
      return json(created ? 202 : 200, jobView(job), { location: `/v2/models/${name}/quantizations/${job.job}` });
    }
    const status = JOB_ROUTE.exec(path);
    if (status) {
      if (method !== 'GET') throw new HttpError(405, `method ${method} is not allowed on ${path}; use GET`);
      const name = assertValidName(pathSegment(status[1]!), 'model name');
      const id = assertValidName(pathSegment(status[2]!), 'job id');
      const job = await deps.jobs.get(id);
      if (!job || job.model !== name) throw new NotFoundError(`model '${name}' has no quantization job '${id}'`);
      return json(200, jobView(job));
    }
    throw new NotFoundError(`no route for ${method} ${path}`);
  }

  return async function quantizeApiHandler(event: APIGatewayProxyEventV2): Promise<Result> {
    try {
      return await route(event);
    } catch (error) {
      return errorResponse(error, deps.log);
    }
  };
}

export interface QuantizeWorkerDeps {
  store: ModelRepository;
  jobs: QuantizeJobs;
  log: Log;
}

const messageSchema = z.object({ job: z.string() });

/** Runs a job from its id; the API's parser decides what the stored options mean. */
export function runJob(deps: QuantizeWorkerDeps, job: string): Promise<QuantizeJob> {
  return runQuantizeJob({ store: deps.store, jobs: deps.jobs, log: (m, f) => deps.log('info', m, f) }, job, (j) => parseQuantizeRequest({ method: j.method, options: j.options }));
}

/** SQS worker: one job per message. A job that fails is recorded as failed (not retried); an error before that is retried by SQS. */
export function createQuantizeWorkerHandler(deps: QuantizeWorkerDeps) {
  return async function quantizeWorkerHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      try {
        const { job } = messageSchema.parse(JSON.parse(record.body));
        const result = await runJob(deps, job);
        deps.log('info', 'quantization job finished', { job, state: result.state, version: result.resultVersion });
      } catch (error) {
        deps.log('error', 'quantization message failed', { messageId: record.messageId, error: (error as Error).message });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
