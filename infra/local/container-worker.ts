import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { startWorkerProcess, stopWorkerProcesses, type WorkerProcess } from '../gpu-worker/processes.ts';

/**
 * The container worker on this machine: the container queue and its dead-letter queue
 * (infra/serverless/jobs.yml) on the emulator, under the names the train API sends to, consumed by
 * one worker process with the container's own entry point (infra/gpu-worker/worker.ts) on CPU. It
 * inherits this process's environment (the stack's dummy credentials) and takes `env` over it.
 */
export interface LocalContainerWorker {
  queueUrl: string;
  deadLetterQueueUrl: string;
  worker: WorkerProcess;
  stop(): Promise<void>;
}

export async function startLocalContainerWorker(options: {
  sqs: SQSClient;
  prefix: string;
  env: Record<string, string>;
  log: (line: string) => void;
}): Promise<LocalContainerWorker> {
  const { sqs } = options;
  const name = `${options.prefix}-container-steps`;
  const deadLetterQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq`, Attributes: { VisibilityTimeout: '120' } }))).QueueUrl!;
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: deadLetterQueueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  const queueUrl = (
    await sqs.send(
      new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '120', RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: '5' }) } }),
    )
  ).QueueUrl!;
  const worker = startWorkerProcess(
    { ...options.env, CONTAINER_STEPS_QUEUE_URL: queueUrl, CONTAINER_STEPS_DLQ_URL: deadLetterQueueUrl, EXECUTION_PROVIDER: 'cpu', WAIT_TIME_SECONDS: '1', DRAIN_SECONDS: '5' },
    (line) => {
      if (line.level !== 'info') options.log(`container worker: ${line.message} ${JSON.stringify(line)}`);
    },
  );
  // A configuration error fails the stack's start here, not the first placed job.
  await worker.waitFor((line) => line.message === 'worker ready', 120_000);
  return { queueUrl, deadLetterQueueUrl, worker, stop: () => stopWorkerProcesses([worker]) };
}
