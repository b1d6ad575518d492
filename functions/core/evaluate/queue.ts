import { GetQueueUrlCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import type { EvaluationQueue, StepMessage } from './jobs.ts';

export const stepMessageSchema = z.strictObject({
  model: z.string(),
  version: z.string(),
  id: z.string(),
  step: z.number().int().nonnegative(),
});

/**
 * Continuations travel on a FIFO queue: one message group per evaluation, so its steps never run
 * in two environments at once, and a deduplication id per step, so a resent continuation is dropped.
 * The queue is found by name (GetQueueUrl, once), which needs no CloudFormation reference and so
 * works the same in AWS and against the local emulator.
 */
export class SqsEvaluationQueue implements EvaluationQueue {
  private readonly sqs: SQSClient;
  private readonly queueName: string;
  private url: Promise<string> | undefined;

  constructor(sqs: SQSClient, queueName: string) {
    this.sqs = sqs;
    this.queueName = queueName;
  }

  queueUrl(): Promise<string> {
    this.url ??= this.sqs.send(new GetQueueUrlCommand({ QueueName: this.queueName })).then(
      (out) => out.QueueUrl!,
      (error: unknown) => {
        this.url = undefined;
        throw error;
      },
    );
    return this.url;
  }

  async send(message: StepMessage): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: await this.queueUrl(),
        MessageBody: JSON.stringify(message),
        MessageGroupId: message.id,
        MessageDeduplicationId: `${message.model}.${message.version}.${message.id}.${message.step}`,
      }),
    );
  }
}
