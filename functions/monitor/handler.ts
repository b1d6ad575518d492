import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { createDynamoClient, createSqsClient } from '../core/aws/clients.ts';
import { JobTable } from '../core/jobs/job-table.ts';
import { JobKinds } from '../core/jobs/kinds.ts';
import { JobRuntime } from '../core/jobs/runtime.ts';
import { SqsStepQueue } from '../core/jobs/step-queue.ts';
import { ModelSessions } from '../core/sessions/model-sessions.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { MONITOR_VISIBILITY_SECONDS, readMonitorConfig } from '../core/monitor/config.ts';
import { monitorJobKind } from '../core/monitor/jobs.ts';
import { CloudWatchMetricsSource, LocalMetricsStore } from '../core/monitor/metrics-source.ts';
import { createObservability, MetricUnit, recordMetric } from '../core/platform/observability.ts';
import { modelEventsFromEnv } from '../core/registry/events.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import { readEnv } from '../core/platform/env.ts';
import { createCanaryGuardHandler, createDriftScheduleHandler, createMonitorApiHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: one module for the five monitor functions (worker, dead letters, schedule, guard, API);
// clients are made on first use, so each function only pays for what it touches.
const config = readMonitorConfig();
const { logger, metrics } = createObservability();
const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
const store = modelStoreFromEnv(config.cacheDir, { events: modelEventsFromEnv() });
const sessions = new ModelSessions({ store, intraOpThreads: config.intraOpThreads });
const metric = (name: string, value: number, dimensions: Record<string, string>, unit: 'Count' | 'None' = 'Count') =>
  recordMetric(metrics, name, unit === 'Count' ? MetricUnit.Count : MetricUnit.NoUnit, value, dimensions);
const runtime = new JobRuntime({
  table: new JobTable(createDynamoClient({ endpoint: config.dynamoEndpoint }), config.table),
  kinds: new JobKinds([monitorJobKind({ store, sessions, events: store.events, metric })]),
  queue: new SqsStepQueue(createSqsClient(), () => {
    if (!config.stepQueue) throw new Error('MONITOR_STEP_QUEUE environment variable is not set');
    return config.stepQueue;
  }),
  visibilitySeconds: MONITOR_VISIBILITY_SECONDS,
  log,
});

/** SQS: steps of monitoring jobs (baselines, drift reports). */
export const worker = traced(middy(createJobStepHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
/** SQS (the step queue's dead-letter queue): ends the steps no delivery could run. */
export const deadLetters = traced(middy(createJobDeadLetterHandler(runtime, log)).use(injectLambdaContext(logger, { resetKeys: true })));
/** HTTP API: a drift report or a baseline on request (POST /v2/models/{name}/versions/{version}/monitor). */
export const api = traced(
  middy(createMonitorApiHandler({ store, runtime, log, maxBodyBytes: Number(readEnv(['MAX_BODY_BYTES']).MAX_BODY_BYTES ?? 65536) })).use(injectLambdaContext(logger, { resetKeys: true })),
);
/** EventBridge schedule: yesterday's drift jobs. */
export const schedule = traced(middy(createDriftScheduleHandler({ store, runtime, log })).use(injectLambdaContext(logger, { resetKeys: true })));
/** EventBridge schedule: the canary guard. */
export const guard = traced(middy(
  createCanaryGuardHandler({
    store,
    log,
    metrics:
      config.metricsSource === 'local'
        ? new LocalMetricsStore(config.localMetricsFile!)
        : new CloudWatchMetricsSource({ namespace: config.namespace, service: config.service, ...(config.region ? { region: config.region } : {}) }),
    onRollback: () => {
      recordMetric(metrics, 'CanaryRollbacks', MetricUnit.Count, 1, {});
    },
  }),
).use(injectLambdaContext(logger, { resetKeys: true })));
