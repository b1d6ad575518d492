import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { MetricUnit, recordMetric } from '../core/platform/observability.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../adapters/job-steps.ts';
import type { ShardOutcome } from '../core/batch/shard-scorer.ts';
import type { JobRuntime } from '../core/jobs/runtime.ts';

type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

/** An SQS event source's invocation; the local stack's pollers pass no context, and get Lambda's 15 minutes. */
type Invocation = Pick<Context, 'getRemainingTimeInMillis'>;
const LOCAL_INVOCATION: Invocation = { getRemainingTimeInMillis: () => 900_000 };

/**
 * The shard queue's event source: each record is one step of a batch job (a shard, or the merge),
 * run by the job runtime (docs/jobs.md) through its SQS adapter, one after another (one
 * onnxruntime session already uses every vCPU). A step that fails is reported in batchItemFailures
 * and retried by the runtime's rule; a message no delivery could handle ends in the dead-letter queue.
 */
export function createBatchScoreHandler(deps: { runtime: JobRuntime; log: Log }) {
  const steps = createJobStepHandler(deps.runtime, deps.log);
  return (event: SQSEvent, context?: Invocation): Promise<SQSBatchResponse> => steps(event, context ?? LOCAL_INVOCATION);
}

/** The dead-letter queue's event source: each record is a step no delivery could end; its job ends by the batch rule. */
export function createBatchDeadLetterHandler(deps: { runtime: JobRuntime; log: Log }) {
  return createJobDeadLetterHandler(deps.runtime, deps.log);
}

/** Rows and time of each scored shard, as metrics per model. */
export function shardMetrics(metrics: Metrics) {
  return (outcome: ShardOutcome, model: string): void => {
    recordMetric(metrics, 'BatchRowsScored', MetricUnit.Count, outcome.rows - outcome.failed, { model });
    recordMetric(metrics, 'BatchRowsFailed', MetricUnit.Count, outcome.failed, { model });
    recordMetric(metrics, 'BatchShardMs', MetricUnit.Milliseconds, outcome.ms, { model });
  };
}
