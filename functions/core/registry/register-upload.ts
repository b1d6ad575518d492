import { createHash } from 'node:crypto';
import { HttpError } from '../platform/errors.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { pushModel } from './model-push.ts';
import type { ModelRepository } from './repository.ts';
import { isCanonicalVersion, isValidName, shown, VERSION_RULE } from '../artifacts/names.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { candidateFolder, type ExaminedModel } from '../artifacts/candidate-session.ts';
import { DEFAULT_SERVING_MEMORY_MIB } from '../artifacts/capacity.ts';
import { assertModelSize, DEFAULT_MAX_MODEL_BYTES, validateModel } from '../artifacts/validation.ts';

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
  /** Memory of the function that serves the deployment's models (its tier); default DEFAULT_SERVING_MEMORY_MIB. */
  servingMemoryMiB?: number | undefined;
  now?: () => Date;
}

/** Writes the rejection record of an upload: what `mass push` and the uploader read. */
export async function writeRejection(store: ModelRepository, object: UploadedObject, reason: string, now: Date): Promise<UploadOutcome> {
  const key = rejectionKey(object.key);
  await store.objects.put(key, JSON.stringify({ upload: object.key, eTag: object.eTag ?? null, reason, rejected: now.toISOString() }, null, 2), { contentType: 'application/json' });
  return { status: 'rejected', reason, rejectionKey: key };
}

/**
 * Registers one upload under incoming/: a redelivered event for an upload already registered does
 * nothing; a bad upload registers nothing, takes no version number, and leaves a rejection record
 * the uploader can read (`mass push` prints it). Whatever goes wrong while the model itself is
 * examined is the upload's answer, not a crash. The upload is removed only after the version is
 * registered.
 */
export async function registerUpload(store: ModelRepository, object: UploadedObject, options: RegisterUploadOptions = {}): Promise<UploadOutcome> {
  if (!object.key.startsWith(keys.incomingPrefix)) return { status: 'ignored', reason: `${object.key} is not under ${keys.incomingPrefix}` };
  const registry = store.registry;
  if (!registry) throw new Error('registering uploads needs the registry table (REGISTRY_TABLE)');
  const now = options.now ?? (() => new Date());
  const reject = (reason: string) => writeRejection(store, object, reason, now());

  const match = INCOMING_KEY.exec(object.key);
  if (!match) {
    return reject(`${shown(object.key)} is not where a model registers: upload it as incoming/<model>/<file>.onnx (a folder named after the model, then a file ending in .onnx)`);
  }
  const model = match[1]!;
  if (!isValidName(model)) {
    return reject(`invalid model name ${shown(model)} in the upload path: must match [a-z0-9][a-z0-9._-]{0,63}`);
  }
  const head = await store.objects.head(object.key);
  if (!head) return { status: 'ignored', reason: `${object.key} no longer exists` };
  const eTag = (head.eTag ?? object.eTag ?? '').replace(/"/g, '');
  let uploadId = `${store.bucket}/${object.key}@${eTag}`;

  let claimed = await registry.getUpload(uploadId);
  if (claimed?.state === 'registered' && head.lastModified && head.lastModified > new Date((await store.getManifest(claimed.model, claimed.version)).created)) {
    // The same bytes uploaded again to a key whose first upload was registered (and removed): a new
    // object, written after that version was made, so a new upload; its id carries its write time.
    uploadId = `${uploadId}@${head.lastModified.toISOString()}`;
    claimed = await registry.getUpload(uploadId);
  }
  if (claimed?.state === 'registered') {
    await store.deleteObject(object.key);
    return { status: 'already-registered', model: claimed.model, version: claimed.version };
  }
  // An uploader may ask for a version number (object metadata `version`); otherwise the counter picks.
  const requested = head.metadata.version;
  if (!claimed && requested !== undefined && !isCanonicalVersion(requested)) {
    return reject(`invalid version ${shown(requested)} in the upload's metadata: ${VERSION_RULE}`);
  }

  try {
    assertModelSize(head.bytes, options.maxModelBytes ?? DEFAULT_MAX_MODEL_BYTES);
  } catch (error) {
    if (error instanceof HttpError && error.expose) return reject(error.message);
    throw error;
  }
  // Streamed to a private folder, never held in memory whole; examined there before a version
  // number is taken, so a refused upload uses none.
  const folder = await candidateFolder();
  let examined: ExaminedModel;
  try {
    const downloaded = await store.downloadToFile(object.key, folder.path, head.bytes);
    if (!downloaded) {
      await folder.dispose();
      return { status: 'ignored', reason: `${object.key} no longer exists` };
    }
    const candidate = { path: folder.path, bytes: downloaded.bytes, dispose: folder.dispose };
    examined = await validateModel(candidate, options.maxModelBytes ?? DEFAULT_MAX_MODEL_BYTES, {
      sha256: downloaded.sha256,
      servingMemoryMiB: options.servingMemoryMiB ?? DEFAULT_SERVING_MEMORY_MIB,
    });
  } catch (error) {
    await folder.dispose();
    if (error instanceof HttpError && error.expose) return reject(error.message);
    // Anything else thrown while reading the model (a value no check foresaw) is still this upload's answer.
    return reject(`the model could not be examined: ${runtimeMessage(error)}`);
  }
  try {
    // A first delivery takes a version number and records it against the upload; a redelivery after
    // a crash part-way reuses that number, so the retried writes land on the same keys.
    let version = claimed?.version;
    if (!version) {
      const wanted = requested ?? (await registry.allocateVersion(model));
      const winner = await registry.claimUpload({ uploadId, model, version: wanted, state: 'pending' });
      version = winner?.version ?? wanted;
    }
    let manifest: ModelManifest;
    try {
      manifest = await pushModel(store, {
        name: model,
        version,
        examined,
        notes: decodeMetadata(head.metadata.notes ?? ''),
        tier: head.metadata.tier,
        source: uploadId,
        now,
      });
    } catch (error) {
      if (error instanceof HttpError && error.expose) return reject(error.message);
      throw error;
    }
    await registry.markUploadRegistered(uploadId);
    await store.deleteObject(object.key);
    return { status: 'registered', manifest };
  } finally {
    await examined.dispose();
  }
}

/**
 * The last word on an upload whose registration failed every retry (the register function's
 * on-failure destination calls this): a rejection record that says so, unless the upload did get
 * registered after all or was answered already.
 */
export async function recordRegistrationFailure(store: ModelRepository, object: UploadedObject, failure: string, now = new Date()): Promise<UploadOutcome> {
  const registry = store.registry;
  if (!object.key.startsWith(keys.incomingPrefix)) return { status: 'ignored', reason: `${object.key} is not under ${keys.incomingPrefix}` };
  const eTag = (object.eTag ?? '').replace(/"/g, '');
  const claimed = eTag && registry ? await registry.getUpload(`${store.bucket}/${object.key}@${eTag}`) : undefined;
  if (claimed?.state === 'registered') return { status: 'already-registered', model: claimed.model, version: claimed.version };
  const existing = await store.getObjectBytes(rejectionKey(object.key));
  if (existing) {
    const record = JSON.parse(Buffer.from(existing).toString('utf8')) as { reason: string };
    return { status: 'rejected', reason: record.reason, rejectionKey: rejectionKey(object.key) };
  }
  return writeRejection(store, object, `registration failed on the server after its retries (${failure.slice(0, 300)}); upload the model again, and if it fails again, report it`, now);
}

/** S3 user metadata is ASCII; clients (the CLI) send UTF-8 notes URI-encoded. */
function decodeMetadata(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
