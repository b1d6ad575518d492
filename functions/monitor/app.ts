import type { ScheduledEvent } from 'aws-lambda';
import type { JobRuntime } from '../core/jobs/runtime.ts';
import type { ModelRepository } from '../core/registry/repository.ts';
import { runCanaryGuard, type GuardDeps, type GuardVerdict } from '../core/monitor/guard.ts';
import { MONITOR_KIND, scheduleDriftJobs, yesterday, type MonitorRequest } from '../core/monitor/jobs.ts';

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
