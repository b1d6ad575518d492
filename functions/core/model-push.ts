import { ConflictError, NotFoundError } from './errors.ts';
import { keys } from './keys.ts';
import type { Lineage, ModelManifest, WarmupTensor } from './manifest.ts';
import type { ModelStore } from './model-store.ts';
import { assertValidName } from './names.ts';
import type { VersionRecord } from './registry/registry-table.ts';
import { stageArtifact, stagingKey } from './registry/staging.ts';
import { DEFAULT_MAX_MODEL_BYTES, validateModel } from './registry/validation.ts';
import { sha256Hex } from './hash.ts';

export interface PushModelInput {
  name: string;
  /** Defaults to the next number from the registry's counter. */
  version?: string | undefined;
  bytes: Uint8Array;
  notes?: string | undefined;
  tier?: string | undefined;
  warmup?: WarmupTensor[] | undefined;
  /** Where this version came from when our own code derived it (quantization, for example). */
  lineage?: Lineage | null | undefined;
  /** The upload it came from (bucket/key@etag), for the version record. */
  source?: string | undefined;
  maxBytes?: number | undefined;
  now?: () => Date;
}

/**
 * Registers a model version: validates it, takes the next version number (an atomic counter in the
 * registry table, so concurrent registrations never share one), stages the pre-optimized artifact,
 * writes model file, staged artifact and manifest (the manifest last: a version exists for readers only
 * once it does), records the version and announces it. Registering the same bytes under the same
 * version again changes nothing.
 */
export async function pushModel(store: ModelStore, input: PushModelInput): Promise<ModelManifest> {
  const name = assertValidName(input.name, 'model name');
  // What is stored and served is the admitted graph: the upload, or its non-tensor boundaries mapped.
  const { bytes, signature } = await validateModel(input.bytes, input.maxBytes ?? DEFAULT_MAX_MODEL_BYTES);
  const version = input.version !== undefined ? assertValidName(input.version, 'version') : await nextVersion(store, name);
  if (input.version !== undefined && store.registry && /^\d+$/.test(version)) await store.registry.reserveVersion(name, Number(version));

  const existing = await store.getManifest(name, version).catch((error: unknown) => {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  });
  if (existing) {
    if (existing.sha256 === signature.sha256) {
      // The same file again (a retry after a crash part-way, or a repeated push): make sure the
      // version is recorded, write nothing else.
      await store.registry?.putVersion(versionRecord(existing, input.source));
      return existing;
    }
    throw new ConflictError(`model '${name}' already has a version '${version}' with different content; versions are immutable`);
  }

  const staged = await stageUnlessUnsupported(bytes);
  const key = stagingKey();
  const manifest: ModelManifest = {
    name,
    version,
    format: 'onnx',
    ...signature,
    ...(input.tier ? { tier: input.tier } : {}),
    lineage: input.lineage ?? null,
    notes: input.notes ?? '',
    created: (input.now ?? (() => new Date()))().toISOString(),
    staged: staged ? { [key]: { sha256: sha256Hex(staged), bytes: staged.length } } : {},
    ...(input.warmup ? { warmup: input.warmup } : {}),
  };
  await Promise.all([
    store.putObjectBytes(keys.modelFile(name, version), bytes),
    ...(staged ? [store.putObjectBytes(keys.staged(name, version, key), staged)] : []),
  ]);
  await store.putManifest(manifest);
  await store.registry?.putVersion(versionRecord(manifest, input.source));
  await store.events?.publish({
    type: 'ModelVersionRegistered',
    model: name,
    version,
    notes: manifest.notes,
    lineage: manifest.lineage,
    at: manifest.created,
  });
  return manifest;
}

/**
 * onnxruntime runs graphs with optional values but cannot save them in its ORT format ("We do not
 * support type [9] for now"): such a version has no staged artifact and is served from model.onnx,
 * as on a server whose staging key differs. Any other staging failure fails the registration.
 */
async function stageUnlessUnsupported(bytes: Uint8Array): Promise<Uint8Array | undefined> {
  try {
    return await stageArtifact(bytes);
  } catch (error) {
    if (error instanceof Error && /^We do not support type \[\d+\] for now/.test(error.message)) return undefined;
    throw error;
  }
}

function versionRecord(manifest: ModelManifest, source: string | undefined): VersionRecord {
  return {
    model: manifest.name,
    version: manifest.version,
    status: 'registered',
    sha256: manifest.sha256,
    bytes: manifest.bytes,
    notes: manifest.notes,
    lineage: manifest.lineage,
    created: manifest.created,
    ...(source ? { source } : {}),
  };
}

async function nextVersion(store: ModelStore, name: string): Promise<string> {
  if (store.registry) return store.registry.allocateVersion(name);
  const versions = await store.listVersions(name);
  return String(versions.reduce((max, v) => (/^\d+$/.test(v) ? Math.max(max, Number(v)) : max), 0) + 1);
}
