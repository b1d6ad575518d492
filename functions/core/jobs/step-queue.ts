import { ChangeMessageVisibilityCommand, GetQueueUrlCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { ConfigError } from '../platform/errors.ts';
import { CONTAINER_QUEUE, type StepMessage } from './record.ts';

/** Where a kind's step messages go, and the visibility of one received message. */
export interface StepQueue {
  /** `queue` is the job's queue: its kind's name, or the one its kind chose for it. */
  send(queue: string, messages: readonly StepMessage[]): Promise<void>;
  /** Keeps a received message invisible for `seconds` from now (0: visible again at once). */
  setVisibility(queue: string, receiptHandle: string, seconds: number): Promise<void>;
}

/**
 * Step messages on SQS, one queue per kind (its worker's memory and timeout are the kind's), or per
 * job queue for a kind with several. `queueOf` gives a queue's name, found with GetQueueUrl once
 * (which works the same in AWS and against the local emulator), or its URL.
 */
export class SqsStepQueue implements StepQueue {
  private readonly sqs: SQSClient;
  private readonly queueOf: (queue: string) => string;
  private readonly urls = new Map<string, Promise<string>>();
  private readonly sendOptions: SendOptions;

  constructor(sqs: SQSClient, queueOf: (queue: string) => string, sendOptions: SendOptions = {}) {
    this.sqs = sqs;
    this.queueOf = queueOf;
    this.sendOptions = sendOptions;
  }

  private url(queue: string): Promise<string> {
    let url = this.urls.get(queue);
    if (!url) {
      const named = this.queueOf(queue);
      url = /^https?:\/\//.test(named) ? Promise.resolve(named) : this.sqs.send(new GetQueueUrlCommand({ QueueName: named })).then((out) => out.QueueUrl!);
      url.catch(() => this.urls.delete(queue));
      this.urls.set(queue, url);
    }
    return url;
  }

  async send(queue: string, messages: readonly StepMessage[]): Promise<void> {
    if (messages.length === 0) return;
    await sendAllMessages(this.sqs, await this.url(queue), messages.map((m, i) => ({ id: String(i), body: JSON.stringify(m) })), this.sendOptions);
  }

  async setVisibility(queue: string, receiptHandle: string, seconds: number): Promise<void> {
    await this.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: await this.url(queue), ReceiptHandle: receiptHandle, VisibilityTimeout: seconds }));
  }
}

/**
 * A step queue's names with the container queue added: the jobs placed on the container worker
 * (whatever their kind) go to `containerQueue`, every other queue as `others` names it.
 */
export function withContainerQueue(containerQueue: string | undefined, others: (queue: string) => string): (queue: string) => string {
  return (queue) => {
    if (queue !== CONTAINER_QUEUE) return others(queue);
    if (!containerQueue) throw new ConfigError('a job is placed on the container worker, but CONTAINER_STEPS_QUEUE_NAME (or _URL) is not set');
    return containerQueue;
  };
}

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

/**
 * SendMessageBatch in chunks of ten, several in flight, retrying exactly the entries that failed
 * (with backoff) and never a sender fault, which would fail the same way again.
 */
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
