import type { InferenceSession, Tensor } from '../onnx/ort.ts';
import { BadRequestError, InferenceRuntimeError, IntegrityError, NotFoundError, NotReadyError } from '../platform/errors.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { ortTensor, type LoadedModel, type ModelSessions } from '../sessions/model-sessions.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { classCountOf, classify, metadataLabels, modelBatches, tritonModelConfig, type TritonModelConfig } from '../v2/triton-extensions.ts';
import type { BootRegistryRead } from '../coldstart/boot-fetch.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName, assertVersionOrAlias } from '../artifacts/names.ts';
import type { AliasRecord } from '../registry/registry-table.ts';
import { chooseRoute, DEFAULT_ALIAS, defaultVersion } from '../registry/routing.ts';
import { DATATYPES, v2DatatypeOf } from '../v2/datatypes.ts';
import type { DecodedInferRequest, InferResponse, ResponseTensor } from '../v2/codec.ts';
import type { TensorMetadata } from '../v2/schemas.ts';
import { PipelineServing } from '../pipelines/serving.ts';

export const SERVER_NAME = 'ai-mass';
export const PLATFORM = 'onnx_onnxv1';
export const EXTENSIONS = ['binary_tensor_data', 'classification', 'model_configuration'] as const;
export { DEFAULT_ALIAS };
export const DEFAULT_ALIAS_TTL_MS = 5_000;

interface ModelState {
  versions: string[];
  /** The versions a user uploaded: where a request without a version goes when there is no default alias. */
  uploaded: string[];
  aliases: Map<string, AliasRecord>;
  at: number;
}

/** Triton's platform name for a model composed of others (a pipeline's version). */
export const PIPELINE_PLATFORM = 'ensemble';

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: typeof PLATFORM | typeof PIPELINE_PLATFORM;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export interface InferenceResult {
  response: InferResponse;
  binaryOutputs: Set<string>;
  model: Pick<LoadedModel, 'name' | 'version'>;
  /** The manifest of the version that answered (a model's or a pipeline's): what data capture reads its settings from. */
  manifest: ModelManifest;
}

export interface InferenceServiceOptions {
  store: ModelRepository;
  sessions: ModelSessions;
  serviceVersion: string;
  /** How long versions and aliases are reused before the registry is read again. */
  aliasTtlMs?: number;
  /** The alias a request without a version goes to, when the model has it. */
  defaultAlias?: string;
  now?: () => number;
  log?: (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
  /** The boot fetch's registry reads of models pre-warmed by name (boot-fetch.ts), each taken once. */
  bootRegistry?: ReadonlyMap<string, Promise<BootRegistryRead | undefined>> | undefined;
}

/** The V2 protocol's operations, free of any transport: the handler, CLI and tests call these. */
export class InferenceService {
  private readonly options: InferenceServiceOptions;
  private readonly states = new Map<string, ModelState>();
  /** Registry reads in flight, with when each started (the `at` its state will carry). */
  private readonly stateReads = new Map<string, { at: number; read: Promise<ModelState> }>();
  private preload: Promise<void> = Promise.resolve();
  private preloadFailed: string[] = [];
  private readonly preloadReasons = new Map<string, string>();
  /** Class labels by loaded model, read once (manifest, else the model's metadata_props). */
  private readonly labels = new WeakMap<LoadedModel, Promise<Record<string, string[]> | string[] | undefined>>();
  private preloadDone = true;
  private lastPreloadAt = 0;
  private readonly bootReads: Map<string, Promise<BootRegistryRead | undefined>>;
  private readonly pipelines: PipelineServing;

  constructor(options: InferenceServiceOptions) {
    this.options = options;
    this.bootReads = new Map(options.bootRegistry ?? []);
    // A pipeline's steps load as requests for their models would: versions, aliases, canaries, one session each.
    this.pipelines = new PipelineServing({ store: options.store, loadModel: (model, version, key) => this.loadModel(model, version, key), runtimeFailure });
  }

  serverMetadata() {
    return { name: SERVER_NAME, version: this.options.serviceVersion, extensions: [...EXTENSIONS] };
  }

  /** Ready when every pre-warmed model has a session. */
  isReady(): boolean {
    return this.preloadDone && this.preloadFailed.length === 0;
  }

  /**
   * Ready, after retrying pre-warmed models that failed (at most every `retryMs`): a model that was
   * missing or unreadable at init may be there now, and a readiness probe is what should find out.
   */
  async checkReady(retryMs = 10_000): Promise<boolean> {
    await this.preload;
    const now = (this.options.now ?? Date.now)();
    if (this.preloadFailed.length > 0 && now - this.lastPreloadAt >= retryMs) await this.preloadModels([...this.preloadFailed]);
    return this.isReady();
  }

  notReadyReason(): string {
    if (!this.preloadDone) return 'models are still loading';
    return `pre-warmed models failed to load: ${this.preloadFailed.map((ref) => `${ref} (${this.preloadReasons.get(ref) ?? 'unknown reason'})`).join(', ')}`;
  }

  /**
   * Loads the configured models ("name" or "name:version"); awaited during Lambda init. A failure is
   * recorded, not thrown: the environment stays up, reports not ready, and retries on demand.
   */
  preloadModels(refs: readonly string[]): Promise<void> {
    this.lastPreloadAt = (this.options.now ?? Date.now)();
    this.preloadDone = false;
    this.preloadFailed = [];
    this.preloadReasons.clear();
    this.preload = Promise.all(
      refs.map(async (ref) => {
        const [name, version] = ref.split(':') as [string, string | undefined];
        try {
          const booted = await this.takeBootRead(name); // a pinned version's read only seeds the cache
          await this.load(name, version ?? booted, undefined, { prefetch: true });
        } catch (error) {
          this.preloadFailed.push(ref);
          this.preloadReasons.set(ref, runtimeMessage(error));
          this.options.log?.('error', 'pre-warm failed', { model: name, version, error: (error as Error).message });
        }
      }),
    ).then(() => {
      this.preloadDone = true;
      this.options.store.discardPrefetches(); // any not taken (an artifact the manifest does not name) only holds memory
    });
    return this.preload;
  }

  /**
   * The version the boot fetch chose for a model pre-warmed by name, its registry read kept as this
   * model's first cached state (as a read of our own would be); undefined when there is none.
   */
  private async takeBootRead(name: string): Promise<string | undefined> {
    const read = this.bootReads.get(name);
    this.bootReads.delete(name);
    const booted = await read?.catch(() => undefined);
    if (!booted || this.states.has(name)) return undefined;
    this.states.set(name, { versions: booted.versions, uploaded: booted.uploaded, aliases: booted.aliases, at: booted.at });
    return booted.version;
  }

  /**
   * The version a request goes to. An explicit segment is a version, or else an alias (routed by
   * weight, sticky per caller when a key is given); no segment means the default alias when the
   * model has one, else its highest version. Versions and aliases are cached for `aliasTtlMs`, the
   * bound on how long a warm environment keeps serving a route that was just changed.
   */
  async resolveVersion(name: string, versionOrAlias?: string, stickyKey?: string): Promise<string> {
    assertValidName(name, 'model name');
    if (versionOrAlias !== undefined) assertVersionOrAlias(versionOrAlias);
    let state = await this.modelState(name);
    if (versionOrAlias !== undefined && !state.versions.includes(versionOrAlias) && !state.aliases.has(versionOrAlias)) {
      state = await this.modelState(name, true); // registered since the last look?
    }
    if (versionOrAlias !== undefined) {
      if (state.versions.includes(versionOrAlias)) return versionOrAlias;
      const alias = state.aliases.get(versionOrAlias);
      if (alias) return chooseRoute(alias.routes, stickyKey);
      if (state.versions.length === 0) throw new NotFoundError(`unknown model '${name}'`);
      throw new NotFoundError(`model '${name}' has no version '${versionOrAlias}'`);
    }
    const version = defaultVersion(state.uploaded, state.aliases, this.options.defaultAlias ?? DEFAULT_ALIAS, stickyKey);
    if (!version) throw new NotFoundError(`unknown model '${name}'`);
    return version;
  }

  /**
   * A segment not known as an alias is most often a version, and its manifest answers without the
   * registry. A request reads the registry alongside (its answer stays cached for the requests that
   * name no version); a pre-warm does not: at init that read's SDK work was measured on the cold
   * start's critical path, and the version it loads needs none.
   */
  private async explicitVersionManifest(name: string, segment: string | undefined, prefetch: boolean): Promise<ModelManifest | undefined> {
    if (segment === undefined) return undefined;
    assertValidName(name, 'model name');
    assertValidName(segment, 'version');
    const cached = this.states.get(name);
    if (cached?.aliases.has(segment)) return undefined;
    const loaded = this.options.sessions.loadedModel(name, segment)?.manifest ?? this.pipelines.loadedManifest(name, segment);
    if (loaded) return loaded;
    if (!cached && !prefetch) void this.modelState(name).catch(() => undefined);
    if (prefetch) this.options.sessions.prefetch(name, segment); // an alias segment only costs a 404
    try {
      return await this.options.store.getManifest(name, segment, { listedAsRegistered: cached?.versions.includes(segment) ?? false });
    } catch (error) {
      if (error instanceof NotFoundError) return undefined; // an alias, or nothing: resolveVersion says which
      throw error;
    }
  }

  /**
   * Versions (lowest first) and aliases of a model, from the registry table, used for aliasTtlMs
   * after the read that gave them started. Past half that, a request still gets the cached state
   * but starts the next read in the background, so steady traffic never waits on the registry and
   * the bound holds: a route is never used once it is aliasTtlMs old.
   */
  private async modelState(name: string, refresh = false): Promise<ModelState> {
    const now = (this.options.now ?? Date.now)();
    const ttl = this.options.aliasTtlMs ?? DEFAULT_ALIAS_TTL_MS;
    const cached = this.states.get(name);
    const inFlight = this.stateReads.get(name);
    // A read that started longer ago than the bound (an environment frozen mid-read) would be stale on arrival.
    const joinable = inFlight && now - inFlight.at < ttl ? inFlight : undefined;
    if (!refresh && cached && now - cached.at < ttl) {
      if (now - cached.at >= ttl / 2 && !joinable) {
        this.readState(name, now).catch((error: Error) => this.options.log?.('warn', 'registry refresh failed; the cached routes stay in use', { model: name, error: error.message }));
      }
      return cached;
    }
    // One read at a time per model: a cold start's background read and its first request share it.
    if (joinable && !refresh) return joinable.read;
    return this.readState(name, now);
  }

  private readState(name: string, at: number): Promise<ModelState> {
    const registry = this.options.store.registry;
    const read = Promise.all([this.options.store.listRoutableVersions(name), registry ? registry.listAliases(name) : Promise.resolve([])])
      .then(([{ versions, uploaded }, aliases]) => {
        const state = { versions, uploaded, aliases: new Map(aliases.map((a) => [a.alias, a])), at };
        if ((this.states.get(name)?.at ?? -Infinity) <= at) this.states.set(name, state); // never over a newer read
        return state;
      })
      .finally(() => {
        if (this.stateReads.get(name)?.read === read) this.stateReads.delete(name);
      });
    this.stateReads.set(name, { at, read });
    return read;
  }

  /** `prefetch` (preload at init): the staged artifact's download starts alongside the manifest read. */
  private async manifestOf(name: string, version?: string, stickyKey?: string, { prefetch = false } = {}): Promise<ModelManifest> {
    const direct = await this.explicitVersionManifest(name, version, prefetch);
    if (direct) return direct;
    const resolved = await this.resolveVersion(name, version, stickyKey);
    const loaded = this.options.sessions.loadedModel(name, resolved)?.manifest ?? this.pipelines.loadedManifest(name, resolved);
    if (loaded) return loaded;
    if (prefetch && resolved !== version) this.options.sessions.prefetch(name, resolved);
    try {
      return await this.options.store.getManifest(name, resolved, { listedAsRegistered: true }); // resolveVersion answered from the registry's versions or routes
    } catch (error) {
      if (error instanceof NotFoundError && version === undefined) throw new NotFoundError(`unknown model '${name}'`);
      throw error;
    }
  }

  async modelMetadata(name: string, version?: string): Promise<ModelMetadata> {
    const manifest = await this.manifestOf(name, version);
    const versions = version === undefined ? (await this.modelState(name)).versions : [manifest.version];
    return { name, versions, platform: manifest.format === 'pipeline' ? PIPELINE_PLATFORM : PLATFORM, inputs: manifest.inputs, outputs: manifest.outputs };
  }

  /** A model's session or a pipeline with every step's sessions: what readiness and pre-warming load. */
  async load(name: string, version?: string, stickyKey?: string, options: { prefetch?: boolean } = {}): Promise<Pick<LoadedModel, 'name' | 'version'>> {
    const manifest = await this.manifestOf(name, version, stickyKey, options);
    return manifest.format === 'pipeline' ? this.pipelines.load(manifest) : this.sessionOf(manifest);
  }

  async loadModel(name: string, version?: string, stickyKey?: string, options: { prefetch?: boolean } = {}): Promise<LoadedModel> {
    const manifest = await this.manifestOf(name, version, stickyKey, options);
    if (manifest.format === 'pipeline') throw new BadRequestError(`'${name}' version '${manifest.version}' is a pipeline, not a model`);
    return this.sessionOf(manifest);
  }

  private async sessionOf(manifest: ModelManifest): Promise<LoadedModel> {
    const name = manifest.name;
    try {
      return await this.options.sessions.get(manifest);
    } catch (error) {
      if (error instanceof IntegrityError) {
        this.options.log?.('error', 'model refused: integrity check failed', { model: name, version: manifest.version, error: error.message });
        throw new NotReadyError(`model '${name}' version '${manifest.version}' is not available: its file failed the integrity check`, { cause: error });
      }
      throw error;
    }
  }

  /** Versions with status, notes and lineage, and the aliases that route to them. */
  async versionDetails(name: string) {
    assertValidName(name, 'model name');
    const state = await this.modelState(name, true);
    if (state.versions.length === 0) throw new NotFoundError(`unknown model '${name}'`);
    const registry = this.options.store.registry;
    const records = registry ? await registry.listVersions(name) : [];
    const versions = await Promise.all(
      state.versions.map(async (version) => {
        const record = records.find((r) => r.version === version);
        const manifest = record ? undefined : await this.options.store.getManifest(name, version);
        return {
          version,
          status: record?.status ?? 'registered',
          notes: record?.notes ?? manifest?.notes ?? '',
          lineage: record?.lineage ?? manifest?.lineage ?? null,
          created: record?.created ?? manifest?.created ?? '',
          aliases: [...state.aliases.values()].filter((a) => a.routes.some((r) => r.version === version && r.weight > 0)).map((a) => a.alias),
        };
      }),
    );
    const aliases = [...state.aliases.values()].map((a) => ({ alias: a.alias, routes: a.routes, revision: a.revision, updated: a.updated }));
    return { name, versions, aliases };
  }

  /** Triton's model configuration of a version (the model-configuration extension). */
  async modelConfig(name: string, version?: string): Promise<TritonModelConfig> {
    const manifest = await this.manifestOf(name, version);
    return tritonModelConfig(name, manifest.version, manifest.inputs, manifest.outputs);
  }

  async infer(name: string, version: string | undefined, request: DecodedInferRequest, stickyKey?: string): Promise<InferenceResult> {
    const manifest = await this.manifestOf(name, version, stickyKey);
    if (manifest.format === 'pipeline') return { ...(await this.pipelines.infer(manifest, request, stickyKey)), manifest };
    const model = await this.sessionOf(manifest);
    const feeds = buildFeeds(model, request);
    // No filter, or an empty one, means every output the model has.
    const requested = request.outputs?.length ? request.outputs : [...model.outputs.keys()].map((n) => ({ name: n, binary: request.binaryDataOutput, parameters: undefined }));
    for (const o of requested) {
      if (!model.outputs.has(o.name)) {
        throw new BadRequestError(`unknown output '${o.name}'; model '${name}' has outputs: ${[...model.outputs.keys()].join(', ')}`);
      }
    }
    const classCounts = new Map(requested.map((o) => [o.name, classCountOf(o.name, o.parameters)] as const));
    let results: InferenceSession.OnnxValueMapType;
    try {
      results = await model.session.run(feeds, requested.map((o) => o.name));
    } catch (error) {
      throw runtimeFailure(model, error);
    }
    const batched = modelBatches([...model.inputs.values()], [...model.outputs.values()]);
    const labels = [...classCounts.values()].some((c) => c !== undefined) ? await this.labelsOf(model) : undefined;
    const outputs = requested.map((o): ResponseTensor => {
      const tensor = results[o.name] as Tensor;
      const output = { name: o.name, datatype: v2DatatypeOf(tensor.type)!, shape: [...tensor.dims], data: tensor.data as ResponseTensor['data'] };
      const count = classCounts.get(o.name);
      if (count === undefined) return output;
      const classes = classify(output, count, batched, Array.isArray(labels) ? labels : labels?.[o.name]);
      return { name: o.name, datatype: 'BYTES', shape: classes.shape, data: classes.data };
    });
    return {
      model,
      manifest,
      binaryOutputs: new Set(requested.filter((o) => o.binary).map((o) => o.name)),
      response: {
        model_name: name,
        model_version: model.version,
        ...(request.id !== undefined ? { id: request.id } : {}),
        outputs,
      },
    };
  }

  /** Labels for the classification extension: the manifest's, else the ONNX file's metadata_props (read once). */
  private labelsOf(model: LoadedModel): Promise<Record<string, string[]> | string[] | undefined> {
    let labels = this.labels.get(model);
    if (!labels) {
      labels = model.manifest.labels
        ? Promise.resolve(model.manifest.labels)
        : (model.artifact === 'onnx' ? Promise.resolve(model.bytes) : this.options.store.getModelBytes(model.manifest).then((m) => m.bytes)).then(metadataLabels);
      labels.catch(() => this.labels.delete(model));
      this.labels.set(model, labels);
    }
    return labels;
  }
}

/**
 * What a failed session.run means. Inputs already match the signature (names, datatypes, declared
 * dimensions), so a runtime failure is the server's (500, with the runtime's cleaned message), except
 * where onnxruntime's own input checks say the input contradicts the model (then 400).
 */
const INPUT_REFUSALS = /Got invalid dimensions for input|Invalid rank for input|Unexpected input data type|input with name: '.*' is not expected|Missing Input:/;
/**
 * Answers that this input gives and V2 cannot carry through the mapping of non-tensor outputs
 * (onnx/non-tensor.ts): an optional output left empty, a sequence that is empty or ragged where it is
 * stacked into one tensor. The model ran as designed; the request is what the README documents as a 400.
 */
const UNCARRIED_ANSWERS = /OptionalGetElement on an optional type OrtValue which contains no data|running ConcatFromSequence node/;

export function runtimeFailure(model: Pick<LoadedModel, 'name' | 'version'>, error: unknown): Error {
  const message = runtimeMessage(error);
  if (INPUT_REFUSALS.test(message) || UNCARRIED_ANSWERS.test(message)) {
    return new BadRequestError(`model '${model.name}' version '${model.version}' rejected the input: ${message}`, { cause: error });
  }
  return new InferenceRuntimeError(model.name, model.version, `model '${model.name}' version '${model.version}' failed while running: ${message}`, { cause: error });
}

function buildFeeds(model: LoadedModel, request: DecodedInferRequest): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const input of request.inputs) {
    const spec = model.inputs.get(input.name);
    if (!spec) {
      throw new BadRequestError(`unknown input '${input.name}'; model '${model.name}' has inputs: ${[...model.inputs.keys()].join(', ')}`);
    }
    if (input.datatype !== spec.datatype) {
      throw new BadRequestError(`input '${input.name}' has datatype ${input.datatype} but the model expects ${spec.datatype}`);
    }
    const fits = input.shape.length === spec.shape.length && spec.shape.every((d, i) => d < 0 || d === input.shape[i]);
    if (!fits) {
      throw new BadRequestError(`input '${input.name}' has shape [${input.shape.join(',')}] but the model expects [${spec.shape.join(',')}] (-1 is any size)`);
    }
    feeds[input.name] = ortTensor(DATATYPES[spec.datatype].ort, input.data, input.shape);
  }
  const missing = [...model.inputs.keys()].filter((n) => !(n in feeds));
  if (missing.length > 0) throw new BadRequestError(`missing input${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
  return feeds;
}
