import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { IntegrityError } from '../../functions/core/platform/errors.ts';
import { sha256Hex } from '../../functions/core/platform/hash.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import type { ModelManifest } from '../../functions/core/artifacts/manifest.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { registerUpload } from '../../functions/core/registry/register-upload.ts';
import { ARTIFACT_FIRST_PARTS } from '../../functions/core/artifacts/ranged-download.ts';
import { stagingKey } from '../../functions/core/artifacts/staging.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { onCommand } from '../helpers/sdk-commands.ts';

const MiB = 1024 * 1024;
let stack: RegistryStack;
let store: ModelRepository;
/** The client whose ranged GETs are recorded. */
let recorded: S3Client;
/** The Range of every GetObject this store's client sends, in order. */
let ranges: (string | undefined)[];

function recordRanges(s3: S3Client) {
  onCommand(s3, (name, input) => {
    if (name === 'GetObjectCommand') ranges.push(input.Range as string | undefined);
  });
}

beforeAll(async () => {
  stack = await startRegistryStack('download-test');
  recorded = createS3Client({ endpoint: stack.emulators.awsEndpoint });
  recordRanges(recorded);
  store = new ModelRepository({ s3: recorded, bucket: stack.store.bucket, cacheDir: await mkdtemp(join(tmpdir(), 'download-test-')), registry: stack.store.registry });
});
afterAll(async () => {
  await stack?.stop();
});
beforeEach(() => {
  ranges = [];
});

describe('model downloads in ranged parts', () => {
  const big = new Uint8Array(randomBytes(20 * MiB + 5));
  const bigKey = 'models/big/1/model.onnx';
  beforeAll(async () => {
    await stack.store.putObjectBytes(bigKey, big);
  });

  it('fetch every 8 MiB part at once when the size is known, hashed in order', async () => {
    const downloaded = await store.download(bigKey, { knownSize: big.length });
    expect(downloaded?.sha256).toBe(sha256Hex(big));
    expect(Buffer.compare(downloaded!.bytes, big)).toBe(0);
    expect([...ranges].sort()).toEqual(['bytes=0-8388607', 'bytes=16777216-20971524', 'bytes=8388608-16777215']);
  });

  it('learn the size from the first part when it is not known, then fetch the rest', async () => {
    const downloaded = await store.download(bigKey);
    expect(downloaded?.sha256).toBe(sha256Hex(big));
    expect(Buffer.compare(downloaded!.bytes, big)).toBe(0);
    expect(ranges[0]).toBe('bytes=0-8388607');
    expect(ranges.slice(1).sort()).toEqual(['bytes=16777216-20971524', 'bytes=8388608-16777215']);
  });

  it('ask for the first two parts of an artifact at once when its size is not known, then for the rest once a part tells it', async () => {
    const downloaded = await store.download(bigKey, { firstParts: ARTIFACT_FIRST_PARTS });
    expect(downloaded?.sha256).toBe(sha256Hex(big));
    expect(Buffer.compare(downloaded!.bytes, big)).toBe(0);
    expect(ranges.slice(0, 2).sort()).toEqual(['bytes=0-8388607', 'bytes=8388608-16777215']);
    expect(ranges.slice(2)).toEqual(['bytes=16777216-20971524']);
  });

  it('take the refused second range of an object under one part (S3 answers 416) as the end of it', async () => {
    const small = new Uint8Array(randomBytes(3 * MiB + 1));
    await stack.store.putObjectBytes('models/small/1/model.onnx', small);
    const downloaded = await store.download('models/small/1/model.onnx', { firstParts: ARTIFACT_FIRST_PARTS });
    expect(downloaded?.sha256).toBe(sha256Hex(small));
    expect(Buffer.compare(downloaded!.bytes, small)).toBe(0);
    expect([...ranges].sort()).toEqual(['bytes=0-8388607', 'bytes=8388608-16777215']);
  });

  it('fetch an object of exactly one part size in one part, its second range refused', async () => {
    const exact = new Uint8Array(randomBytes(8 * MiB));
    await stack.store.putObjectBytes('models/exact/1/model.onnx', exact);
    const downloaded = await store.download('models/exact/1/model.onnx', { firstParts: ARTIFACT_FIRST_PARTS });
    expect(downloaded?.sha256).toBe(sha256Hex(exact));
    expect(downloaded?.bytes.length).toBe(8 * MiB);
    expect([...ranges].sort()).toEqual(['bytes=0-8388607', 'bytes=8388608-16777215']);
  });

  it('give undefined for a missing object and refuse one whose size is not the expected one', async () => {
    await expect(store.download('models/big/1/none.onnx')).resolves.toBeUndefined();
    await expect(store.download(bigKey, { knownSize: big.length - 1 })).rejects.toThrow(
      new IntegrityError(`${bigKey} has ${big.length} bytes, its manifest records ${big.length - 1}`),
    );
  });
});

describe('prefetch of a staged artifact during preload', () => {
  let manifest: ModelManifest;
  beforeAll(async () => {
    await stack.store.putObjectBytes('incoming/prefetched/m.onnx', scaleModel(3));
    const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key: 'incoming/prefetched/m.onnx' });
    if (outcome.status !== 'registered') throw new Error(outcome.status);
    manifest = outcome.manifest;
  });

  it('serves the artifact read from the download started before the manifest, with no second GET', async () => {
    store.prefetch(keys.staged('prefetched', manifest.version, stagingKey()));
    const staged = await store.getStagedBytes(manifest, stagingKey());
    expect(staged?.source).toBe('bucket');
    expect(sha256Hex(staged!.bytes)).toBe(manifest.staged[stagingKey()]!.sha256);
    expect([...ranges].sort()).toEqual(['bytes=0-8388607', 'bytes=8388608-16777215']);
  });

  it('checks prefetched bytes against the manifest like any download', async () => {
    const key = keys.staged('prefetched', manifest.version, stagingKey());
    await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: Buffer.from('tampered') }));
    const fresh = new ModelRepository({ s3: recorded, bucket: store.bucket, cacheDir: await mkdtemp(join(tmpdir(), 'download-test-')) });
    fresh.prefetch(key);
    await expect(fresh.getStagedBytes(manifest, stagingKey())).rejects.toThrow(
      new IntegrityError(`${key} has 8 bytes, its manifest records ${manifest.staged[stagingKey()]!.bytes}`),
    );
    expect([...ranges].sort()).toEqual(['bytes=0-8388607', 'bytes=8388608-16777215']);
  });

  it('falls back to a fresh download when the prefetched object was missing', async () => {
    const key = keys.staged('prefetched', '99', stagingKey());
    const fresh = new ModelRepository({ s3: recorded, bucket: store.bucket, cacheDir: await mkdtemp(join(tmpdir(), 'download-test-')) });
    fresh.prefetch(key);
    await expect(fresh.getStagedBytes({ ...manifest, version: '99' }, stagingKey())).rejects.toThrow(`model 'prefetched' version '99' has no object ${key}`);
    expect(ranges.slice(0, 2).sort()).toEqual(['bytes=0-8388607', 'bytes=8388608-16777215']);
    expect(ranges.slice(2)).toEqual([`bytes=0-${manifest.staged[stagingKey()]!.bytes - 1}`]);
  });
});
