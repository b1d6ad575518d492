/**
 * The job runtime of the container queue: every job a kind placed on the container worker
 * (`placement: container`, docs/jobs.md), whatever its kind, comes to this one queue, and the
 * container runs its steps with no 15-minute limit. A kind joins by adding its factory below; its
 * steps then run here exactly as on its Lambda worker.
 *
 *   CONTAINER_STEPS_QUEUE_URL (or _NAME)        the container queue
 *   CONTAINER_STEPS_DLQ_URL (or _NAME)          its dead-letter queue, consumed here too (optional)
 *   CONTAINER_VISIBILITY_SECONDS=120            the step lease, renewed with the message's visibility
 *   TUNE_TRIAL_LEASE_SECONDS=960                a tune trial's lease, renewed while it runs (docs/tuning.md)
 *   MODEL_BUCKET, REGISTRY_TABLE, MODEL_EVENTS_TOPIC_ARN, MODEL_CACHE_DIR, INTRA_OP_THREADS
 */
import { GetQueueUrlCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds, type JobKind } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue, withContainerQueue } from '../../functions/core/jobs/step-queue.ts';
import { ConfigError } from '../../functions/core/platform/errors.ts';
import { readEnv } from '../../functions/core/platform/env.ts';
import { createQuantizeKind } from '../../functions/core/quantize/jobs.ts';
import { modelEventsFromEnv } from '../../functions/core/registry/events.ts';
import { modelStoreFromEnv } from '../../functions/core/registry/model-store-env.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { trainJobKind } from '../../functions/core/train/jobs.ts';
import { readTrialLeaseSeconds } from '../../functions/core/tune/config.ts';
import { createTuneKind } from '../../functions/core/tune/jobs.ts';
import { StudyTable } from '../../functions/core/tune/study-table.ts';

type Log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

/** The kinds whose jobs may be placed on the container worker. */
export function containerJobKinds(deps: { store: ModelRepository; studies: StudyTable; intraOpThreads?: number | undefined; log: Log }): JobKind[] {
  return [
    trainJobKind({
      store: deps.store,
      sessionOptions: { intraOpNumThreads: deps.intraOpThreads ?? 0, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' },
      log: (message, fields) => deps.log('info', message, fields),
    }),
    createQuantizeKind({ store: deps.store, log: (message, fields) => deps.log('info', message, fields) }),
    // A study's lanes, each running trials one after another (serving and training objectives alike).
    createTuneKind({ studies: deps.studies, store: deps.store, log: (level, message, fields) => deps.log(level, message, fields) }),
  ];
}

const queueUrlOf = async (sqs: SQSClient, queue: string) => (/^https?:\/\//.test(queue) ? queue : (await sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl!);

/** The container queue's runtime and queues, or undefined when this worker is not given one. */
export async function createContainerJobRuntime(options: { env: NodeJS.ProcessEnv; sqs: SQSClient; dynamo: DynamoDBClient; log: Log }) {
  const { env, sqs } = options;
  const queue = env.CONTAINER_STEPS_QUEUE_URL || env.CONTAINER_STEPS_QUEUE_NAME;
  if (!queue) return undefined;
  const vars = readEnv(['MODEL_BUCKET', 'REGISTRY_TABLE'], env);
  if (!vars.REGISTRY_TABLE) throw new ConfigError('REGISTRY_TABLE environment variable is not set');
  const visibilitySeconds = Number(env.CONTAINER_VISIBILITY_SECONDS ?? 120);
  if (!Number.isInteger(visibilitySeconds) || visibilitySeconds < 30) throw new ConfigError(`CONTAINER_VISIBILITY_SECONDS must be a whole number of seconds, at least 30; got ${env.CONTAINER_VISIBILITY_SECONDS}`);
  const threads = env.INTRA_OP_THREADS ? Number(env.INTRA_OP_THREADS) : undefined;
  const studies = new StudyTable(options.dynamo, vars.REGISTRY_TABLE, { leaseMs: readTrialLeaseSeconds(env) * 1000 });
  const store = modelStoreFromEnv('/tmp/ai-mass/models', { events: modelEventsFromEnv(env) }, env);
  const queueUrl = await queueUrlOf(sqs, queue);
  const deadLetters = env.CONTAINER_STEPS_DLQ_URL || env.CONTAINER_STEPS_DLQ_NAME;
  const runtime = new JobRuntime({
    table: new JobTable(options.dynamo, vars.REGISTRY_TABLE),
    kinds: new JobKinds(containerJobKinds({ store, studies, intraOpThreads: threads, log: options.log })),
    // Every message of a job placed here (a continuation, a next step, a visibility change) stays on this queue.
    queue: new SqsStepQueue(
      sqs,
      withContainerQueue(queueUrl, (other) => {
        throw new ConfigError(`the container worker sends steps only to the container queue, not '${other}'`);
      }),
    ),
    placements: ['lambda', 'container'],
    visibilitySeconds,
    log: (level, message, fields) => options.log(level, message, fields),
  });
  return { runtime, queueUrl, visibilitySeconds, deadLetterQueueUrl: deadLetters ? await queueUrlOf(sqs, deadLetters) : undefined };
}
