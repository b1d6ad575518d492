import { ChangeMessageVisibilityCommand, GetQueueUrlCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { StepMessage } from './record.ts';

/** Where a kind's step messages go, and the visibility of one received message. */
export interface StepQueue {
  send(kind: string, messages: readonly StepMessage[]): Promise<void>;
  /** Keeps a received message invisible for `seconds` from now (0: visible again at once). */
  setVisibility(kind: string, receiptHandle: string, seconds: number): Promise<void>;
}

/**
 * Step messages on SQS, one queue per kind (its worker's memory and timeout are the kind's), found
 * by name with GetQueueUrl once, which works the same in AWS and against the local emulator.
 */
export class SqsStepQueue implements StepQueue {
  private readonly sqs: SQSClient;
  private readonly queueNameOf: (kind: string) => string;
  private readonly urls = new Map<string, Promise<string>>();

  constructor(sqs: SQSClient, queueNameOf: (kind: string) => string) {
    this.sqs = sqs;
    this.queueNameOf = queueNameOf;
  }

  private url(kind: string): Promise<string> {
    let url = this.urls.get(kind);
    if (!url) {
      url = this.sqs.send(new GetQueueUrlCommand({ QueueName: this.queueNameOf(kind) })).then((out) => out.QueueUrl!);
      url.catch(() => this.urls.delete(kind));
      this.urls.set(kind, url);
    }
    return url;
  }

  async send(kind: string, messages: readonly StepMessage[]): Promise<void> {
    const queueUrl = await this.url(kind);
    for (let at = 0; at < messages.length; at += 10) {
      const chunk = messages.slice(at, at + 10);
      const out = await this.sqs.send(
        new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: chunk.map((m, i) => ({ Id: String(i), MessageBody: JSON.stringify(m) })) }),
      );
      if (out.Failed?.length) {
        throw new Error(`SQS refused ${out.Failed.length} step message(s): ${out.Failed.map((f) => `${f.Code} ${f.Message ?? ''}`).join('; ')}`);
      }
    }
  }

  async setVisibility(kind: string, receiptHandle: string, seconds: number): Promise<void> {
    await this.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: await this.url(kind), ReceiptHandle: receiptHandle, VisibilityTimeout: seconds }));
  }
}
