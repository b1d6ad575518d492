/**
 * One Lambda invocation of a job step handler as the SQS event source makes it, against a real
 * queue on the emulator: receive, build the SQS event, invoke, delete what did not fail.
 */
import { DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import type { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { isTerminal, type JobRecord } from '../../functions/core/jobs/record.ts';

export function sqsEvent(messages: { MessageId?: string; ReceiptHandle?: string; Body?: string; Attributes?: Record<string, string> }[]): SQSEvent {
  return {
    Records: messages.map((m) => ({
      messageId: m.MessageId!,
      receiptHandle: m.ReceiptHandle!,
      body: m.Body!,
      attributes: { ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? '1', SentTimestamp: '0', SenderId: 'test', ApproximateFirstReceiveTimestamp: '0' },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:jobs-steps',
      awsRegion: 'us-east-1',
    })),
  };
}

export async function deliverStep(
  sqs: SQSClient,
  queueUrl: string,
  handler: ReturnType<typeof createJobStepHandler>,
  context: { getRemainingTimeInMillis(): number },
  wait = 0,
): Promise<{ received: number; failures: string[] }> {
  const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: wait, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }));
  const messages = out.Messages ?? [];
  if (messages.length === 0) return { received: 0, failures: [] };
  const response = await handler(sqsEvent(messages), context);
  const failures = response.batchItemFailures.map((f) => f.itemIdentifier);
  for (const m of messages) if (!failures.includes(m.MessageId!)) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
  return { received: messages.length, failures };
}

/** Messages on a queue, visible or in flight. */
export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible);
}

/** The job once it has ended, read every 200 ms (a worker elsewhere runs it); an error after `timeoutMs`. */
export async function jobEnded(read: (id: string) => Promise<JobRecord | undefined>, id: string, timeoutMs = 120_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await read(id);
    if (job && isTerminal(job.state)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} is still ${job?.state ?? 'missing'}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
