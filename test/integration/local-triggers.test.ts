import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { S3Event } from 'aws-lambda';
import { createS3Client } from '../../functions/core/clients.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { watchS3Prefix, type Trigger } from '../../infra/local/triggers.ts';
import { waitFor } from '../helpers/batch-stack.ts';

// The local S3 trigger as the register function sees it: a handler that consumes (deletes) each
// upload, as registration does, and records the events it was given.
let emulators: Emulators;
let s3: S3Client;
const BUCKET = 'trigger-test';

beforeAll(async () => {
  emulators = await startEmulators();
  s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  s3?.destroy();
  await emulators?.stop();
});

async function consumingWatcher(existing: 'skip' | 'deliver'): Promise<{ trigger: Trigger; delivered: { key: string; eTag: string }[] }> {
  const delivered: { key: string; eTag: string }[] = [];
  const trigger = await watchS3Prefix({
    s3,
    bucket: BUCKET,
    prefix: 'incoming/',
    intervalMs: 50,
    existing,
    handler: async (event: S3Event) => {
      const { key, eTag } = event.Records[0]!.s3.object;
      delivered.push({ key, eTag: eTag! });
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    },
  });
  return { trigger, delivered };
}

describe('the local S3 trigger', () => {
  it('delivers the same bytes uploaded again to a key whose first upload was consumed', async () => {
    const { trigger, delivered } = await consumingWatcher('skip');
    try {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/m/model.onnx', Body: 'same bytes' }));
      await waitFor('the first delivery', async () => (delivered.length === 1 ? true : undefined), 10_000);
      // Wait for a listing without the consumed key, then upload the identical object again.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/m/model.onnx', Body: 'same bytes' }));
      await waitFor('the second delivery', async () => (delivered.length === 2 ? true : undefined), 10_000);
    } finally {
      await trigger.stop();
    }
    expect(delivered).toEqual([
      { key: 'incoming/m/model.onnx', eTag: delivered[0]!.eTag },
      { key: 'incoming/m/model.onnx', eTag: delivered[0]!.eTag },
    ]);
  });

  it('delivers the uploads already there when asked to (a restarted stack), and skips them otherwise', async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/m/left-over.onnx', Body: 'in flight' }));
    const skipping = await consumingWatcher('skip');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await skipping.trigger.stop();
    const delivering = await consumingWatcher('deliver');
    try {
      await waitFor('the left-over upload', async () => (delivering.delivered.length === 1 ? true : undefined), 10_000);
    } finally {
      await delivering.trigger.stop();
    }
    expect([skipping.delivered, delivering.delivered.map((d) => d.key)]).toEqual([[], ['incoming/m/left-over.onnx']]);
  });
});
