import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { BadRequestError, NotFoundError } from '../platform/errors.ts';
import { MAX_SHARDS } from './schemas.ts';

/**
 * Batch inputs are read by byte range only: the planner needs an input's size and ETag, a worker
 * needs the lines that start inside its range. Nothing ever downloads a whole input.
 */
export interface InputObject {
  bucket: string;
  key: string;
  etag: string;
  size: number;
  metadata: Record<string, string>;
}

export interface ShardRange {
  shard: number;
  start: number;
  end: number;
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

export async function headInput(s3: S3Client, bucket: string, key: string): Promise<InputObject> {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { bucket, key, etag: head.ETag ?? '', size: head.ContentLength ?? 0, metadata: head.Metadata ?? {} };
  } catch (error) {
    if (isNotFound(error)) throw new NotFoundError(`input s3://${bucket}/${key} does not exist`, { cause: error });
    throw error;
  }
}

/**
 * Splits [0, size) into ranges of about `shardBytes`. A shard owns every line that starts inside its
 * range, so lines never need to be found at planning time; the shard size grows when the input
 * would otherwise need more than MAX_SHARDS shards.
 */
export function planShards(size: number, shardBytes: number): ShardRange[] {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`input size must be a non-negative integer, got ${size}`);
  if (!Number.isSafeInteger(shardBytes) || shardBytes < 1) throw new RangeError(`shard size must be a positive integer, got ${shardBytes}`);
  const bytes = Math.max(shardBytes, Math.ceil(size / MAX_SHARDS));
  const shards: ShardRange[] = [];
  for (let start = 0, shard = 0; start < size; start += bytes, shard++) {
    shards.push({ shard, start, end: Math.min(size, start + bytes) });
  }
  return shards;
}

export interface ReadRangeOptions {
  /** How much more to read, per request, to finish the last line past the range's end. */
  chunkBytes?: number;
  /** A single row longer than this fails the shard instead of filling the worker's memory. */
  maxRowBytes?: number;
}

const NEWLINE = 0x0a;
const decoder = new TextDecoder('utf-8');

async function getRange(s3: S3Client, object: Pick<InputObject, 'bucket' | 'key' | 'etag'>, first: number, last: number): Promise<Uint8Array> {
  const out = await s3.send(
    new GetObjectCommand({ Bucket: object.bucket, Key: object.key, Range: `bytes=${first}-${last}`, IfMatch: object.etag }),
  );
  return out.Body!.transformToByteArray();
}

/**
 * The non-blank lines that start in [start, end), in order, without their line terminators. Reads
 * one byte before `start` to know whether a line starts exactly there, and past `end` only as far as
 * the newline that closes the last line.
 */
export async function readShardLines(
  s3: S3Client,
  object: Pick<InputObject, 'bucket' | 'key' | 'etag' | 'size'>,
  start: number,
  end: number,
  options: ReadRangeOptions = {},
): Promise<string[]> {
  if (start >= end || start >= object.size) return [];
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  const maxRowBytes = options.maxRowBytes ?? 64 * 1024 * 1024;
  const fetchStart = start > 0 ? start - 1 : 0;
  const head = await getRange(s3, object, fetchStart, Math.min(end, object.size) - 1);

  let first: number;
  if (start === 0) {
    first = 0;
  } else {
    const newline = head.indexOf(NEWLINE);
    // No newline before the range's last byte: every line here started in an earlier shard.
    if (newline === -1 || newline >= head.length - 1) return [];
    first = newline + 1;
  }

  const parts: Uint8Array[] = [head.subarray(first)];
  let tailEnds = head[head.length - 1] === NEWLINE;
  let at = Math.min(end, object.size);
  let extra = 0;
  while (!tailEnds && at < object.size) {
    const chunk = await getRange(s3, object, at, Math.min(object.size, at + chunkBytes) - 1);
    const newline = chunk.indexOf(NEWLINE);
    if (newline !== -1) {
      parts.push(chunk.subarray(0, newline + 1));
      tailEnds = true;
    } else {
      parts.push(chunk);
      extra += chunk.length;
      if (extra > maxRowBytes) throw new BadRequestError(`a row starting before byte ${end} is longer than ${maxRowBytes} bytes`);
    }
    at += chunk.length;
  }

  const text = decoder.decode(parts.length === 1 ? parts[0] : Buffer.concat(parts));
  const lines: string[] = [];
  let from = 0;
  while (from < text.length) {
    let to = text.indexOf('\n', from);
    if (to === -1) to = text.length;
    let line = text.slice(from, to);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() !== '') lines.push(line);
    from = to + 1;
  }
  return lines;
}
