import { ConflictError } from './errors.ts';
import { keys } from './keys.ts';
import type { Lineage, ModelManifest, WarmupTensor } from './manifest.ts';
import type { ModelStore } from './model-store.ts';
import { assertValidName } from './names.ts';
import { readModelSignature } from './signature.ts';

export interface PushModelInput {
  name: string;
  /** Defaults to one above the highest existing version. */
  version?: string | undefined;
  bytes: Uint8Array;
  notes?: string | undefined;
  tier?: string | undefined;
  warmup?: WarmupTensor[] | undefined;
  /** Where this version came from when our own code derived it (quantization, for example). */
  lineage?: Lineage | null | undefined;
  now?: () => Date;
}

/**
 * Writes a model version straight to the bucket: the model file first, the manifest last, because a
 * version exists for readers only once its manifest does. The upload-triggered registry (with its
 * conditional version counter) builds on the same manifest.
 */
export async function pushModel(store: ModelStore, input: PushModelInput): Promise<ModelManifest> {
  const name = assertValidName(input.name, 'model name');
  const signature = await readModelSignature(input.bytes);
  const existing = await store.listVersions(name);
  const version = input.version !== undefined ? assertValidName(input.version, 'version') : String(highestNumber(existing) + 1);
  if (existing.includes(version)) {
    const current = await store.getManifest(name, version);
    if (current.sha256 === signature.sha256) return current; // the same file again: nothing to do
    throw new ConflictError(`model '${name}' already has a version '${version}' with different content; versions are immutable`);
  }
  const manifest: ModelManifest = {
    name,
    version,
    format: 'onnx',
    ...signature,
    ...(input.tier ? { tier: input.tier } : {}),
    lineage: input.lineage ?? null,
    notes: input.notes ?? '',
    created: (input.now ?? (() => new Date()))().toISOString(),
    ...(input.warmup ? { warmup: input.warmup } : {}),
  };
  await store.putObjectBytes(keys.modelFile(name, version), input.bytes);
  await store.putManifest(manifest);
  return manifest;
}

function highestNumber(versions: string[]): number {
  return versions.reduce((max, v) => (/^\d+$/.test(v) ? Math.max(max, Number(v)) : max), 0);
}
