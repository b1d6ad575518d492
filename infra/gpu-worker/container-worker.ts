import { ChangeMessageVisibilityCommand, DeleteMessageCommand, ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { parseStepMessage, runDeadLetterMessage, runStepMessage } from '../../functions/adapters/job-steps.ts';
import { StepReleasedError, StepRetryError, type JobRuntime, type StepRunOutcome } from '../../functions/core/jobs/runtime.ts';

/**
 * The long-running worker of the containers (and of `mass worker` locally): long-polls one step
 * queue (the GPU shard queue, or the container queue where jobs of every kind are placed) one
 * message at a time and runs each step through the same step handler as the Lambda adapter
 * (`runStepMessage`: the step lease, the lease and visibility renewals, the bookkeeping), with no
 * invocation limit, and deletes the message only once the runtime is done with it. With
 * `deadLetters` it consumes a dead-letter queue instead, ending each step there as the Lambda
 * dead-letter consumers do. `concurrency` steps run at once in one process: onnxruntime computes on the JS thread
 * (one intra-op thread), so a second shard adds no compute but fills the first one's waits on S3,
 * DynamoDB and SQS. On stop (SIGTERM) it takes no new step, lets the current ones finish within the
 * drain time, and otherwise aborts them: the runtime hands them back to the queue for another worker.
 */
export type WorkerLog = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface ContainerWorkerOptions {
  sqs: SQSClient;
  queueUrl: string;
  /** The job runtime with the kinds whose steps arrive on `queueUrl`. */
  runtime: JobRuntime;
  /** `queueUrl` is a dead-letter queue: each message there ends its step `failed` (runtime.deadLetter). */
  deadLetters?: boolean;
  /** Seconds a received message stays invisible before the runtime takes over renewing it with the step lease. */
  visibilityTimeout?: number;
  waitTimeSeconds?: number;
  /** A message that is not a step the runtime could try is visible again this much later. */
  retryDelaySeconds?: number;
  /** Steps in progress at once in this process (default 2). */
  concurrency?: number;
  log?: WorkerLog;
}

export class ContainerWorker {
  private readonly options: ContainerWorkerOptions;
  private readonly polling = new AbortController();
  private readonly running = new Set<AbortController>();
  private loop: Promise<void> | undefined;
  shardsScored = 0;
  shardsReleased = 0;
  shardsFailed = 0;

  constructor(options: ContainerWorkerOptions) {
    this.options = options;
  }

  private log(level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}): void {
    this.options.log?.(level, message, fields);
  }

  start(): Promise<void> {
    this.loop ??= Promise.all(Array.from({ length: Math.max(1, this.options.concurrency ?? 2) }, () => this.run())).then(() => undefined);
    return this.loop;
  }

  private async run(): Promise<void> {
    const { sqs, queueUrl } = this.options;
    while (!this.polling.signal.aborted) {
      let message: Message | undefined;
      try {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: 1,
            WaitTimeSeconds: this.options.waitTimeSeconds ?? 20,
            VisibilityTimeout: this.options.visibilityTimeout ?? 60,
            MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          }),
        );
        message = out.Messages?.[0];
      } catch (error) {
        if (this.polling.signal.aborted) break;
        this.log('warn', 'receive failed', { error: (error as Error).message });
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      if (message && this.polling.signal.aborted) {
        // Received while stopping. The receive is not aborted on stop, because an abandoned long
        // poll can still be handed a message (one another lane just released, say) that then stays
        // invisible for a whole timeout; instead whatever arrives now goes straight back.
        await this.setVisibility(message, 0);
        break;
      }
      if (message) await this.handle(message);
    }
  }

  private async setVisibility(message: Message, seconds: number): Promise<void> {
    await this.options.sqs
      .send(new ChangeMessageVisibilityCommand({ QueueUrl: this.options.queueUrl, ReceiptHandle: message.ReceiptHandle!, VisibilityTimeout: seconds }))
      .catch((error: unknown) => this.log('warn', 'could not hand the message back', { messageId: message.MessageId, error: (error as Error).message }));
  }

  private async handle(message: Message): Promise<StepRunOutcome | 'dropped' | undefined> {
    const { sqs, queueUrl, runtime } = this.options;
    const receiveCount = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    if (this.options.deadLetters) return this.handleDeadLetter(message);
    const stopping = new AbortController();
    this.running.add(stopping);
    let step: { job: string; step: string } | undefined;
    try {
      step = parseStepMessage(message.Body ?? '', message.MessageId ?? '');
      // No invocation limit here: a step never needs to checkpoint for time.
      const outcome = await runStepMessage(runtime, message.Body ?? '', message.MessageId ?? '', { receiptHandle: message.ReceiptHandle!, remainingMs: () => Number.POSITIVE_INFINITY, signal: stopping.signal });
      await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }));
      if (outcome === 'succeeded') this.shardsScored++;
      this.log('info', step.step.startsWith('shard-') ? 'shard done' : 'step done', { ...step, outcome, receiveCount });
      return outcome;
    } catch (error) {
      if (error instanceof StepReleasedError) {
        this.shardsReleased++;
        this.log('warn', 'shard released for another worker', { ...step, messageId: message.MessageId });
        return undefined;
      }
      this.shardsFailed++;
      this.log('error', 'shard failed; it will be redelivered', { ...step, messageId: message.MessageId, receiveCount, error: (error as Error).message });
      // The runtime has set when a step it tried comes back; anything else (not a step message, the
      // table unreachable) comes back after the retry delay, and ends in the dead-letter queue.
      if (!(error instanceof StepRetryError)) await this.setVisibility(message, this.options.retryDelaySeconds ?? 5);
      return undefined;
    } finally {
      this.running.delete(stopping);
    }
  }

  private async handleDeadLetter(message: Message): Promise<StepRunOutcome | 'dropped' | undefined> {
    try {
      const outcome = await runDeadLetterMessage(this.options.runtime, message.Body ?? '', message.MessageId ?? '', (level, text, fields) => this.log(level, text, fields));
      await this.options.sqs.send(new DeleteMessageCommand({ QueueUrl: this.options.queueUrl, ReceiptHandle: message.ReceiptHandle! }));
      return outcome;
    } catch (error) {
      this.log('error', 'dead-lettered step could not be ended; it will be redelivered', { messageId: message.MessageId, error: (error as Error).message });
      await this.setVisibility(message, this.options.retryDelaySeconds ?? 5);
      return undefined;
    }
  }

  /**
   * Takes no new step (a long poll in flight is let finish, at most WaitTimeSeconds); the ones in
   * progress may finish within `drainMs`, after which they are aborted (a shard between two
   * batches) and handed back to the queue.
   */
  async stop(drainMs: number): Promise<void> {
    this.polling.abort();
    const loop = this.loop ?? Promise.resolve();
    const timer = setTimeout(() => {
      for (const stopping of this.running) stopping.abort();
    }, drainMs);
    try {
      await loop;
    } finally {
      clearTimeout(timer);
    }
  }
}
