import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { VisibilityExtender } from '../../functions/core/batch/queue.ts';
import { ShardAbortedError } from '../../functions/core/batch/scoring.ts';
import { parseShardMessage, type ShardOutcome, type ShardScorer } from '../../functions/core/batch/shard-scorer.ts';

/**
 * The long-running batch worker of the GPU containers (and of `mass worker` locally): long-polls the
 * shard queue one message at a time, scores it with the same ShardScorer as the Lambda, keeps the
 * message invisible while it works, and deletes it only after the shard's output is written and
 * counted. `concurrency` shards run at once in one process: onnxruntime computes on the JS thread
 * (one intra-op thread), so a second shard adds no compute but fills the first one's waits on S3,
 * DynamoDB and SQS. On stop (SIGTERM) it takes no new shard, lets the current one finish within the drain
 * time, and otherwise aborts it and makes its message visible again for another worker.
 */
export type WorkerLog = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface ContainerWorkerOptions {
  sqs: SQSClient;
  queueUrl: string;
  scorer: ShardScorer;
  /** Seconds a received shard stays invisible, renewed every third of it while the shard runs. */
  visibilityTimeout?: number;
  waitTimeSeconds?: number;
  /** After a failure, the shard becomes visible again this much later (not a full visibility timeout). */
  retryDelaySeconds?: number;
  /** Shards in progress at once in this process (default 2). */
  concurrency?: number;
  log?: WorkerLog;
}

export class ContainerWorker {
  private readonly options: ContainerWorkerOptions;
  private readonly polling = new AbortController();
  private readonly scoring = new Set<AbortController>();
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
        await sqs
          .send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle!, VisibilityTimeout: 0 }))
          .catch(() => undefined);
        break;
      }
      if (message) await this.handle(message);
    }
  }

  private async handle(message: Message): Promise<ShardOutcome | undefined> {
    const { sqs, queueUrl, scorer } = this.options;
    const receiveCount = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    const extender = new VisibilityExtender(sqs, queueUrl, message.ReceiptHandle!, this.options.visibilityTimeout ?? 60);
    const scoring = new AbortController();
    this.scoring.add(scoring);
    try {
      const shard = parseShardMessage(message.Body ?? '');
      const outcome = await scorer.score(shard, { signal: scoring.signal });
      extender.stop();
      await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }));
      this.shardsScored++;
      this.log('info', 'shard done', { ...outcome, receiveCount, visibilityExtensions: extender.extensions });
      return outcome;
    } catch (error) {
      if (error instanceof ShardAbortedError) {
        await extender.release().catch((e: unknown) => this.log('warn', 'could not release the shard', { error: (e as Error).message }));
        this.shardsReleased++;
        this.log('warn', 'shard released for another worker', { messageId: message.MessageId });
        return undefined;
      }
      extender.stop();
      this.shardsFailed++;
      this.log('error', 'shard failed; it will be redelivered', { messageId: message.MessageId, receiveCount, error: (error as Error).message });
      await sqs
        .send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle!, VisibilityTimeout: this.options.retryDelaySeconds ?? 5 }))
        .catch(() => undefined);
      return undefined;
    } finally {
      this.scoring.delete(scoring);
    }
  }

  /**
   * Takes no new shard (a long poll in flight is let finish, at most WaitTimeSeconds); the ones in
   * progress may finish within `drainMs`, after which they are aborted (between two batches) and
   * handed back to the queue.
   */
  async stop(drainMs: number): Promise<void> {
    this.polling.abort();
    const loop = this.loop ?? Promise.resolve();
    const timer = setTimeout(() => {
      for (const scoring of this.scoring) scoring.abort();
    }, drainMs);
    try {
      await loop;
    } finally {
      clearTimeout(timer);
    }
  }
}
