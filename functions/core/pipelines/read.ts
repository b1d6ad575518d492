import { IntegrityError, NotFoundError } from '../platform/errors.ts';
import { sha256Hex } from '../platform/hash.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { parsePipelineSpec, type PipelineSpec } from './spec.ts';

// Apart from registry.ts so the inference bundle, which only reads specs, carries none of registration.

/** A pipeline version's spec, trusted only when its bytes hash to the manifest's sha256. */
export async function readPipelineSpec(store: ModelRepository, manifest: ModelManifest): Promise<PipelineSpec> {
  const bytes = await store.getObjectBytes(keys.pipelineFile(manifest.name, manifest.version));
  if (!bytes) throw new NotFoundError(`pipeline '${manifest.name}' version '${manifest.version}' has no pipeline.json`);
  if (sha256Hex(bytes) !== manifest.sha256) {
    throw new IntegrityError(`pipeline.json of '${manifest.name}' version '${manifest.version}' does not match its manifest's sha256`);
  }
  return parsePipelineSpec(JSON.parse(Buffer.from(bytes).toString('utf8')));
}
