import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context, ScheduledEvent } from 'aws-lambda';
import type { JobRuntime } from '../core/jobs/runtime.ts';
import { jobView } from '../core/jobs/record.ts';
import type { ModelRepository } from '../core/registry/repository.ts';
import { assertValidName, assertValidVersion } from '../core/artifacts/names.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../core/platform/errors.ts';
import { readBaseline } from '../core/monitor/baseline.ts';
import { runCanaryGuard, type GuardDeps, type GuardVerdict } from '../core/monitor/guard.ts';
import { MONITOR_KIND, parseMonitorRequest, scheduleDriftJobs, yesterday, type MonitorRequest } from '../core/monitor/jobs.ts';
import { json, jsonBody } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';

type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

/** EventBridge schedule: the drift jobs of yesterday's capture (a finished day), each submitted once. */
export function createDriftScheduleHandler(deps: { store: ModelRepository; runtime: JobRuntime; log: Log; now?: () => Date }) {
  return async function driftScheduleHandler(event: Pick<ScheduledEvent, 'time'>) {
    const at = event.time ? new Date(event.time) : (deps.now?.() ?? new Date());
    const date = yesterday(Number.isNaN(at.getTime()) ? (deps.now?.() ?? new Date()) : at);
    const submit = (request: MonitorRequest, key: string) => deps.runtime.submit({ kind: MONITOR_KIND, request, key, parent: { model: request.model, version: request.version } });
    const submitted = await scheduleDriftJobs(deps.store, submit, date);
    deps.log('info', 'drift jobs submitted', { date, submitted });
    return { date, submitted };
  };
}

/** EventBridge schedule (every minute): one pass of the canary guard. */
export function createCanaryGuardHandler(deps: GuardDeps & { log: Log }) {
  return async function canaryGuardHandler(): Promise<{ verdicts: GuardVerdict[] }> {
    const verdicts = await runCanaryGuard(deps);
    for (const v of verdicts) {
      const level = v.outcome === 'rolled-back' ? 'warn' : v.outcome === 'rollback-failed' ? 'error' : 'info';
      deps.log(level, `canary ${v.outcome}`, { model: v.model, alias: v.alias, stable: v.stable, canary: v.canary, reasons: v.reasons, ...(v.error ? { error: v.error } : {}) });
    }
    return { verdicts };
  };
}

/**
 * POST /v2/models/{name}/versions/{version}/monitor: a monitoring job on request, beside the schedule.
 * The body says which: `{}` or `{"task": "drift", "date"?: "YYYY-MM-DD"}` (a drift report of that
 * day's capture, today by default) or `{"task": "baseline", "dataset": "<name>", "rows"?: n}`. The
 * version must exist, and a drift job needs its baseline (409 otherwise). Answers 202 with the job;
 * GET /v2/jobs/{id} follows it.
 */
export function createMonitorApiHandler(deps: { store: ModelRepository; runtime: JobRuntime; maxBodyBytes: number; log: Log }): (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyStructuredResultV2> {
  return new ApiRouter(deps.log)
    .on('POST', '/v2/models/:name/versions/:version/monitor', async ({ params, event }) => {
      const model = assertValidName(params.name!, 'model name');
      const version = assertValidVersion(params.version!);
      const body = event.body ? jsonBody(event, { maxBytes: deps.maxBodyBytes, emptyHint: 'send {} for a drift report of today, or {"task": "baseline", "dataset": "<name>"}' }) : {};
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequestError('the body must be a JSON object: {"task": "drift" | "baseline", ...}');
      if ('model' in body || 'version' in body) throw new BadRequestError('the model and version come from the path; leave them out of the body');
      const request = parseMonitorRequest({ task: 'drift', ...body, model, version });
      await deps.store.getManifest(model, version);
      if (request.task === 'drift') {
        try {
          await readBaseline(deps.store, model, version);
        } catch (error) {
          if (error instanceof NotFoundError) throw new ConflictError(`${error.message}, or POST this route with {"task": "baseline", "dataset": "<name>"}`, { cause: error });
          throw error;
        }
      }
      const { job, created } = await deps.runtime.submit({ kind: MONITOR_KIND, request, parent: { model, version } });
      deps.log('info', 'monitoring job submitted', { job: job.id, task: request.task, model, version, created });
      const location = `/v2/jobs/${job.id}`;
      return { ...json(202, jobView(job)), headers: { 'content-type': 'application/json', location } };
    })
    .handler();
}
