import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { BadRequestError, NotFoundError } from '../platform/errors.ts';
import { getBytes } from './formats/ranged.ts';
import type { ScratchArena } from './formats/scratch.ts';
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

/**
 * The lines of a shard over its bytes, each decoded only when it is read: a shard's text is never
 * one string (several megabytes, in fresh pages every shard), and each line's string dies young.
 * Arrays of strings have the same `length` and `at`, so scoring takes either.
 */
export class ShardLines {
  private readonly bytes: Buffer;
  private readonly starts: readonly number[];
  private readonly ends: readonly number[];
  private readonly first: number;

  constructor(bytes: Uint8Array, starts: readonly number[], ends: readonly number[], first = 0) {
    this.bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.starts = starts;
    this.ends = ends;
    this.first = first;
  }

  get length(): number {
    return this.starts.length - this.first;
  }

  at(index: number): string | undefined {
    if (index < 0 || index >= this.length) return undefined;
    return this.bytes.toString('utf8', this.starts[this.first + index], this.ends[this.first + index]);
  }

  /** Where line `index` lies in `bytes` (without its terminator), for readers that take bytes. */
  startOf(index: number): number {
    return this.starts[this.first + index]!;
  }

  endOf(index: number): number {
    return this.ends[this.first + index]!;
  }

  get source(): Uint8Array {
    return this.bytes;
  }

  /** The lines from `from` on (a CSV shard less its header). */
  slice(from: number): ShardLines {
    return new ShardLines(this.bytes, this.starts, this.ends, this.first + Math.min(from, this.length));
  }

  toArray(): string[] {
    return Array.from({ length: this.length }, (_, i) => this.at(i)!);
  }
}

/** ASCII whitespace as String.prototype.trim sees it (tab, LF, VT, FF, CR, space). */
const asciiSpace = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d);

/**
 * The non-blank lines that start in [start, end), in order, without their line terminators. Reads
 * one byte before `start` to know whether a line starts exactly there, and past `end` a chunk at a
 * time (the first in the same GET as the range) until the newline that closes the last line. With
 * an arena, the range's bytes are in memory the shard borrows (the lines must not be read after it
 * is released).
 */
export async function readShardLineBytes(
  s3: S3Client,
  object: Pick<InputObject, 'bucket' | 'key' | 'etag' | 'size'>,
  start: number,
  end: number,
  options: ReadRangeOptions & { arena?: ScratchArena } = {},
): Promise<ShardLines> {
  if (start >= end || start >= object.size) return new ShardLines(new Uint8Array(0), [], []);
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  const maxRowBytes = options.maxRowBytes ?? 64 * 1024 * 1024;
  const fetchStart = start > 0 ? start - 1 : 0;
  // One GET for the range and a chunk past it, where the last line almost always ends.
  const readEnd = Math.min(object.size, end + chunkBytes);
  const head = await getBytes(s3, object, fetchStart, readEnd, options.arena);

  let first: number;
  if (start === 0) {
    first = 0;
  } else {
    const newline = head.indexOf(NEWLINE);
    // No newline before the range's last byte: every line here started in an earlier shard.
    if (newline === -1 || fetchStart + newline + 1 >= end) return new ShardLines(new Uint8Array(0), [], []);
    first = newline + 1;
  }

  // The last line that starts in the range ends at the first newline from the range's last byte on.
  const close = head.indexOf(NEWLINE, end - 1 - fetchStart);
  const parts: Uint8Array[] = [close === -1 ? head.subarray(first) : head.subarray(first, close + 1)];
  let tailEnds = close !== -1;
  let at = readEnd;
  let extra = readEnd - end;
  if (!tailEnds && extra > maxRowBytes) throw new BadRequestError(`a row starting before byte ${end} is longer than ${maxRowBytes} bytes`);
  while (!tailEnds && at < object.size) {
    const chunk = await getBytes(s3, object, at, Math.min(object.size, at + chunkBytes));
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

  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const starts: number[] = [];
  const ends: number[] = [];
  let from = 0;
  while (from < bytes.length) {
    let to = bytes.indexOf(NEWLINE, from);
    if (to === -1) to = bytes.length;
    const lineEnd = to > from && bytes[to - 1] === 0x0d ? to - 1 : to;
    let p = from;
    while (p < lineEnd && asciiSpace(bytes[p]!)) p++;
    // Blank lines are skipped; a line whose first non-ASCII-space byte is not ASCII is checked as text.
    const blank = p === lineEnd || (bytes[p]! >= 0x80 && Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString('utf8').trim() === '');
    if (!blank) {
      starts.push(from);
      ends.push(lineEnd);
    }
    from = to + 1;
  }
  return new ShardLines(bytes, starts, ends);
}

/** The non-blank lines that start in [start, end), as strings (readShardLineBytes, decoded). */
export async function readShardLines(
  s3: S3Client,
  object: Pick<InputObject, 'bucket' | 'key' | 'etag' | 'size'>,
  start: number,
  end: number,
  options: ReadRangeOptions = {},
): Promise<string[]> {
  return (await readShardLineBytes(s3, object, start, end, options)).toArray();
}
