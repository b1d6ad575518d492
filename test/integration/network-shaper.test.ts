import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '../../functions/core/clients.ts';
import { startNetworkShaper, type NetworkShaper } from '../helpers/network-shaper.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// The benchmark's S3-like network: it may only change when bytes arrive, never which.
let stack: RegistryStack;
let shaper: NetworkShaper;
const object = new Uint8Array(randomBytes(3 * 1024 * 1024 + 11));

beforeAll(async () => {
  stack = await startRegistryStack('shaper-test');
  await stack.store.putObjectBytes('models/shaped/1/model.onnx', object);
  shaper = await startNetworkShaper(stack.emulators.awsEndpoint, { firstByteMs: 40, perConnectionMBps: 200 });
});
afterAll(async () => {
  await shaper?.close();
  await stack?.stop();
});

describe('the network shaper in front of the emulator', () => {
  it('passes the SDK a ranged object byte for byte, its first byte held at least the profile wait', async () => {
    const s3 = createS3Client({ endpoint: shaper.url });
    const started = performance.now();
    const out = await s3.send(new GetObjectCommand({ Bucket: stack.store.bucket, Key: 'models/shaped/1/model.onnx', Range: 'bytes=1-2000000' }));
    const firstByte = performance.now() - started;
    const bytes = await out.Body!.transformToByteArray();
    expect(out.ContentRange).toBe(`bytes 1-2000000/${object.length}`);
    expect(Buffer.compare(bytes, object.subarray(1, 2000001))).toBe(0);
    expect(firstByte).toBeGreaterThanOrEqual(39); // timers count whole milliseconds
    const whole = await s3.send(new GetObjectCommand({ Bucket: stack.store.bucket, Key: 'models/shaped/1/model.onnx' }));
    expect(Buffer.compare(await whole.Body!.transformToByteArray(), object)).toBe(0);
  });
});
