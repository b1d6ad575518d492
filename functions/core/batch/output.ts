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
 * Lines as a JSONL body, each followed by a newline, encoded into one buffer as they are read: no
 * joined copy of the whole text as a string first (a shard's result is a few megabytes).
 */
export function jsonlBody(lines: readonly string[]): Buffer {
  let chars = 0;
  for (const line of lines) chars += line.length;
  // ASCII lines fit exactly; a line with other characters (up to 3 bytes per UTF-16 unit) grows it.
  let body = Buffer.allocUnsafe(chars + lines.length);
  let at = 0;
  for (const line of lines) {
    if (at + line.length * 3 + 1 > body.length && at + Buffer.byteLength(line) + 1 > body.length) {
      const grown = Buffer.allocUnsafe(Math.max(body.length * 2, at + Buffer.byteLength(line) + 1));
      body.copy(grown, 0, 0, at);
      body = grown;
    }
    at += body.write(line, at, 'utf8');
    body[at++] = 0x0a;
  }
  return body.subarray(0, at);
}
