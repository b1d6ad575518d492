import { sha256Hex } from '../platform/hash.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../platform/errors.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName, assertValidVersion, isCanonicalVersion } from '../artifacts/names.ts';
import { DEFAULT_ALIAS } from '../registry/routing.ts';
import { versionRecord } from '../registry/model-push.ts';
import { readPipelineSpec } from './read.ts';
import { parsePipelineSpec, stepTargets, type PipelineSpec, type StepTarget } from './spec.ts';
import { validatePipeline, type PipelineResolver, type ResolvedPipeline, type ResolvedTarget } from './validate.ts';

/** What a pipeline's manifest says of its producer: it was written by this code, not by an exporter. */
export const PIPELINE_PRODUCER = { name: 'ai-mass-pipeline', version: '1' } as const;

/**
 * Resolves step targets against the registry as serving would: a version must be registered (not
 * retired); an alias is followed to every route with traffic; no version means the default alias's
 * routes, else the highest uploaded version.
 */
export function storeResolver(store: ModelRepository, defaultAlias = DEFAULT_ALIAS): PipelineResolver {
  return {
    async resolve(target: StepTarget): Promise<ResolvedTarget> {
      const [{ versions, uploaded }, aliases] = await Promise.all([
        store.listRoutableVersions(target.model),
        store.registry ? store.registry.listAliases(target.model) : Promise.resolve([]),
      ]);
      if (versions.length === 0) return { problem: 'does not exist (no registered version)' };
      let chosen: string[];
      if (target.version === undefined) {
        const byDefault = aliases.find((a) => a.alias === defaultAlias);
        chosen = byDefault ? byDefault.routes.filter((r) => r.weight > 0).map((r) => r.version) : uploaded.slice(-1);
        if (chosen.length === 0) return { problem: `has no default route (no alias '${defaultAlias}' and no uploaded version)` };
      } else if (isCanonicalVersion(target.version)) {
        if (!versions.includes(target.version)) return { problem: 'does not exist or is retired' };
        chosen = [target.version];
      } else {
        const alias = aliases.find((a) => a.alias === target.version);
        if (!alias) return { problem: `has no version or alias '${target.version}'` };
        chosen = alias.routes.filter((r) => r.weight > 0).map((r) => r.version);
      }
      const manifests = await Promise.all(chosen.map((v) => store.getManifest(target.model, v, { listedAsRegistered: versions.includes(v) })));
      return { manifests };
    },
  };
}

export interface PushPipelineInput {
  name: string;
  /** The spec as the user sent it (checked here). */
  spec: unknown;
  version?: string | undefined;
  notes?: string | undefined;
  /** The upload it came from (bucket/key@etag), for the version record. */
  source?: string | undefined;
  now?: () => Date;
}

export interface PushedPipeline {
  manifest: ModelManifest;
  resolved: ResolvedPipeline;
  /** With `"fuse": true`: the fused model's version (lineage: this pipeline version and its steps). */
  fused?: { manifest: ModelManifest; maxAbsDiff: number; deduplicated: number } | undefined;
}

/** The lineage method of a fused pipeline's model version. */
export const FUSE_METHOD = 'pipeline-fuse';

/** Compiles a validated pipeline and checks it against the unfused steps; nothing is written. */
async function compileFused(store: ModelRepository, resolved: ResolvedPipeline, name: string) {
  // Loaded only for fused mode: onnxruntime and the ONNX writer stay out of every other registry call's init.
  const [{ fusePipeline, fuseRefusal }, { checkFusedEqual }] = await Promise.all([import('./fuse.ts'), import('./fuse-check.ts')]);
  const refusal = fuseRefusal(resolved.spec);
  if (refusal) throw new BadRequestError(`cannot fuse: ${refusal}`);
  const steps = new Map(
    await Promise.all(
      resolved.spec.steps.map(async (step) => {
        const target = stepTargets(step)[0]!; // one pinned model per step: fuseRefusal said so
        const manifest = await store.getManifest(target.model, target.version!);
        return [step.id, { manifest, bytes: (await store.getModelBytes(manifest)).bytes }] as const;
      }),
    ),
  );
  const { bytes, deduplicated } = fusePipeline(resolved.spec, resolved.order, new Map([...steps].map(([id, s]) => [id, s.bytes])), resolved.inputs, resolved.outputs);
  const { maxAbsDiff } = await checkFusedEqual({ name, version: '(unregistered)', spec: resolved.spec, order: resolved.order }, steps, bytes, resolved.inputs);
  return { bytes, deduplicated, maxAbsDiff };
}

/** The stored form of a spec: canonical JSON, so the same spec always has the same sha256. */
export function pipelineBytes(spec: PipelineSpec): Uint8Array {
  return Buffer.from(`${JSON.stringify(spec, null, 2)}\n`);
}

/**
 * Checks a pipeline and registers it as the next version of `name` (one counter with the model
 * versions of that name, so a pipeline can replace a model or stand behind its canary). Writes
 * pipeline.json, then the manifest (a version exists for readers once it does), records the version
 * and announces it. Nothing is written when the spec is refused.
 */
export async function pushPipeline(store: ModelRepository, input: PushPipelineInput): Promise<PushedPipeline> {
  const name = assertValidName(input.name, 'model name');
  if (input.version !== undefined) assertValidVersion(input.version);
  const spec = parsePipelineSpec(input.spec);
  const resolved = await validatePipeline(spec, storeResolver(store));
  // Compiled and compared before anything is written: a pipeline that cannot be fused registers nothing.
  const fused = spec.fuse ? await compileFused(store, resolved, name) : undefined;
  const bytes = pipelineBytes(spec);
  const sha256 = sha256Hex(bytes);
  const version = input.version ?? (store.registry ? await store.registry.allocateVersion(name) : String((await store.listVersions(name)).length + 1));
  if (input.version !== undefined) await store.registry?.reserveVersion(name, Number(version));
  const existing = await store.readManifestObject(name, version);
  if (existing) {
    if (existing.sha256 !== sha256) throw new ConflictError(`model '${name}' already has a version '${version}' with different content; versions are immutable`);
    await store.registry?.putVersion(versionRecord(existing, input.source));
    return { manifest: existing, resolved, ...(fused ? { fused: await pushFused(store, existing, resolved, fused) } : {}) };
  }
  const manifest: ModelManifest = {
    name,
    version,
    format: 'pipeline',
    sha256,
    bytes: bytes.byteLength,
    inputs: resolved.inputs,
    outputs: resolved.outputs,
    irVersion: 0,
    opset: 0,
    producer: { ...PIPELINE_PRODUCER },
    lineage: null,
    notes: input.notes ?? spec.description ?? '',
    created: (input.now ?? (() => new Date()))().toISOString(),
    staged: {},
  };
  await store.putObjectBytes(keys.pipelineFile(name, version), bytes, 'application/json');
  await store.putManifest(manifest);
  await store.registry?.putVersion(versionRecord(manifest, input.source));
  await store.events?.publish({ type: 'ModelVersionRegistered', model: name, version, notes: manifest.notes, lineage: null, at: manifest.created });
  return { manifest, resolved, ...(fused ? { fused: await pushFused(store, manifest, resolved, fused) } : {}) };
}

/**
 * The fused model as the next version of the pipeline's name, with lineage to the pipeline version
 * and its steps. Like every version the platform makes, it serves a request that names no version
 * only once promoted (`mass promote <name> <version>`). Registering the same pipeline again finds
 * the same fused bytes and writes nothing new.
 */
async function pushFused(store: ModelRepository, pipeline: ModelManifest, resolved: ResolvedPipeline, fused: { bytes: Uint8Array; deduplicated: number; maxAbsDiff: number }) {
  const lineage = { sourceVersion: pipeline.version, method: FUSE_METHOD, options: { steps: resolved.resolved } };
  const sha256 = sha256Hex(fused.bytes);
  const records = store.registry ? await store.registry.listVersions(pipeline.name) : [];
  const same = records.find((r) => r.sha256 === sha256 && r.lineage?.method === FUSE_METHOD && r.lineage.sourceVersion === pipeline.version);
  const { pushModel } = await import('../registry/model-push.ts');
  const manifest = await pushModel(store, {
    name: pipeline.name,
    ...(same ? { version: same.version } : {}),
    bytes: fused.bytes,
    lineage,
    notes: `pipeline version ${pipeline.version} fused into one graph`,
  });
  return { manifest, maxAbsDiff: fused.maxAbsDiff, deduplicated: fused.deduplicated };
}

/** Only checks a spec (what registration does before it takes a version number): its resolved form, or a 400. */
export async function checkPipeline(store: ModelRepository, raw: unknown): Promise<ResolvedPipeline> {
  return validatePipeline(parsePipelineSpec(raw), storeResolver(store));
}

export interface PipelineDescription {
  name: string;
  version: string;
  created: string;
  notes: string;
  inputs: ModelManifest['inputs'];
  outputs: ModelManifest['outputs'];
  spec: PipelineSpec;
  /** Every registered pipeline version of the name, lowest first. */
  versions: string[];
}

/**
 * A pipeline version as `GET /v2/pipelines/{name}` shows it: the given version, else the highest
 * registered version of the name that is a pipeline.
 */
export async function describePipeline(store: ModelRepository, name: string, version?: string): Promise<PipelineDescription> {
  assertValidName(name, 'model name');
  if (version !== undefined) assertValidVersion(version);
  const registered = await store.listVersions(name);
  const manifests = await Promise.all(registered.map((v) => store.getManifest(name, v, { listedAsRegistered: true })));
  const pipelines = manifests.filter((m) => m.format === 'pipeline');
  const manifest = version === undefined ? pipelines.at(-1) : pipelines.find((m) => m.version === version);
  if (!manifest) {
    throw new NotFoundError(version === undefined ? `no pipeline named '${name}'` : `'${name}' has no pipeline version '${version}'`);
  }
  return {
    name,
    version: manifest.version,
    created: manifest.created,
    notes: manifest.notes,
    inputs: manifest.inputs,
    outputs: manifest.outputs,
    spec: await readPipelineSpec(store, manifest),
    versions: pipelines.map((m) => m.version),
  };
}
