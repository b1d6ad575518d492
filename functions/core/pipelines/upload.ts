import { HttpError } from '../platform/errors.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { isValidName, shown } from '../artifacts/names.ts';
import { writeRejection, type UploadedObject, type UploadOutcome } from '../registry/register-upload.ts';
import { checkPipeline, pushPipeline } from './registry.ts';

/** incoming/<name>/pipeline.json registers a pipeline version of <name>. */
export const PIPELINE_UPLOAD_KEY = /^incoming\/([^/]+)\/pipeline\.json$/;
/** A spec is a few kilobytes; anything far larger is not one. */
export const MAX_PIPELINE_BYTES = 256 * 1024;

export function isPipelineUpload(key: string): boolean {
  return PIPELINE_UPLOAD_KEY.test(key);
}

/**
 * Registers an uploaded pipeline.json as registerUpload does a model: a redelivered event for an
 * upload already registered does nothing; a refused spec takes no version number and leaves a
 * rejection record that names the step and tensor; the upload is removed once registered.
 */
export async function registerPipelineUpload(store: ModelRepository, object: UploadedObject, now: () => Date = () => new Date()): Promise<UploadOutcome> {
  const registry = store.registry;
  if (!registry) throw new Error('registering uploads needs the registry table (REGISTRY_TABLE)');
  const reject = (reason: string) => writeRejection(store, object, reason, now());
  const name = PIPELINE_UPLOAD_KEY.exec(object.key)?.[1];
  if (name === undefined) return { status: 'ignored', reason: `${object.key} is not incoming/<name>/pipeline.json` };
  if (!isValidName(name)) return reject(`invalid pipeline name ${shown(name)} in the upload path: must match [a-z0-9][a-z0-9._-]{0,63}`);
  const head = await store.objects.head(object.key);
  if (!head) return { status: 'ignored', reason: `${object.key} no longer exists` };
  const uploadId = `${store.bucket}/${object.key}@${(head.eTag ?? object.eTag ?? '').replace(/"/g, '')}`;
  const claimed = await registry.getUpload(uploadId);
  if (claimed?.state === 'registered') {
    await store.deleteObject(object.key);
    return { status: 'already-registered', model: claimed.model, version: claimed.version };
  }
  if (head.bytes > MAX_PIPELINE_BYTES) return reject(`pipeline.json is ${head.bytes} bytes, over the limit of ${MAX_PIPELINE_BYTES}`);
  const bytes = await store.getObjectBytes(object.key);
  if (!bytes) return { status: 'ignored', reason: `${object.key} no longer exists` };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    return reject(`pipeline.json is not valid JSON: ${(error as Error).message}`);
  }
  try {
    // Checked before a version number is taken, so a refused spec uses none.
    await checkPipeline(store, raw);
    let version = claimed?.version;
    if (!version) {
      const wanted = await registry.allocateVersion(name);
      version = (await registry.claimUpload({ uploadId, model: name, version: wanted, state: 'pending' }))?.version ?? wanted;
    }
    const { manifest } = await pushPipeline(store, { name, version, spec: raw, source: uploadId, now });
    await registry.markUploadRegistered(uploadId);
    await store.deleteObject(object.key);
    return { status: 'registered', manifest };
  } catch (error) {
    if (error instanceof HttpError && error.expose) return reject(error.message);
    throw error;
  }
}
