import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { IntegrityError, NotFoundError } from './errors.ts';
import { keys } from './keys.ts';
import { modelManifestSchema, type ModelManifest } from './manifest.ts';
import { assertValidName, compareVersions } from './names.ts';
import { sha256Hex } from './signature.ts';

export interface ModelStoreOptions {
  s3: S3Client;
  bucket: string;
  /** Local file cache (Lambda's /tmp), reused for the life of the environment. */
  cacheDir: string;
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return error instanceof NoSuchKey || e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** Reads registered models from the bucket: versions, manifests, and hash-checked model bytes. */
export class ModelStore {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly cacheDir: string;
  /** The last background cache write (tests await it). */
  pendingCacheWrite: Promise<void> = Promise.resolve();

  constructor(options: ModelStoreOptions) {
    this.s3 = options.s3;
    this.bucket = options.bucket;
    this.cacheDir = options.cacheDir;
  }

  async getObjectBytes(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return await out.Body!.transformToByteArray();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private async writeCache(path: string, bytes: Uint8Array): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, bytes);
    await rename(partial, path);
  }

  /** Model names that have at least one version. */
  async listModels(): Promise<string[]> {
    return this.listPrefixes(keys.modelsPrefix);
  }

  /** Versions of one model, lowest first. */
  async listVersions(model: string): Promise<string[]> {
    assertValidName(model, 'model name');
    const versions = await this.listPrefixes(keys.modelPrefix(model));
    return versions.sort(compareVersions);
  }

  private async listPrefixes(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.s3.send(
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

  async getManifest(model: string, version: string): Promise<ModelManifest> {
    assertValidName(model, 'model name');
    assertValidName(version, 'version');
    const bytes = await this.getObjectBytes(keys.manifest(model, version));
    if (!bytes) throw new NotFoundError(`model '${model}' has no version '${version}'`);
    return modelManifestSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
  }

  async putManifest(manifest: ModelManifest): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: keys.manifest(manifest.name, manifest.version),
        Body: JSON.stringify(manifest, null, 2),
        ContentType: 'application/json',
      }),
    );
  }

  /**
   * Writes an object of any size: one PUT when small, a parallel multipart upload in 8 MiB parts
   * otherwise (a single PUT is slow for large models, and request size limits differ by endpoint).
   */
  async putObjectBytes(key: string, bytes: Uint8Array, contentType = 'application/octet-stream'): Promise<void> {
    await new Upload({
      client: this.s3,
      params: { Bucket: this.bucket, Key: key, Body: bytes, ContentType: contentType },
      partSize: 8 * 1024 * 1024,
      queueSize: 4,
    }).done();
  }

  /**
   * The model file's bytes, from the local cache when present, else from the bucket; either way its
   * sha256 must equal the manifest's before anyone builds a session from it.
   */
  async getModelBytes(manifest: ModelManifest): Promise<{ bytes: Uint8Array; source: 'cache' | 'bucket' }> {
    const cached = join(this.cacheDir, manifest.name, manifest.version, `${manifest.sha256}.onnx`);
    const fromCache = await readFile(cached).catch(() => undefined);
    if (fromCache && sha256Hex(fromCache) === manifest.sha256) return { bytes: fromCache, source: 'cache' };

    const bytes = await this.getObjectBytes(keys.modelFile(manifest.name, manifest.version));
    if (!bytes) throw new NotFoundError(`model '${manifest.name}' version '${manifest.version}' has no model file`);
    const actual = sha256Hex(bytes);
    if (actual !== manifest.sha256) {
      throw new IntegrityError(
        `model '${manifest.name}' version '${manifest.version}': sha256 ${actual} does not match the manifest's ${manifest.sha256}`,
      );
    }
    // Off the cold-start path: the bytes are in memory already. Write then rename, so a concurrent
    // reader never sees half a file; a failed write only costs a later download.
    this.pendingCacheWrite = this.writeCache(cached, bytes).catch(() => undefined);
    return { bytes, source: 'bucket' };
  }
}
