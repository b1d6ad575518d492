import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { AsyncBuffer } from 'hyparquet';
import { BadRequestError } from '../../platform/errors.ts';
import { PromiseCache } from '../../platform/promise-cache.ts';
import type { ScratchArena } from './scratch.ts';

/**
 * Columnar inputs are read by byte range only, every GET If-Match on the ETag seen at planning, so
 * an input replaced after submission fails its shards loudly instead of mixing two versions.
 */
export interface ObjectRef {
  bucket: string;
  key: string;
  etag: string;
  size: number;
}

/** What was read from 32 object versions at most (footers, headers). */
const kept = new PromiseCache<unknown>(32);

/**
 * What `read` makes of an object version (a Parquet footer, NumPy headers), read once per process:
 * a job's shards each need the same file's, and under one ETag an object's bytes never change
 * (every later GET names that ETag, so a replaced object fails its reads instead of being read stale).
 * A read that fails is not kept: the next caller reads again.
 */
export function readOncePerVersion<T>(object: ObjectRef, what: string, read: () => Promise<T>): Promise<T> {
  return kept.get(JSON.stringify([what, object.bucket, object.key, object.etag, object.size]), read) as Promise<T>;
}

/**
 * Bytes [start, end) of the object (end exclusive, clamped to the size). With an arena, the body is
 * copied chunk by chunk into memory the shard borrows instead of a fresh array.
 */
export async function getBytes(s3: S3Client, object: ObjectRef, start: number, end: number, arena?: ScratchArena): Promise<Uint8Array> {
  const last = Math.min(end, object.size) - 1;
  if (last < start) return new Uint8Array(0);
  const out = await s3.send(new GetObjectCommand({ Bucket: object.bucket, Key: object.key, Range: `bytes=${start}-${last}`, IfMatch: object.etag }));
  const expected = last - start + 1;
  const short = (got: number) => new BadRequestError(`s3://${object.bucket}/${object.key}: bytes ${start}-${last} returned ${got} bytes`);
  if (!arena) {
    const bytes = await out.Body!.transformToByteArray();
    if (bytes.length !== expected) throw short(bytes.length);
    return bytes;
  }
  const bytes = arena.array<Uint8Array>(Uint8Array, expected);
  let got = 0;
  for await (const chunk of out.Body as AsyncIterable<Uint8Array>) {
    if (got + chunk.length > expected) {
      (out.Body as { destroy?: () => void }).destroy?.();
      throw short(got + chunk.length);
    }
    bytes.set(chunk, got);
    got += chunk.length;
  }
  if (got !== expected) throw short(got);
  return bytes;
}

/** An ArrayBuffer holding exactly these bytes (hyparquet slices ArrayBuffers, not views). */
export function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  return bytes.slice().buffer;
}

/**
 * hyparquet's view of an S3 object: every slice is one ranged GET. The footer is read once per
 * shard (a few KB to a few MB); the column chunks a shard needs are read by `getBytes` directly.
 */
export function s3AsyncBuffer(s3: S3Client, object: ObjectRef): AsyncBuffer {
  return {
    byteLength: object.size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      return ownBuffer(await getBytes(s3, object, start, end ?? object.size));
    },
  };
}
