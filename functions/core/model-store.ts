import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { IntegrityError, NotFoundError } from './errors.ts';
import { keys } from './keys.ts';
import { modelManifestSchema, type ModelManifest } from './manifest.ts';
import { assertValidName, compareVersions } from './names.ts';
import type { ModelEventPublisher } from './registry/events.ts';
import type { RegistryTable } from './registry/registry-table.ts';
import { sha256Hex } from './hash.ts';

export interface ModelStoreOptions {
  s3: S3Client;
  bucket: string;
  /** Local file cache (Lambda's /tmp), reused for the life of the environment. */
  cacheDir: string;
  /** The registry's table: version numbers, status and aliases. Without one, versions are listed from the bucket. */
  registry?: RegistryTable | undefined;
  /** Where registrations and rollouts are announced. */
  events?: ModelEventPublisher | undefined;
}

const RANGED_GET_THRESHOLD = 16 * 1024 * 1024;
const RANGE_PART_BYTES = 8 * 1024 * 1024;
const RANGE_CONCURRENCY = 4;

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return error instanceof NoSuchKey || e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** Reads registered models from the bucket: versions, manifests, and hash-checked model bytes. */
export class ModelStore {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly cacheDir: string;
  readonly registry: RegistryTable | undefined;
  readonly events: ModelEventPublisher | undefined;
  /** The last background cache write (tests await it). */
  pendingCacheWrite: Promise<void> = Promise.resolve();

  constructor(options: ModelStoreOptions) {
    this.s3 = options.s3;
    this.bucket = options.bucket;
    this.cacheDir = options.cacheDir;
    this.registry = options.registry;
    this.events = options.events;
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

  async deleteObject(key: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** Model names that have at least one version. */
  async listModels(): Promise<string[]> {
    return this.listPrefixes(keys.modelsPrefix);
  }

  /** Registered versions of one model, lowest first. */
  async listVersions(model: string): Promise<string[]> {
    assertValidName(model, 'model name');
    if (this.registry) {
      return (await this.registry.listVersions(model)).filter((v) => v.status === 'registered').map((v) => v.version);
    }
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
  async putObjectBytes(key: string, bytes: Uint8Array, contentType = 'application/octet-stream', metadata?: Record<string, string>): Promise<string> {
    const out = await new Upload({
      client: this.s3,
      params: { Bucket: this.bucket, Key: key, Body: bytes, ContentType: contentType, ...(metadata ? { Metadata: metadata } : {}) },
      partSize: 8 * 1024 * 1024,
      queueSize: 4,
    }).done();
    return (out.ETag ?? '').replace(/"/g, '');
  }

  /**
   * The model file's bytes, from the local cache when present, else from the bucket; either way its
   * sha256 must equal the manifest's before anyone builds a session from it.
   */
  getModelBytes(manifest: ModelManifest): Promise<{ bytes: Uint8Array; source: 'cache' | 'bucket' }> {
    return this.getArtifact(manifest, keys.modelFile(manifest.name, manifest.version), manifest.sha256, manifest.bytes, 'onnx');
  }

  /** A staged artifact's bytes, hash-checked like the model file; undefined when none is staged under this key. */
  async getStagedBytes(manifest: ModelManifest, stagingKey: string): Promise<{ bytes: Uint8Array; source: 'cache' | 'bucket' } | undefined> {
    const staged = manifest.staged[stagingKey];
    if (!staged) return undefined;
    return this.getArtifact(manifest, keys.staged(manifest.name, manifest.version, stagingKey), staged.sha256, staged.bytes, 'ort');
  }

  private async getArtifact(manifest: ModelManifest, key: string, sha256: string, size: number, extension: string) {
    const cached = join(this.cacheDir, manifest.name, manifest.version, `${sha256}.${extension}`);
    const fromCache = await readFile(cached).catch(() => undefined);
    if (fromCache && sha256Hex(fromCache) === sha256) {
      const now = new Date();
      void utimes(cached, now, now).catch(() => undefined); // recency for the cache budget's eviction
      return { bytes: new Uint8Array(fromCache.buffer, fromCache.byteOffset, fromCache.byteLength), source: 'cache' as const };
    }
    const downloaded = await this.download(key, size);
    if (!downloaded) throw new NotFoundError(`model '${manifest.name}' version '${manifest.version}' has no object ${key}`);
    const { bytes, sha256: actual } = downloaded;
    if (actual !== sha256) {
      throw new IntegrityError(`model '${manifest.name}' version '${manifest.version}': ${key} has sha256 ${actual}, the manifest says ${sha256}`);
    }
    // Off the cold-start path: the bytes are in memory already. Write then rename, so a concurrent
    // reader never sees half a file; a failed write only costs a later download.
    this.pendingCacheWrite = this.writeCache(cached, bytes).catch(() => undefined);
    return { bytes, source: 'bucket' as const };
  }

  /**
   * An object of known size, with its sha256. Below the ranged-GET threshold the body streams into
   * one buffer of that size and is hashed as it arrives (no concatenation copy, the hash overlapped
   * with the transfer); above it, parallel ranged GETs, hashed once complete.
   */
  private async download(key: string, size: number): Promise<{ bytes: Uint8Array; sha256: string } | undefined> {
    if (size > RANGED_GET_THRESHOLD) {
      const bytes = await this.getObjectParallel(key, size);
      return bytes && { bytes, sha256: sha256Hex(bytes) };
    }
    let body: AsyncIterable<Uint8Array>;
    try {
      body = (await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }))).Body as unknown as AsyncIterable<Uint8Array>;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const bytes = new Uint8Array(size);
    const hash = createHash('sha256');
    let at = 0;
    for await (const chunk of body) {
      if (at + chunk.length > size) throw new IntegrityError(`${key} is longer than the ${size} bytes its manifest records`);
      bytes.set(chunk, at);
      hash.update(chunk);
      at += chunk.length;
    }
    if (at !== size) throw new IntegrityError(`${key} has ${at} bytes, its manifest records ${size}`);
    return { bytes, sha256: hash.digest('hex') };
  }

  /**
   * Large objects come down as parallel ranged GETs (one connection tops out well below what S3
   * serves to several); small ones in one request.
   */
  async getObjectParallel(key: string, size: number): Promise<Uint8Array | undefined> {
    if (size <= RANGED_GET_THRESHOLD) return this.getObjectBytes(key);
    const out = new Uint8Array(size);
    const parts = Math.ceil(size / RANGE_PART_BYTES);
    let next = 0;
    let missing = false;
    const worker = async () => {
      while (next < parts && !missing) {
        const part = next++;
        const start = part * RANGE_PART_BYTES;
        const end = Math.min(size, start + RANGE_PART_BYTES) - 1;
        try {
          const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }));
          const chunk = await res.Body!.transformToByteArray();
          if (chunk.length !== end - start + 1) throw new IntegrityError(`${key}: range ${start}-${end} returned ${chunk.length} bytes`);
          out.set(chunk, start);
        } catch (error) {
          if (isNotFound(error)) missing = true;
          else throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(RANGE_CONCURRENCY, parts) }, worker));
    return missing ? undefined : out;
  }

  /**
   * Keeps the /tmp cache under its budget (the tier sets it): least recently used files go first.
   * Files of models in use stay readable: sessions hold their bytes in memory.
   */
  async enforceCacheBudget(budgetBytes: number): Promise<string[]> {
    const files: { path: string; size: number; used: number }[] = [];
    const walk = async (dir: string) => {
      for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) await walk(path);
        else if (!entry.name.endsWith('.partial')) {
          const info = await stat(path);
          files.push({ path, size: info.size, used: info.mtimeMs });
        }
      }
    };
    await walk(this.cacheDir);
    let total = files.reduce((sum, f) => sum + f.size, 0);
    const evicted: string[] = [];
    for (const f of files.sort((a, b) => a.used - b.used)) {
      if (total <= budgetBytes) break;
      await rm(f.path, { force: true });
      total -= f.size;
      evicted.push(f.path);
    }
    return evicted;
  }

}
