import { ChangeMessageVisibilityCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';

/**
 * SQS helpers for the batch path: SendMessageBatch with retries of exactly the entries that failed,
 * and a visibility timeout that keeps being extended while a long shard runs.
 */
export interface OutgoingMessage {
  /** Unique within one call; SendMessageBatch entry ids allow [A-Za-z0-9_-]{1,80}. */
  id: string;
  body: string;
}

export class EnqueueError extends Error {
  readonly failed: { id: string; code?: string | undefined; message?: string | undefined }[];
  constructor(message: string, failed: EnqueueError['failed'], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EnqueueError';
    this.failed = failed;
  }
}

export interface SendOptions {
  /** Attempts per entry, the first included. */
  attempts?: number;
  baseDelayMs?: number;
  /** SendMessageBatch calls in flight at once. */
  concurrency?: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function sendChunk(sqs: SQSClient, queueUrl: string, chunk: OutgoingMessage[], options: Required<SendOptions>): Promise<void> {
  let remaining = chunk;
  let lastFailures: EnqueueError['failed'] = [];
  let lastError: unknown;
  for (let attempt = 1; attempt <= options.attempts; attempt++) {
    if (attempt > 1) {
      const backoff = options.baseDelayMs * 2 ** (attempt - 2);
      await options.sleep(backoff / 2 + Math.random() * (backoff / 2));
    }
    try {
      const out = await sqs.send(
        new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: remaining.map((m) => ({ Id: m.id, MessageBody: m.body })) }),
      );
      const failed = out.Failed ?? [];
      if (failed.length === 0) return;
      // A sender fault (message too large, invalid characters) fails the same way every time.
      const fatal = failed.filter((f) => f.SenderFault);
      if (fatal.length > 0) {
        throw new EnqueueError(
          `SQS refused ${fatal.length} message(s): ${fatal.map((f) => `${f.Id}: ${f.Code} ${f.Message ?? ''}`).join('; ')}`,
          fatal.map((f) => ({ id: f.Id ?? '', code: f.Code, message: f.Message })),
        );
      }
      const failedIds = new Set(failed.map((f) => f.Id));
      lastFailures = failed.map((f) => ({ id: f.Id ?? '', code: f.Code, message: f.Message }));
      remaining = remaining.filter((m) => failedIds.has(m.id));
    } catch (error) {
      if (error instanceof EnqueueError) throw error;
      lastError = error;
      lastFailures = remaining.map((m) => ({ id: m.id, message: (error as Error).message }));
    }
  }
  throw new EnqueueError(
    `${remaining.length} message(s) could not be sent after ${options.attempts} attempts`,
    lastFailures,
    lastError ? { cause: lastError } : undefined,
  );
}

export async function sendAllMessages(sqs: SQSClient, queueUrl: string, messages: readonly OutgoingMessage[], options: SendOptions = {}): Promise<void> {
  const resolved: Required<SendOptions> = {
    attempts: options.attempts ?? 6,
    baseDelayMs: options.baseDelayMs ?? 100,
    concurrency: options.concurrency ?? 8,
    sleep: options.sleep ?? defaultSleep,
  };
  const chunks: OutgoingMessage[][] = [];
  for (let i = 0; i < messages.length; i += 10) chunks.push(messages.slice(i, i + 10));
  let next = 0;
  const lanes = Array.from({ length: Math.min(resolved.concurrency, chunks.length) }, async () => {
    while (next < chunks.length) {
      const chunk = chunks[next++]!;
      await sendChunk(sqs, queueUrl, chunk, resolved);
    }
  });
  await Promise.all(lanes);
}

/**
 * Keeps one received message invisible while `run` works on it: every third of the timeout, the
 * timeout is set again from now. Without it a shard longer than the queue's visibility timeout would
 * be handed to a second worker while the first still scores it.
 */
export class VisibilityExtender {
  private readonly sqs: SQSClient;
  private readonly queueUrl: string;
  private readonly receiptHandle: string;
  private readonly timeoutSeconds: number;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  extensions = 0;
  lastError: Error | undefined;

  constructor(sqs: SQSClient, queueUrl: string, receiptHandle: string, timeoutSeconds: number) {
    this.sqs = sqs;
    this.queueUrl = queueUrl;
    this.receiptHandle = receiptHandle;
    this.timeoutSeconds = timeoutSeconds;
    this.timer = setInterval(() => void this.extend(), Math.max(1, Math.floor(timeoutSeconds / 3)) * 1000);
  }

  private async extend(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.sqs.send(
        new ChangeMessageVisibilityCommand({ QueueUrl: this.queueUrl, ReceiptHandle: this.receiptHandle, VisibilityTimeout: this.timeoutSeconds }),
      );
      this.extensions++;
    } catch (error) {
      this.lastError = error as Error;
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Stops extending and makes the message visible again now, for another worker to take. */
  async release(): Promise<void> {
    this.stop();
    await this.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: this.queueUrl, ReceiptHandle: this.receiptHandle, VisibilityTimeout: 0 }));
  }
}
