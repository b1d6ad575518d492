import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';

/**
 * Writes one object from many appended chunks without holding it all: below one part it is a single
 * PutObject, above it a multipart upload of `partBytes` parts. Keys are deterministic, so a retried
 * writer replaces the object, never adds another.
 */
export class S3ObjectWriter {
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly key: string;
  private readonly partBytes: number;
  private readonly contentType: string;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private uploadId: string | undefined;
  private readonly parts: { ETag: string; PartNumber: number }[] = [];
  bytes = 0;

  constructor(options: { s3: S3Client; bucket: string; key: string; partBytes?: number; contentType?: string }) {
    this.s3 = options.s3;
    this.bucket = options.bucket;
    this.key = options.key;
    // S3's minimum part size is 5 MiB (except the last).
    this.partBytes = Math.max(options.partBytes ?? 8 * 1024 * 1024, 5 * 1024 * 1024);
    this.contentType = options.contentType ?? 'application/x-ndjson';
  }

  async write(chunk: string | Buffer): Promise<void> {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (buffer.length === 0) return;
    this.pending.push(buffer);
    this.pendingBytes += buffer.length;
    this.bytes += buffer.length;
    if (this.pendingBytes >= this.partBytes) await this.flushPart();
  }

  private async flushPart(): Promise<void> {
    if (!this.uploadId) {
      const created = await this.s3.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, ContentType: this.contentType }));
      this.uploadId = created.UploadId!;
    }
    const body = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    const PartNumber = this.parts.length + 1;
    const out = await this.s3.send(new UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId, PartNumber, Body: body }));
    this.parts.push({ ETag: out.ETag!, PartNumber });
  }

  async close(): Promise<void> {
    if (!this.uploadId) {
      await this.s3.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.key, Body: Buffer.concat(this.pending), ContentType: this.contentType }),
      );
      this.pending = [];
      return;
    }
    try {
      if (this.pendingBytes > 0) await this.flushPart();
      await this.s3.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId, MultipartUpload: { Parts: this.parts } }),
      );
    } catch (error) {
      await this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId })).catch(() => undefined);
      throw error;
    }
  }
}

/**
 * A JSONL body built line by line: each line is encoded into one growing buffer as it is added, so
 * a shard's thousands of result strings die young instead of living (and being copied by the
 * garbage collector) until the shard's end, and the text is never joined into one string.
 */
export class JsonlWriter {
  private body: Buffer;
  private at = 0;

  constructor(expectedBytes = 64 * 1024) {
    this.body = Buffer.allocUnsafe(Math.max(expectedBytes, 1024));
  }

  add(line: string): void {
    // A UTF-16 unit is at most 3 bytes of UTF-8; ASCII lines are checked against their length alone.
    if (this.at + line.length * 3 + 1 > this.body.length) this.grow(Buffer.byteLength(line) + 1);
    this.at += this.body.write(line, this.at, 'utf8');
    this.body[this.at++] = 0x0a;
  }

  /**
   * A line written in place: `write` gets the buffer and the offset to start at, with room for
   * `maxBytes` (the newline's included), and returns the offset after the line's last byte.
   */
  addWith(maxBytes: number, write: (out: Buffer, at: number) => number): void {
    if (this.at + maxBytes > this.body.length) this.grow(maxBytes);
    const end = write(this.body, this.at);
    if (end > this.at + maxBytes - 1) throw new Error(`a result line ran past the ${maxBytes} bytes it was given`);
    this.at = end;
    this.body[this.at++] = 0x0a;
  }

  private grow(bytes: number): void {
    const needed = this.at + bytes;
    if (needed <= this.body.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.body.length * 2, needed));
    this.body.copy(grown, 0, 0, this.at);
    this.body = grown;
  }

  /** The lines so far, each followed by a newline (a view of the writer's buffer). */
  toBuffer(): Buffer {
    return this.body.subarray(0, this.at);
  }
}

/** Lines as a JSONL body, each followed by a newline. */
export function jsonlBody(lines: readonly string[]): Buffer {
  let chars = 0;
  for (const line of lines) chars += line.length;
  const writer = new JsonlWriter(chars + lines.length);
  for (const line of lines) writer.add(line);
  return writer.toBuffer();
}
