import { ConflictError, NotFoundError } from '../platform/errors.ts';
import { keys } from '../artifacts/keys.ts';
import type { Lineage, ModelManifest, WarmupTensor } from '../artifacts/manifest.ts';
import type { ModelRepository } from './repository.ts';
import { assertValidName, assertValidVersion, isCanonicalVersion } from '../artifacts/names.ts';
import type { ModelSignature } from '../artifacts/signature.ts';
import type { VersionRecord } from './registry-table.ts';
import type { ExaminedModel } from '../artifacts/candidate-session.ts';
import { DEFAULT_MAX_MODEL_BYTES, validateModel } from '../artifacts/validation.ts';

export interface PushModelInput {
  name: string;
  /** Defaults to the next number from the registry's counter. */
  version?: string | undefined;
  /** The model file; may be left out when `examined` is given (its file is uploaded then). */
  bytes?: Uint8Array | undefined;
  notes?: string | undefined;
  tier?: string | undefined;
  warmup?: WarmupTensor[] | undefined;
  /** Where this version came from when our own code derived it (quantization, for example). */
  lineage?: Lineage | null | undefined;
  /** The upload it came from (bucket/key@etag), for the version record. */
  source?: string | undefined;
  maxBytes?: number | undefined;
  /** The result of validateModel on these bytes, when the caller validated them already (it disposes of it). */
  examined?: ExaminedModel | undefined;
  now?: () => Date;
}

/**
 * Registers a model version: validates it, takes the next version number (an atomic counter in the
 * registry table, so concurrent registrations never share one), stages the pre-optimized artifact,
 * writes model file, staged artifact and manifest (the manifest last: a version exists for readers only
 * once it does), records the version and announces it. Registering the same bytes under the same
 * version again changes nothing.
 */
export async function pushModel(store: ModelRepository, input: PushModelInput): Promise<ModelManifest> {
  const name = assertValidName(input.name, 'model name');
  if (input.version !== undefined) assertValidVersion(input.version);
  if (!input.examined && !input.bytes) throw new Error('pushModel needs the model: bytes, or an examined model');
  const examined = input.examined ?? (await validateModel(input.bytes!, input.maxBytes ?? DEFAULT_MAX_MODEL_BYTES));
  try {
    return await pushExamined(store, name, input, examined);
  } finally {
    if (!input.examined) await examined.dispose();
  }
}

async function pushExamined(store: ModelRepository, name: string, input: PushModelInput, examined: ExaminedModel): Promise<ModelManifest> {
  const { signature, staged } = examined;
  const version = input.version ?? (await nextVersion(store, name));
  if (input.version !== undefined) await store.registry?.reserveVersion(name, Number(version));

  const existing = await store.readManifestObject(name, version);
  if (existing) {
    if (existing.sha256 === signature.sha256) {
      // The same file again (a retry after a crash part-way, or a repeated push): make sure the
      // version is recorded, write nothing else.
      await store.registry?.putVersion(versionRecord(existing, input.source));
      return existing;
    }
    throw new ConflictError(`model '${name}' already has a version '${version}' with different content; versions are immutable`);
  }

  const warmup = input.warmup ?? (input.lineage ? await inheritedWarmup(store, name, input.lineage.sourceVersion, signature) : undefined);
  const manifest: ModelManifest = {
    name,
    version,
    format: 'onnx',
    ...signature,
    ...(input.tier ? { tier: input.tier } : {}),
    lineage: input.lineage ?? null,
    notes: input.notes ?? '',
    created: (input.now ?? (() => new Date()))().toISOString(),
    staged: staged ? { [staged.key]: { sha256: staged.sha256, bytes: staged.bytes } } : {},
    ...(warmup ? { warmup } : {}),
  };
  // The candidate's file, not the caller's bytes: it is the served graph (non-tensor boundaries mapped).
  await Promise.all([
    store.putObjectFile(keys.modelFile(name, version), examined.modelFile),
    ...(staged ? [store.putObjectFile(keys.staged(name, version, staged.key), staged.path)] : []),
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
 * A variant (quantized, fine-tuned...) has the inputs of its source, so the source's warm-up request
 * fits it too: without it, the variant's first session would warm up on zeros, which some models refuse.
 */
async function inheritedWarmup(store: ModelRepository, name: string, sourceVersion: string, variant: ModelSignature): Promise<WarmupTensor[] | undefined> {
  const source = await store.getManifest(name, sourceVersion).catch((error: unknown) => {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  });
  const warmup = source?.warmup;
  // Only when every tensor still fits: a variant that changed an input's type (fp16 inputs) warms up on zeros.
  const fits = warmup?.every((t) => variant.inputs.some((i) => i.name === t.name && i.datatype === t.datatype));
  return fits ? warmup : undefined;
}

/** The registry record of a version whose files are written: the push's and a pipeline's registration. */
export function versionRecord(manifest: ModelManifest, source: string | undefined): VersionRecord {
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

async function nextVersion(store: ModelRepository, name: string): Promise<string> {
  if (store.registry) return store.registry.allocateVersion(name);
  const versions = await store.listVersions(name);
  return String(versions.filter(isCanonicalVersion).reduce((max, v) => Math.max(max, Number(v)), 0) + 1);
}
