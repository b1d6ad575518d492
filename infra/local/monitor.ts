import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSEvent } from 'aws-lambda';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { runCanaryGuard, type GuardVerdict } from '../../functions/core/monitor/guard.ts';
import { monitorJobKind, MONITOR_KIND, type MonitorRequest } from '../../functions/core/monitor/jobs.ts';
import { LocalMetricsStore, type EmfSample } from '../../functions/core/monitor/metrics-source.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';

/**
 * Monitoring on one machine: the metrics store fed with the EMF lines the functions print (the
 * stack hands it serverless-offline's output), the monitor kind's worker on its step queue, and the
 * canary guard every few seconds against the stored metrics. Tests drive the same pieces directly.
 */
export const localMonitorQueue = (prefix: string) => `${prefix}-monitor-steps`;
/** How often the local stack's canary guard looks (the deployed one runs every minute). */
export const LOCAL_GUARD_EVERY_MS = 5_000;

export interface LocalMonitorOptions {
  store: ModelRepository;
  sqs: SQSClient;
  dynamo: DynamoDBClient;
  table: string;
  prefix: string;
  metricsFile: string;
  intraOpThreads?: number;
  log?: (line: string) => void;
}

export async function createLocalMonitor(options: LocalMonitorOptions) {
  const queueName = localMonitorQueue(options.prefix);
  const queueUrl = (await options.sqs.send(new CreateQueueCommand({ QueueName: queueName, Attributes: { VisibilityTimeout: '960' } }))).QueueUrl!;
  const metricsStore = new LocalMetricsStore(options.metricsFile);
  const emitted: EmfSample[] = [];
  // What the worker emits in AWS goes to the same store here (it runs in this process, not in serverless-offline).
  const metric = (name: string, value: number, dimensions: Record<string, string>, unit: 'Count' | 'None' = 'Count') => {
    const sample: EmfSample = { at: Date.now(), namespace: 'AIMass', name, unit, values: [value], dimensionSets: [['service', ...Object.keys(dimensions)]], dimensions: { service: 'ai-mass', ...dimensions } };
    emitted.push(sample);
    void metricsStore.append([sample]);
  };
  const sessions = new ModelSessions({ store: options.store, intraOpThreads: options.intraOpThreads });
  const runtime = new JobRuntime({
    table: new JobTable(options.dynamo, options.table),
    kinds: new JobKinds([monitorJobKind({ store: options.store, sessions, events: options.store.events, metric })]),
    queue: new SqsStepQueue(options.sqs, () => queueName),
    visibilitySeconds: 960,
    // One machine, nothing to back off from: a failed attempt is retried after a second.
    retryDelaySeconds: 1,
    log: (level, message, fields) => {
      if (level !== 'info') options.log?.(`monitor ${level}: ${message} ${JSON.stringify(fields)}`);
    },
  });
  const handler = createJobStepHandler(runtime);

  /** Receives and runs one batch of step messages; false when none came within the wait. */
  async function pollOnce(waitSeconds = 0): Promise<boolean> {
    const out = await options.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: waitSeconds }));
    const messages = out.Messages ?? [];
    if (messages.length === 0) return false;
    const event = { Records: messages.map((m) => ({ messageId: m.MessageId!, receiptHandle: m.ReceiptHandle!, body: m.Body! })) } as SQSEvent;
    const response = await handler(event, { getRemainingTimeInMillis: () => 900_000 });
    const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    for (const m of messages) if (!failed.has(m.MessageId!)) await options.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
    return true;
  }

  /** Submits a job and runs it to its end here. */
  async function run(request: MonitorRequest, key?: string) {
    const { job } = await runtime.submit({ kind: MONITOR_KIND, request, ...(key ? { key } : {}), parent: { model: request.model, version: request.version } });
    for (let round = 0; round < 100; round++) {
      const current = await runtime.get(job.id);
      if (['succeeded', 'failed', 'partial', 'cancelled'].includes(current.state)) return current;
      await pollOnce(1);
    }
    throw new Error(`monitoring job ${job.id} did not end`);
  }

  async function guard(now = Date.now()): Promise<GuardVerdict[]> {
    return runCanaryGuard({ store: options.store, metrics: metricsStore, now: () => now, onRollback: () => metric('CanaryRollbacks', 1, {}) });
  }

  return { queueUrl, metricsStore, runtime, handler, pollOnce, run, guard, emitted };
}

export type LocalMonitor = Awaited<ReturnType<typeof createLocalMonitor>>;
