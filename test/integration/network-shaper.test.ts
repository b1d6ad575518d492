import { randomBytes } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { startNetworkShaper, type NetworkShaper, type ShaperClock } from '../helpers/network-shaper.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// The benchmark's S3-like network: it may only change when bytes arrive, never which.
const FIRST_BYTE_MS = 40;
const BYTES_PER_MS = 200_000; // 200 MB/s
/** The most a socket hands over in one read (libuv's read buffer): the shaper paces by whole reads. */
const MAX_READ = 64 * 1024;
let stack: RegistryStack;
let shaper: NetworkShaper;
const object = new Uint8Array(randomBytes(3 * 1024 * 1024 + 11));

/**
 * A clock the test owns: it moves only when the shaper waits, so the waits are counted, not timed.
 * Each wait records what the shaper had passed on when it began and when it ended (a turn of the
 * event loop later, time for a write the shaper did not hold back to be counted).
 */
let now = 0;
let waits: { ms: number; sentAtStart: number; sentAtEnd: number }[] = [];
const clock: ShaperClock = {
  now: () => now,
  sleep: async (ms) => {
    const sentAtStart = shaper.bytesSent();
    await new Promise((resolve) => setImmediate(resolve));
    now += ms;
    waits.push({ ms, sentAtStart, sentAtEnd: shaper.bytesSent() });
  },
};

beforeAll(async () => {
  stack = await startRegistryStack('shaper-test');
  await stack.store.putObjectBytes('models/shaped/1/model.onnx', object);
  shaper = await startNetworkShaper(stack.emulators.awsEndpoint, { firstByteMs: FIRST_BYTE_MS, perConnectionMBps: BYTES_PER_MS / 1000 }, clock);
});
afterAll(async () => {
  await shaper?.close();
  await stack?.stop();
});

describe('the network shaper in front of the emulator', () => {
  it('passes the SDK a ranged object byte for byte, holding its first byte, then pacing it to the profile rate', async () => {
    const s3 = createS3Client({ endpoint: shaper.url });
    [now, waits] = [0, []];
    const out = await s3.send(new GetObjectCommand({ Bucket: stack.store.bucket, Key: 'models/shaped/1/model.onnx', Range: 'bytes=1-2000000' }));
    const bytes = await out.Body!.transformToByteArray();
    expect(out.ContentRange).toBe(`bytes 1-2000000/${object.length}`);
    expect(Buffer.compare(bytes, object.subarray(1, 2000001))).toBe(0);

    // Not a byte before the first-byte wait, and none while any wait lasts.
    const sent = shaper.bytesSent();
    expect(waits[0]).toEqual({ ms: FIRST_BYTE_MS, sentAtStart: 0, sentAtEnd: 0 });
    expect(waits.filter((w) => w.sentAtEnd !== w.sentAtStart)).toEqual([]);
    // Paced: by the last read's turn, the clock had reached the time the bytes before it were due at
    // the profile rate (within a millisecond: shorter waits are skipped), and never went past all of them.
    const paced = now - FIRST_BYTE_MS;
    expect(sent).toBeGreaterThan(2_000_000);
    expect(paced).toBeGreaterThanOrEqual((sent - MAX_READ) / BYTES_PER_MS - 1);
    expect(paced).toBeLessThanOrEqual(sent / BYTES_PER_MS);

    const whole = await s3.send(new GetObjectCommand({ Bucket: stack.store.bucket, Key: 'models/shaped/1/model.onnx' }));
    expect(Buffer.compare(await whole.Body!.transformToByteArray(), object)).toBe(0);
  });
});
