import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { S3Event } from 'aws-lambda';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { createRegisterHandler } from '../../functions/register/app.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { registerUpload } from '../../functions/core/registry/register-upload.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { watchS3Prefix, type Trigger } from '../../infra/local/triggers.ts';
import { waitFor } from '../helpers/batch-stack.ts';
import { scaleModel, startRegistryStack } from '../helpers/registry-stack.ts';

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

describe('the local stack registering an identical re-upload', () => {
  it('registers the same bytes uploaded again to a consumed key as a new version, and a redelivered event as nothing new', async () => {
    // Prepare: the register function behind the local trigger, as `npm start` wires them.
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const stack = await startRegistryStack('reupload');
    const { logger, metrics } = createObservability('reupload-test');
    const register = createRegisterHandler({ store: stack.store, logger, metrics, maxModelBytes: 1024 * 1024 });
    const outcomes: string[] = [];
    const trigger = await watchS3Prefix({
      s3: stack.s3,
      bucket: stack.store.bucket,
      prefix: 'incoming/',
      intervalMs: 50,
      handler: async (event: S3Event) => {
        const results = await register(event);
        outcomes.push(...results.map((r) => (r.status === 'registered' ? `registered ${r.manifest.version}` : r.status)));
        // A redelivery of the same event, as S3 may send: nothing new.
        const again = await register(event);
        outcomes.push(...again.map((r) => r.status));
      },
    });
    const upload = () => stack.store.putObjectBytes('incoming/same/model.onnx', scaleModel(2));
    try {
      // Act: upload, wait for its registration, then the same bytes to the same key a second later
      // (S3's Last-Modified has one-second resolution).
      await upload();
      await waitFor('version 1', async () => (outcomes.length === 2 ? true : undefined), 30_000);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await upload();
      await waitFor('version 2', async () => (outcomes.length === 4 ? true : undefined), 30_000);
    } finally {
      await trigger.stop();
    }
    // Assert
    expect(outcomes).toEqual(['registered 1', 'ignored', 'registered 2', 'ignored']);
    const [first, second] = await Promise.all([stack.store.getManifest('same', '1'), stack.store.getManifest('same', '2')]);
    expect(second.sha256).toBe(first.sha256);
    expect(await stack.store.listVersions('same')).toEqual(['1', '2']);
    await stack.stop();
  });
});

describe('a redelivered upload event after a crash between registration and removing the upload', () => {
  it('registers nothing new: the upload was written before its version was made', async () => {
    // Prepare: the state a register function leaves when it dies after recording the upload as
    // registered and before deleting it (the same calls registerUpload makes, in its order).
    const stack = await startRegistryStack('redelivery');
    const key = 'incoming/crashed/model.onnx';
    const eTag = await stack.store.putObjectBytes(key, scaleModel(2));
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const uploadId = `${stack.store.bucket}/${key}@${eTag}`;
    await stack.store.registry!.claimUpload({ uploadId, model: 'crashed', version: '1', state: 'pending' });
    await pushModel(stack.store, { name: 'crashed', version: '1', bytes: scaleModel(2), source: uploadId });
    await stack.store.registry!.markUploadRegistered(uploadId);

    // Act
    const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key, eTag });

    // Assert
    expect(outcome).toEqual({ status: 'already-registered', model: 'crashed', version: '1' });
    expect([await stack.store.getObjectBytes(key), await stack.store.listVersions('crashed')]).toEqual([undefined, ['1']]);
    await stack.stop();
  });
});
