import { GetQueueUrlCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DeadlineMessage, DeadlineQueue } from './rounds.ts';

/** Round deadlines as delayed SQS messages (at most 900 s each; a later deadline is re-sent on arrival). */
export class SqsDeadlineQueue implements DeadlineQueue {
  private readonly sqs: SQSClient;
  private readonly queueName: string;
  private url: Promise<string> | undefined;

  constructor(sqs: SQSClient, queueName: string) {
    this.sqs = sqs;
    this.queueName = queueName;
  }

  async schedule(message: DeadlineMessage, delaySeconds: number): Promise<void> {
    this.url ??= this.sqs.send(new GetQueueUrlCommand({ QueueName: this.queueName })).then((out) => out.QueueUrl as string);
    this.url.catch(() => (this.url = undefined));
    await this.sqs.send(new SendMessageCommand({ QueueUrl: await this.url, MessageBody: JSON.stringify(message), DelaySeconds: Math.max(0, Math.min(900, Math.ceil(delaySeconds))) }));
  }
}
