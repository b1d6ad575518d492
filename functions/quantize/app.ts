import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, SQSBatchResponse, SQSEvent, Context } from 'aws-lambda';
import { NotFoundError } from '../core/platform/errors.ts';
import { assertValidName } from '../core/artifacts/names.ts';
import type { JobTable } from '../core/jobs/job-table.ts';
import type { JobRecord } from '../core/jobs/record.ts';
import type { JobRuntime } from '../core/jobs/runtime.ts';
import { json, jsonBody } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { parseQuantizeRequest, QUANTIZE_KIND, quantizeJobView } from '../core/quantize/jobs.ts';
import { startQuantization, type StartQuantizationDeps } from '../core/quantize/start.ts';

type Log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface QuantizeApiDeps extends StartQuantizationDeps {
  /** Where the job records are read from (the runtime's table). */
  table: JobTable;
  log: Log;
}

const MAX_BODY = 64 * 1024;

export { parseQuantizeRequest };

/** A quantize job as the quantize routes answer: its view, a link to itself, to the version it made, and to the job runtime's record. */
export function jobView(record: JobRecord) {
  const job = quantizeJobView(record);
  return {
    ...job,
    links: {
      self: `/v2/models/${job.model}/quantizations/${job.job}`,
      ...(job.resultVersion ? { result: `/v2/models/${job.model}/versions/${job.resultVersion}` } : {}),
      job: `/v2/jobs/${job.job}`,
      cancel: `/v2/jobs/${job.job}/cancel`,
    },
  };
}

/** HTTP API: POST .../versions/{v}/quantize starts (or finds) a job, GET .../quantizations/{job} reads it (as does GET /v2/jobs/{job}). */
export function createQuantizeApiHandler(deps: QuantizeApiDeps): (event: APIGatewayProxyEventV2, context?: Context) => Promise<APIGatewayProxyStructuredResultV2> {
  return new ApiRouter(deps.log)
    .on('POST', '/v2/models/:name/versions/:version/quantize', async ({ params, event }) => {
      const name = assertValidName(params.name!, 'model name');
      const version = assertValidName(params.version!, 'version');
      const request = parseQuantizeRequest(jsonBody(event, { maxBytes: MAX_BODY, empty: {} }));
      const { job, created } = await startQuantization(deps, name, version, request);
      deps.log('info', created ? 'quantization queued' : 'quantization already known', { job: job.id, model: name, version, method: request.method });
      return json(created ? 202 : 200, jobView(job), { location: `/v2/models/${name}/quantizations/${job.id}` });
    })
    .on('GET', '/v2/models/:name/quantizations/:job', async ({ params }) => {
      const name = assertValidName(params.name!, 'model name');
      const id = assertValidName(params.job!, 'job id');
      const job = await deps.table.getJob(id);
      if (!job || job.kind !== QUANTIZE_KIND || quantizeJobView(job).model !== name) throw new NotFoundError(`model '${name}' has no quantization job '${id}'`);
      return json(200, jobView(job));
    })
    .handler();
}

/** An SQS event source's invocation; the local stack's poller and the tests pass none, and get Lambda's 15 minutes. */
type Invocation = Pick<Context, 'getRemainingTimeInMillis'>;
const LOCAL_INVOCATION: Invocation = { getRemainingTimeInMillis: () => 900_000 };

/** The step queue's worker: the job runtime runs the quantize step (retried by its rule, ended by the kind's). */
export function createQuantizeWorkerHandler(runtime: JobRuntime, log: Log) {
  const steps = createJobStepHandler(runtime, (level, message, fields) => log(level, message, fields));
  return (event: SQSEvent, context?: Invocation): Promise<SQSBatchResponse> => steps(event, context ?? LOCAL_INVOCATION);
}

/** The dead-letter queue's consumer: a step no delivery could run ends its job failed, with that reason. */
export function createQuantizeDeadLetterHandler(runtime: JobRuntime, log: Log) {
  return createJobDeadLetterHandler(runtime, (level, message, fields) => log(level, message, fields));
}
