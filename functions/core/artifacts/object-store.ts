import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { LazyClient } from '../aws/lazy-clients.ts';
import { releaseDroppedMemory } from '../platform/memory.ts';

/** The SDK's S3 commands, imported when first sent (see lazy-clients.ts). */
const s3Sdk = () => import('../aws/sdk/s3.ts');

/** Parts of a multipart upload: S3 wants them for big objects, and the local emulator takes 11 MiB a request. */
const UPLOAD_PART_BYTES = 8 * 1024 * 1024;

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** S3's answer to a range that starts at or past the object's end. */
function isRangeNotSatisfiable(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'InvalidRange' || e?.$metadata?.httpStatusCode === 416;
}

export interface ObjectWriteOptions {
  contentType?: string | undefined;
  metadata?: Record<string, string> | undefined;
}

/** What a HEAD tells of an object. */
export interface ObjectHead {
  bytes: number;
  /** Without the quotes S3 puts around it. */
  eTag: string | undefined;
  lastModified: Date | undefined;
  metadata: Record<string, string>;
}

/** One ranged read: the body to read, and what S3 said of the whole object. */
export interface RangeRead {
  body: Readable;
  contentRange: string | undefined;
  contentLength: number | undefined;
}

/**
 * The objects of one bucket, by key: the only thing that sends S3 requests for the model bucket.
 * It owns the client and hands it to no one, so every request our code makes is one of the named
 * operations below (what the role policies are written against).
 */
export class ObjectStore {
  readonly bucket: string;
  readonly #client: LazyClient<S3Client>;

  /** `s3`: a client, or one made on first use (lazy-clients.ts: no SDK code runs until a request needs it). */
  constructor(s3: S3Client | LazyClient<S3Client>, bucket: string) {
    this.#client = typeof s3 === 'function' ? s3 : () => Promise.resolve(s3);
    this.bucket = bucket;
  }

  /** An object's bytes; undefined when it does not exist. */
  async get(key: string): Promise<Uint8Array | undefined> {
    const { GetObjectCommand } = await s3Sdk();
    try {
      const out = await (await this.#client()).send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return await out.Body!.transformToByteArray();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Bytes `start` to `end` (inclusive); undefined when the object does not exist, 'beyond-end' when it ends before `start`. */
  async getRange(key: string, start: number, end: number): Promise<RangeRead | 'beyond-end' | undefined> {
    const { GetObjectCommand } = await s3Sdk();
    try {
      const res = await (await this.#client()).send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }));
      return { body: res.Body as Readable, contentRange: res.ContentRange, contentLength: res.ContentLength };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (isRangeNotSatisfiable(error)) return 'beyond-end';
      throw error;
    }
  }

  /** What a HEAD says of an object; undefined when it does not exist. */
  async head(key: string): Promise<ObjectHead | undefined> {
    const { HeadObjectCommand } = await s3Sdk();
    try {
      const out = await (await this.#client()).send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { bytes: out.ContentLength ?? 0, eTag: out.ETag?.replace(/"/g, ''), lastModified: out.LastModified, metadata: out.Metadata ?? {} };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** One PUT: for small objects (JSON records, reports). */
  async put(key: string, body: string | Uint8Array, options: ObjectWriteOptions = {}): Promise<void> {
    const { PutObjectCommand } = await s3Sdk();
    await (await this.#client()).send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ...(options.contentType ? { ContentType: options.contentType } : {}),
        ...(options.metadata ? { Metadata: options.metadata } : {}),
      }),
    );
  }

  /**
   * Writes an object of any size: one PUT when small, a parallel multipart upload in 8 MiB parts
   * otherwise. A stream is never held whole: the parts already sent are collected as it goes
   * (memory.ts), so a large upload does not pile them up. Returns the ETag, unquoted.
   */
  async upload(key: string, body: Uint8Array | Readable, options: ObjectWriteOptions = {}): Promise<string> {
    const { Upload } = await s3Sdk();
    const upload = new Upload({
      client: await this.#client(),
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: options.contentType ?? 'application/octet-stream',
        ...(options.metadata ? { Metadata: options.metadata } : {}),
      },
      partSize: UPLOAD_PART_BYTES,
      queueSize: 4,
    });
    if (!(body instanceof Uint8Array)) {
      let sinceCollection = 0;
      upload.on('httpUploadProgress', (progress) => {
        sinceCollection += progress.part ? UPLOAD_PART_BYTES : 0;
        if (sinceCollection >= 64 * 1024 * 1024) {
          sinceCollection = 0;
          releaseDroppedMemory();
        }
      });
    }
    const out = await upload.done();
    return (out.ETag ?? '').replace(/"/g, '');
  }

  async delete(key: string): Promise<void> {
    const { DeleteObjectCommand } = await s3Sdk();
    await (await this.#client()).send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** Every key under a prefix, in key order (only those after `startAfter`, when given). */
  async list(prefix: string, options: { startAfter?: string | undefined } = {}): Promise<string[]> {
    const { ListObjectsV2Command } = await s3Sdk();
    const found: string[] = [];
    let token: string | undefined;
    do {
      const from = options.startAfter && !token ? { StartAfter: options.startAfter } : {};
      const page = await (await this.#client()).send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, ...from }));
      for (const o of page.Contents ?? []) if (o.Key) found.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  /** The names of the folders right under a prefix that ends in '/' (`a/` for `<prefix>a/...`), in key order. */
  async listFolders(prefix: string): Promise<string[]> {
    const { ListObjectsV2Command } = await s3Sdk();
    const names: string[] = [];
    let token: string | undefined;
    do {
      const page = await (await this.#client()).send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
      );
      for (const p of page.CommonPrefixes ?? []) {
        const name = p.Prefix?.slice(prefix.length, -1);
        if (name) names.push(name);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return names;
  }

  /**
   * The first key under a prefix, by one list request of one key; undefined when there is none.
   * Also how to ask whether a key exists (its own key comes first): a GetObject of a missing key is a
   * 403, not a 404, to a role without s3:ListBucket.
   */
  async firstKey(prefix: string): Promise<string | undefined> {
    const { ListObjectsV2Command } = await s3Sdk();
    const out = await (await this.#client()).send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: 1 }));
    return out.Contents?.[0]?.Key;
  }
}
