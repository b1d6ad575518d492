import { createHash } from 'node:crypto';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { HttpError } from '../errors.ts';
import type { ModelManifest } from '../manifest.ts';
import { pushModel } from '../model-push.ts';
import type { ModelStore } from '../model-store.ts';
import { NAME_PATTERN } from '../names.ts';
import { assertModelSize, DEFAULT_MAX_MODEL_BYTES } from './validation.ts';

/** An object that landed in the bucket, as an S3 or EventBridge event names it. */
export interface UploadedObject {
  bucket: string;
  key: string;
  size?: number | undefined;
  eTag?: string | undefined;
}

/** incoming/<model>/<anything>.onnx */
const INCOMING_KEY = /^incoming\/([^/]+)\/(.+\.onnx)$/;

export type UploadOutcome =
  | { status: 'registered'; manifest: ModelManifest }
  | { status: 'already-registered'; model: string; version: string }
  | { status: 'rejected'; reason: string; rejectionKey: string }
  | { status: 'ignored'; reason: string };

/** Where the reason an upload was refused is kept: keyed by a hash of the upload's key, never by its name. */
export function rejectionKey(uploadKey: string): string {
  return `rejections/${createHash('sha256').update(uploadKey).digest('hex')}.json`;
}

export interface RegisterUploadOptions {
  maxModelBytes?: number;
  now?: () => Date;
}

/**
 * Registers one upload under incoming/: a redelivered event for an upload already registered does
 * nothing; a bad upload registers nothing and leaves a rejection record the uploader can read
 * (`mass push` prints it). The upload is removed only after the version is registered.
 */
export async function registerUpload(store: ModelStore, object: UploadedObject, options: RegisterUploadOptions = {}): Promise<UploadOutcome> {
  const match = INCOMING_KEY.exec(object.key);
  if (!match) return { status: 'ignored', reason: `${object.key} is not incoming/<model>/<file>.onnx` };
  const registry = store.registry;
  if (!registry) throw new Error('registering uploads needs the registry table (REGISTRY_TABLE)');
  const model = match[1]!;
  const now = options.now ?? (() => new Date());

  const reject = async (reason: string): Promise<UploadOutcome> => {
    const key = rejectionKey(object.key);
    await (await store.client()).send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        ContentType: 'application/json',
        Body: JSON.stringify({ upload: object.key, eTag: object.eTag ?? null, reason, rejected: now().toISOString() }, null, 2),
      }),
    );
    return { status: 'rejected', reason, rejectionKey: key };
  };

  if (!NAME_PATTERN.test(model) || model.includes('..')) {
    return reject(`invalid model name ${JSON.stringify(model.slice(0, 80))} in the upload path: must match [a-z0-9][a-z0-9._-]{0,63}`);
  }
  let head;
  try {
    head = await (await store.client()).send(new HeadObjectCommand({ Bucket: store.bucket, Key: object.key }));
  } catch (error) {
    if ((error as { name?: string }).name === 'NotFound') return { status: 'ignored', reason: `${object.key} no longer exists` };
    throw error;
  }
  const eTag = (head.ETag ?? object.eTag ?? '').replace(/"/g, '');
  let uploadId = `${store.bucket}/${object.key}@${eTag}`;

  let claimed = await registry.getUpload(uploadId);
  if (claimed?.state === 'registered' && head.LastModified && head.LastModified > new Date((await store.getManifest(claimed.model, claimed.version)).created)) {
    // The same bytes uploaded again to a key whose first upload was registered (and removed): a new
    // object, written after that version was made, so a new upload; its id carries its write time.
    uploadId = `${uploadId}@${head.LastModified.toISOString()}`;
    claimed = await registry.getUpload(uploadId);
  }
  if (claimed?.state === 'registered') {
    await store.deleteObject(object.key);
    return { status: 'already-registered', model: claimed.model, version: claimed.version };
  }

  try {
    assertModelSize(head.ContentLength ?? 0, options.maxModelBytes ?? DEFAULT_MAX_MODEL_BYTES);
  } catch (error) {
    if (error instanceof HttpError && error.expose) return reject(error.message);
    throw error;
  }
  const bytes = await store.getObjectBytes(object.key);
  if (!bytes) return { status: 'ignored', reason: `${object.key} no longer exists` };

  // A first delivery takes a version number and records it against the upload; a redelivery after
  // a crash part-way reuses that number, so the retried writes land on the same keys.
  // An uploader may ask for a version number (object metadata `version`); otherwise the counter picks.
  let version = claimed?.version ?? head.Metadata?.version;
  if (version && !NAME_PATTERN.test(version)) return reject(`invalid version ${JSON.stringify(version.slice(0, 80))} in the upload's metadata`);
  if (!claimed && version) {
    const winner = await registry.claimUpload({ uploadId, model, version, state: 'pending' });
    version = winner?.version ?? version;
  }
  if (!version) {
    const allocated = await registry.allocateVersion(model);
    const winner = await registry.claimUpload({ uploadId, model, version: allocated, state: 'pending' });
    version = winner?.version ?? allocated;
  }
  const notes = head.Metadata?.notes ?? '';
  let manifest: ModelManifest;
  try {
    manifest = await pushModel(store, {
      name: model,
      version,
      bytes,
      notes: decodeMetadata(notes),
      tier: head.Metadata?.tier,
      source: uploadId,
      maxBytes: options.maxModelBytes,
      now,
    });
  } catch (error) {
    if (error instanceof HttpError && error.expose) return reject(error.message);
    throw error;
  }
  await registry.markUploadRegistered(uploadId);
  await store.deleteObject(object.key);
  return { status: 'registered', manifest };
}

/** S3 user metadata is ASCII; clients (the CLI) send UTF-8 notes URI-encoded. */
function decodeMetadata(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
