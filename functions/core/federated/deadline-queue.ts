import { GetQueueUrlCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DeadlineQueue } from './rounds.ts';

/** Round deadlines as delayed SQS messages (at most 900 s each; a later deadline is re-sent on arrival). */
export function sqsDeadlineQueue(sqs: SQSClient, queueName: string): DeadlineQueue {
  let url: Promise<string> | undefined;
  const resolve = () => {
    url ??= sqs.send(new GetQueueUrlCommand({ QueueName: queueName })).then((out) => out.QueueUrl as string);
    url.catch(() => (url = undefined));
    return url;
  };
  return {
    async schedule(message, delaySeconds) {
      const body = JSON.stringify(message);
      await sqs.send(new SendMessageCommand({ QueueUrl: await resolve(), MessageBody: body, DelaySeconds: Math.max(0, Math.min(900, Math.ceil(delaySeconds))) }));
    },
  };
}
