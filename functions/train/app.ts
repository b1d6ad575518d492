import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import * as z from 'zod';
import { BadRequestError } from '../core/platform/errors.ts';
import type { JobRuntime } from '../core/jobs/runtime.ts';
import { jobView } from '../core/jobs/record.ts';
import type { ModelRepository } from '../core/registry/repository.ts';
import { assertValidName } from '../core/artifacts/names.ts';
import { TRAIN_KIND, validateTrainSubmission } from '../core/train/jobs.ts';
import { trainRequestSchema, type TrainRequest } from '../core/train/options.ts';
import { header, json, jsonBody, type ErrorLog } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';

type Log = ErrorLog & ((level: 'info', message: string, fields: Record<string, unknown>) => void);

export interface TrainApiDeps {
  store: ModelRepository;
  runtime: Pick<JobRuntime, 'submit'>;
  log: Log;
}

const MAX_BODY = 64 * 1024;

/** The request as the schema parses it (defaults filled in); a 400 that names every bad option. */
export function parseTrainRequest(body: unknown): TrainRequest {
  const parsed = trainRequestSchema.safeParse(body);
  if (!parsed.success) throw new BadRequestError(`invalid train request: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/**
 * POST /v2/models/{name}/versions/{version}/train starts a fine-tuning, distillation or pruning job
 * on the job runtime, after every check that can be made up front (docs/training.md); its status is
 * GET /v2/jobs/{id}. An `Idempotency-Key` header makes a retried submission find the same job.
 */
export function createTrainApiHandler(deps: TrainApiDeps): (event: APIGatewayProxyEventV2, context?: Context) => Promise<APIGatewayProxyStructuredResultV2> {
  return new ApiRouter(deps.log)
    .on('POST', '/v2/models/:name/versions/:version/train', async ({ params, event }) => {
      const model = assertValidName(params.name!, 'model name');
      const version = assertValidName(params.version!, 'version');
      const request = parseTrainRequest(jsonBody(event, { maxBytes: MAX_BODY, emptyHint: 'send {"method": "finetune" | "distill" | "prune", "dataset": "<name>", ...}' }));
      await validateTrainSubmission(deps.store, model, version, request);
      const key = header(event, 'idempotency-key');
      const { job, created } = await deps.runtime.submit({ kind: TRAIN_KIND, request: { ...request, model, version }, parent: { model, version }, ...(key !== undefined ? { key } : {}) });
      deps.log('info', created ? 'train job submitted' : 'train job already known', { job: job.id, model, version, method: request.method, dataset: request.dataset });
      return json(created ? 202 : 200, jobView(job), { location: `/v2/jobs/${job.id}` });
    })
    .handler();
}
