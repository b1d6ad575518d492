import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { IntegrityError, NotFoundError } from '../platform/errors.ts';
import { keys } from './keys.ts';
import { modelManifestSchema, type ModelManifest } from './manifest.ts';
import { assertValidName, assertValidVersion, compareVersions, isCanonicalVersion } from './names.ts';
import { sha256Hex, sha256OfFile } from '../platform/hash.ts';
import type { LazyClient } from '../aws/lazy-clients.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';
import { ObjectStore } from './object-store.ts';
import { registeredVersions, uploadedVersions, type IndexedVersion } from './indexed-versions.ts';
import { ARTIFACT_FIRST_PARTS, downloadRanged, PART_BYTES, PART_CONCURRENCY, readStreamInto, totalFromContentRange, type Downloaded, type RangedPlan } from './ranged-download.ts';

export interface ModelStoreOptions {
  /** A client, or one made on first use (lazy-clients.ts: no SDK code runs until a request needs it). */
  s3: S3Client | LazyClient<S3Client>;
  bucket: string;
  /** Local file cache (Lambda's /tmp), reused for the life of the environment. */
  cacheDir: string;
  /** The registry's table: version numbers, status and aliases. Without one, versions are listed from the bucket. */
  registry?: VersionIndex | undefined;
  /**
   * Downloads started before this store existed (the boot fetch), by key: each is taken once, by
   * the first read of its key, and a failed or missing one falls back to an ordinary GET. The map
   * is read as it grows (a pre-warm by name adds its version's files once the registry answered).
   */
  prefetched?: Map<string, Promise<Downloaded | undefined>> | undefined;
}

/**
 * What the store asks of the registry: the registry table implements it, and the registry's
 * repository (registry/repository.ts) joins the store, the table and the events. The dependency
 * points from the registry to the artifacts, never back.
 */
export interface VersionIndex {
  /** Versions lowest first. */
  listVersions(model: string): Promise<readonly IndexedVersion[]>;
  getVersion(model: string, version: string): Promise<IndexedVersion | undefined>;
}

/** Reads registered models from the bucket: versions, manifests, and hash-checked model bytes. */
export class ModelStore {
  /** The bucket's objects by key: reports, data sets, records and anything else that is not a model artifact. */
  readonly objects: ObjectStore;
  readonly bucket: string;
  readonly cacheDir: string;
  readonly registry: VersionIndex | undefined;
  /** The last background cache write (tests await it). */
  pendingCacheWrite: Promise<void> = Promise.resolve();
  /** Downloads started before their manifest was read (see prefetch), taken once by the artifact read. */
  private readonly prefetches: Map<string, Promise<Downloaded | undefined>>;

  constructor(options: ModelStoreOptions) {
    this.objects = new ObjectStore(options.s3, options.bucket);
    this.bucket = options.bucket;
    this.cacheDir = options.cacheDir;
    this.registry = options.registry;
    this.prefetches = options.prefetched ?? new Map(); // the boot fetch's own map: it still adds to it
  }

  async getObjectBytes(key: string): Promise<Uint8Array | undefined> {
    const prefetched = this.takePrefetch(key);
    const early = prefetched && (await prefetched.catch(() => undefined));
    if (early) return early.bytes;
    return this.objects.get(key);
  }

  private async writeCache(path: string, bytes: Uint8Array): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, bytes);
    await rename(partial, path);
  }

  deleteObject(key: string): Promise<void> {
    return this.objects.delete(key);
  }

  /** Model names that have at least one version. */
  async listModels(): Promise<string[]> {
    return this.objects.listFolders(keys.modelsPrefix);
  }

  /** Registered versions of one model, lowest first. */
  async listVersions(model: string): Promise<string[]> {
    assertValidName(model, 'model name');
    if (this.registry) {
      return registeredVersions(await this.registry.listVersions(model));
    }
    const versions = await this.objects.listFolders(keys.modelPrefix(model));
    return versions.filter(isCanonicalVersion).sort(compareVersions);
  }

  /**
   * Registered versions of one model, lowest first, with those a user uploaded (no lineage): what
   * routing needs from one registry read. Without a registry, versions come from the bucket and all count as uploaded.
   */
  async listRoutableVersions(model: string): Promise<{ versions: string[]; uploaded: string[] }> {
    assertValidName(model, 'model name');
    if (!this.registry) {
      const versions = await this.listVersions(model);
      return { versions, uploaded: versions };
    }
    const records = await this.registry.listVersions(model);
    return { versions: registeredVersions(records), uploaded: uploadedVersions(records) };
  }

  /**
   * The manifest of a registered version. With a registry, a manifest is only an answer when the
   * registry records the version as registered (read alongside, not after): files under
   * models/<m>/<v>/ that no registration finished, or that someone put there, are never served.
   * Anything that is not a canonical version number (an alias, `01`) has no manifest: 404.
   * `listedAsRegistered`: the caller holds a registry read that lists this version as registered
   * (the serving path's cached versions), so the record is not read again.
   */
  async getManifest(model: string, version: string, { listedAsRegistered = false } = {}): Promise<ModelManifest> {
    assertValidName(model, 'model name');
    const missing = () => new NotFoundError(`model '${model}' has no version '${version.length > 80 ? `${version.slice(0, 80)}...` : version}'`);
    if (!isCanonicalVersion(version)) throw missing();
    const checkRecord = this.registry && !listedAsRegistered;
    const [manifest, record] = await Promise.all([this.readManifestObject(model, version), checkRecord ? this.registry!.getVersion(model, version) : undefined]);
    if (!manifest || (checkRecord && record?.status !== 'registered')) throw missing();
    return manifest;
  }

  /** The manifest object as stored, registered or not (registration's own retry check); undefined when absent. */
  async readManifestObject(model: string, version: string): Promise<ModelManifest | undefined> {
    assertValidName(model, 'model name');
    assertValidVersion(version);
    const bytes = await this.getObjectBytes(keys.manifest(model, version));
    if (!bytes) return undefined;
    return modelManifestSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')), PARSED_ONCE);
  }

  putManifest(manifest: ModelManifest): Promise<void> {
    return this.objects.put(keys.manifest(manifest.name, manifest.version), JSON.stringify(manifest, null, 2), { contentType: 'application/json' });
  }

  /**
   * Writes an object of any size: one PUT when small, a parallel multipart upload in 8 MiB parts
   * otherwise (a single PUT is slow for large models, and request size limits differ by endpoint).
   */
  putObjectBytes(key: string, bytes: Uint8Array, contentType = 'application/octet-stream', metadata?: Record<string, string>): Promise<string> {
    return this.objects.upload(key, bytes, { contentType, metadata });
  }

  /**
   * An object of known size written to a local file in ranged parts (PART_BYTES, PART_CONCURRENCY at
   * a time), each through its connection's one reused buffer, then hashed from the file: a few parts
   * in memory and no garbage, however large the model (registration near the size limit).
   * Undefined when the object does not exist.
   */
  async downloadToFile(key: string, path: string, size: number): Promise<{ sha256: string; bytes: number } | undefined> {
    const file = await open(path, 'w');
    let missing = false;
    try {
      const parts = Math.ceil(size / PART_BYTES);
      let next = 0;
      const worker = async () => {
        const buffer = new Uint8Array(Math.min(PART_BYTES, size));
        while (next < parts && !missing) {
          const start = next++ * PART_BYTES;
          const length = Math.min(PART_BYTES, size - start);
          const res = await this.objects.getRange(key, start, start + length - 1);
          if (res === undefined) {
            missing = true;
            return;
          }
          if (res === 'beyond-end') throw new IntegrityError(`${key}: range ${start}-${start + length - 1} starts past the object's end`);
          const written = await readStreamInto(key, res.body, buffer, 0, length);
          if (written !== length) throw new IntegrityError(`${key}: range ${start}-${start + length - 1} returned ${written} bytes`);
          await file.write(buffer, 0, length, start);
        }
      };
      await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, Math.max(1, parts)) }, worker));
    } finally {
      await file.close();
    }
    return missing ? undefined : { sha256: await sha256OfFile(path), bytes: size };
  }

  /**
   * Writes a local file as an object, read as a stream (multipart beyond 8 MiB): the file is never
   * held in memory whole, and the parts already sent are collected as it goes (memory.ts), so a
   * large model's upload does not pile them up.
   */
  putObjectFile(key: string, path: string, contentType = 'application/octet-stream'): Promise<string> {
    return this.objects.upload(key, createReadStream(path), { contentType });
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

  /**
   * Starts downloading an object whose manifest is still being read, so a cold start's two round
   * trips overlap. The bytes are only used once getModelBytes/getStagedBytes checks them against the
   * manifest's size and sha256, exactly as a download started then; an object that is missing or
   * not wanted is dropped. For init only: the local cache is not consulted first.
   */
  prefetch(key: string): void {
    if (this.prefetches.has(key)) return;
    const download = this.download(key, { firstParts: ARTIFACT_FIRST_PARTS });
    download.catch(() => undefined); // a failed prefetch falls back to a fresh download, never rejects unseen
    this.prefetches.set(key, download);
  }

  /** Drops downloads started early that no read took. */
  discardPrefetches(): void {
    this.prefetches.clear();
  }

  private takePrefetch(key: string): Promise<Downloaded | undefined> | undefined {
    const download = this.prefetches.get(key);
    this.prefetches.delete(key);
    return download;
  }

  private async getArtifact(manifest: ModelManifest, key: string, sha256: string, size: number, extension: string) {
    const cached = join(this.cacheDir, manifest.name, manifest.version, `${sha256}.${extension}`);
    const prefetched = this.takePrefetch(key);
    const fromCache = prefetched ? undefined : await readFile(cached).catch(() => undefined);
    if (fromCache && sha256Hex(fromCache) === sha256) {
      const now = new Date();
      void utimes(cached, now, now).catch(() => undefined); // recency for the cache budget's eviction
      return { bytes: new Uint8Array(fromCache.buffer, fromCache.byteOffset, fromCache.byteLength), source: 'cache' as const };
    }
    const downloaded = (prefetched && (await prefetched.catch(() => undefined))) ?? (await this.download(key, { knownSize: size }));
    if (!downloaded) throw new NotFoundError(`model '${manifest.name}' version '${manifest.version}' has no object ${key}`);
    const { bytes, sha256: actual } = downloaded;
    if (bytes.length !== size) throw new IntegrityError(`${key} has ${bytes.length} bytes, its manifest records ${size}`);
    if (actual !== sha256) {
      throw new IntegrityError(`model '${manifest.name}' version '${manifest.version}': ${key} has sha256 ${actual}, the manifest says ${sha256}`);
    }
    // Off the cold-start path: the bytes are in memory already. Write then rename, so a concurrent
    // reader never sees half a file; a failed write only costs a later download.
    this.pendingCacheWrite = this.writeCache(cached, bytes).catch(() => undefined);
    return { bytes, source: 'bucket' as const };
  }

  /** An object with its sha256, in parallel ranged GETs (downloadRanged); undefined when it does not exist. */
  download(key: string, plan: RangedPlan = {}): Promise<Downloaded | undefined> {
    return downloadRanged(
      key,
      async (start, end) => {
        const res = await this.objects.getRange(key, start, end);
        if (res === undefined || res === 'beyond-end') return res;
        const total = totalFromContentRange(res.contentRange) ?? (start === 0 ? res.contentLength : undefined);
        return { total, readInto: (out, at, limit) => readStreamInto(key, res.body, out, at, limit), discard: () => res.body.destroy() };
      },
      plan,
    );
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
