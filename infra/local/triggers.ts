import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { S3Event, S3EventRecord, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';

/**
 * The event sources the local stack needs and the emulator lacks (fauxqs has no bucket
 * notifications and no Lambda): an S3 prefix watcher that delivers ObjectCreated events for new
 * keys, and an SQS poller that invokes a handler with SQS events the way Lambda's event source
 * mapping does, deleting what succeeded and leaving batchItemFailures to be redelivered.
 */
type Log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

const defaultLog: Log = (level, message, fields) => {
  if (level !== 'info') console.error(JSON.stringify({ level, message, ...fields }));
};

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });

export interface Trigger {
  /** Stops polling and waits for the invocation in flight, if any. */
  stop(): Promise<void>;
}

/** S3 event keys are URL-encoded with spaces as '+', as AWS delivers them. */
export function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');
}

export function s3ObjectCreatedEvent(bucket: string, object: { key: string; size: number; eTag: string }, region = 'us-east-1'): S3Event {
  const record: S3EventRecord = {
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: region,
    eventTime: new Date().toISOString(),
    eventName: 'ObjectCreated:Put',
    userIdentity: { principalId: 'local' },
    requestParameters: { sourceIPAddress: '127.0.0.1' },
    responseElements: { 'x-amz-request-id': 'local', 'x-amz-id-2': 'local' },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'local-trigger',
      bucket: { name: bucket, ownerIdentity: { principalId: 'local' }, arn: `arn:aws:s3:::${bucket}` },
      object: { key: encodeS3EventKey(object.key), size: object.size, eTag: object.eTag.replace(/"/g, ''), sequencer: Date.now().toString(16) },
    },
  };
  return { Records: [record] };
}

export interface S3PrefixWatcherOptions {
  s3: S3Client;
  bucket: string;
  prefix: string;
  handler: (event: S3Event) => Promise<unknown>;
  intervalMs?: number;
  /**
   * Objects already there at start: skipped (as S3 notifications would), or delivered: a stack that
   * keeps its state delivers them, so an upload that was in flight when it stopped is handled.
   */
  existing?: 'skip' | 'deliver';
  /** Attempts per event, like S3's asynchronous invocation (1 + 2 retries). */
  attempts?: number;
  log?: Log;
}

/**
 * Lists the prefix every `intervalMs` and delivers one ObjectCreated event per new key or new ETag
 * (an overwrite is a new object to S3 too). A key that leaves the listing (a handler consumed it) is
 * forgotten, so the same bytes uploaded to it again are a new object, as S3 would notify.
 * Events are delivered one at a time, in key order.
 */
export async function watchS3Prefix(options: S3PrefixWatcherOptions): Promise<Trigger> {
  const { s3, bucket, prefix, handler } = options;
  const log = options.log ?? defaultLog;
  const seen = new Map<string, string>();
  const list = async () => {
    const objects: { key: string; size: number; eTag: string }[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) objects.push({ key: o.Key!, size: o.Size ?? 0, eTag: o.ETag ?? '' });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  };
  if ((options.existing ?? 'skip') === 'skip') for (const o of await list()) seen.set(o.key, o.eTag);

  const controller = new AbortController();
  const loop = (async () => {
    while (!controller.signal.aborted) {
      try {
        const objects = await list();
        const listed = new Set(objects.map((o) => o.key));
        for (const key of seen.keys()) if (!listed.has(key)) seen.delete(key);
        for (const object of objects) {
          if (controller.signal.aborted) break;
          if (seen.get(object.key) === object.eTag) continue;
          seen.set(object.key, object.eTag);
          const attempts = options.attempts ?? 3;
          for (let attempt = 1; attempt <= attempts; attempt++) {
            try {
              await handler(s3ObjectCreatedEvent(bucket, object));
              break;
            } catch (error) {
              log(attempt === attempts ? 'error' : 'warn', 'S3 trigger handler failed', { key: object.key, attempt, error: (error as Error).message });
              if (attempt < attempts) await sleep(200 * attempt, controller.signal);
            }
          }
        }
      } catch (error) {
        log('warn', 'S3 prefix watcher could not list', { bucket, prefix, error: (error as Error).message });
      }
      await sleep(options.intervalMs ?? 500, controller.signal);
    }
  })();
  return {
    async stop() {
      controller.abort();
      await loop;
    },
  };
}

export interface SqsPollerOptions {
  sqs: SQSClient;
  queueUrl: string;
  handler: (event: SQSEvent) => Promise<SQSBatchResponse | void | undefined>;
  /** Records per invocation (the event source mapping's batchSize). */
  batchSize?: number;
  /** Concurrent pollers, each invoking the handler in turn (Lambda's concurrency). */
  concurrency?: number;
  waitTimeSeconds?: number;
  /** Per-receive visibility timeout; the queue's own when unset. */
  visibilityTimeout?: number;
  region?: string;
  log?: Log;
}

function sqsRecord(message: Message, queueArn: string, region: string): SQSRecord {
  const attributes = message.Attributes ?? {};
  return {
    messageId: message.MessageId!,
    receiptHandle: message.ReceiptHandle!,
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
      SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
      SenderId: attributes.SenderId ?? 'local',
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: Object.fromEntries(
      Object.entries(message.MessageAttributes ?? {}).map(([k, v]) => [k, { dataType: v.DataType ?? 'String', stringValue: v.StringValue }]),
    ) as SQSRecord['messageAttributes'],
    md5OfBody: message.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

/**
 * Long-polls a queue and invokes `handler` with each batch. Messages the handler reports in
 * batchItemFailures stay on the queue (visible again after the visibility timeout, counting towards
 * maxReceiveCount); a handler that throws fails the whole batch, as with Lambda.
 */
export async function pollSqsQueue(options: SqsPollerOptions): Promise<Trigger> {
  const { sqs, queueUrl, handler } = options;
  const log = options.log ?? defaultLog;
  const region = options.region ?? process.env.AWS_REGION ?? 'us-east-1';
  const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }));
  const queueArn = attrs.Attributes?.QueueArn ?? queueUrl;
  const controller = new AbortController();

  const lane = async () => {
    while (!controller.signal.aborted) {
      let messages: Message[];
      try {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: Math.min(10, options.batchSize ?? 1),
            WaitTimeSeconds: options.waitTimeSeconds ?? 1,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
            ...(options.visibilityTimeout !== undefined ? { VisibilityTimeout: options.visibilityTimeout } : {}),
          }),
          { abortSignal: controller.signal },
        );
        messages = out.Messages ?? [];
      } catch (error) {
        if (controller.signal.aborted) break;
        log('warn', 'SQS poller could not receive', { queueUrl, error: (error as Error).message });
        await sleep(500, controller.signal);
        continue;
      }
      if (messages.length === 0) continue;
      let failed: Set<string>;
      try {
        const response = await handler({ Records: messages.map((m) => sqsRecord(m, queueArn, region)) });
        failed = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
      } catch (error) {
        log('warn', 'SQS trigger handler threw; the whole batch will be redelivered', { queueUrl, error: (error as Error).message });
        continue;
      }
      const done = messages.filter((m) => !failed.has(m.MessageId!));
      if (done.length === 0) continue;
      try {
        await sqs.send(
          new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: done.map((m, i) => ({ Id: `m${i}`, ReceiptHandle: m.ReceiptHandle! })) }),
        );
      } catch (error) {
        log('warn', 'SQS poller could not delete handled messages; they will be redelivered', { queueUrl, error: (error as Error).message });
      }
    }
  };
  const lanes = Array.from({ length: options.concurrency ?? 1 }, lane);
  return {
    async stop() {
      controller.abort();
      await Promise.all(lanes);
    },
  };
}
