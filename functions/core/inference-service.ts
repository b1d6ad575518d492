import ort, { type InferenceSession, type Tensor } from './ort.ts';
import { BadRequestError, IntegrityError, NotFoundError, NotReadyError } from './errors.ts';
import type { ModelManifest } from './manifest.ts';
import type { LoadedModel, ModelSessions } from './model-sessions.ts';
import type { ModelStore } from './model-store.ts';
import { assertValidName } from './names.ts';
import { DATATYPES, v2DatatypeOf } from './v2/datatypes.ts';
import type { DecodedInferRequest, InferResponse, ResponseTensor } from './v2/codec.ts';
import type { TensorMetadata } from './v2/schemas.ts';

export const SERVER_NAME = 'ai-mass';
export const PLATFORM = 'onnx_onnxv1';
export const EXTENSIONS = ['binary_tensor_data'] as const;

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: typeof PLATFORM;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export interface InferenceResult {
  response: InferResponse;
  binaryOutputs: Set<string>;
  model: LoadedModel;
}

export interface InferenceServiceOptions {
  store: ModelStore;
  sessions: ModelSessions;
  serviceVersion: string;
  /** How long "latest version" answers are reused before the bucket is listed again. */
  latestTtlMs?: number;
  now?: () => number;
  log?: (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

/** The V2 protocol's operations, free of any transport: the handler, CLI and tests call these. */
export class InferenceService {
  private readonly options: InferenceServiceOptions;
  private readonly latest = new Map<string, { version: string; at: number }>();
  private preload: Promise<void> = Promise.resolve();
  private preloadFailed: string[] = [];
  private preloadDone = true;

  constructor(options: InferenceServiceOptions) {
    this.options = options;
  }

  serverMetadata() {
    return { name: SERVER_NAME, version: this.options.serviceVersion, extensions: [...EXTENSIONS] };
  }

  /** Ready when every pre-warmed model has a session. */
  isReady(): boolean {
    return this.preloadDone && this.preloadFailed.length === 0;
  }

  notReadyReason(): string {
    if (!this.preloadDone) return 'models are still loading';
    return `pre-warmed models failed to load: ${this.preloadFailed.join(', ')}`;
  }

  /**
   * Loads the configured models ("name" or "name:version"); awaited during Lambda init. A failure is
   * recorded, not thrown: the environment stays up, reports not ready, and retries on demand.
   */
  preloadModels(refs: readonly string[]): Promise<void> {
    this.preloadDone = false;
    this.preloadFailed = [];
    this.preload = Promise.all(
      refs.map(async (ref) => {
        const [name, version] = ref.split(':') as [string, string | undefined];
        try {
          await this.loadModel(name, version);
        } catch (error) {
          this.preloadFailed.push(ref);
          this.options.log?.('error', 'pre-warm failed', { model: name, version, error: (error as Error).message });
        }
      }),
    ).then(() => {
      this.preloadDone = true;
    });
    return this.preload;
  }

  async resolveVersion(name: string, version?: string): Promise<string> {
    assertValidName(name, 'model name');
    if (version !== undefined) return assertValidName(version, 'version');
    const now = (this.options.now ?? Date.now)();
    const cached = this.latest.get(name);
    if (cached && now - cached.at < (this.options.latestTtlMs ?? 30_000)) return cached.version;
    const versions = await this.options.store.listVersions(name);
    const highest = versions.at(-1);
    if (!highest) throw new NotFoundError(`unknown model '${name}'`);
    this.latest.set(name, { version: highest, at: now });
    return highest;
  }

  private async manifestOf(name: string, version?: string): Promise<ModelManifest> {
    const resolved = await this.resolveVersion(name, version);
    const loaded = this.options.sessions.loadedModel(name, resolved);
    if (loaded) return loaded.manifest;
    try {
      return await this.options.store.getManifest(name, resolved);
    } catch (error) {
      if (error instanceof NotFoundError && version === undefined) throw new NotFoundError(`unknown model '${name}'`);
      throw error;
    }
  }

  async modelMetadata(name: string, version?: string): Promise<ModelMetadata> {
    const manifest = await this.manifestOf(name, version);
    const versions = version === undefined ? await this.options.store.listVersions(name) : [manifest.version];
    return { name, versions, platform: PLATFORM, inputs: manifest.inputs, outputs: manifest.outputs };
  }

  async loadModel(name: string, version?: string): Promise<LoadedModel> {
    const manifest = await this.manifestOf(name, version);
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

  async infer(name: string, version: string | undefined, request: DecodedInferRequest): Promise<InferenceResult> {
    const model = await this.loadModel(name, version);
    const feeds = buildFeeds(model, request);
    const requested = request.outputs ?? [...model.outputs.keys()].map((n) => ({ name: n, binary: request.binaryDataOutput }));
    for (const o of requested) {
      if (!model.outputs.has(o.name)) {
        throw new BadRequestError(`unknown output '${o.name}'; model '${name}' has outputs: ${[...model.outputs.keys()].join(', ')}`);
      }
    }
    let results: InferenceSession.OnnxValueMapType;
    try {
      results = await model.session.run(feeds, requested.map((o) => o.name));
    } catch (error) {
      // Inputs already match the signature; what onnxruntime still refuses depends on the values sent.
      throw new BadRequestError(`model '${name}' version '${model.version}' rejected the input: ${(error as Error).message}`, { cause: error });
    }
    const outputs = requested.map((o): ResponseTensor => {
      const tensor = results[o.name] as Tensor;
      return { name: o.name, datatype: v2DatatypeOf(tensor.type)!, shape: [...tensor.dims], data: tensor.data as ResponseTensor['data'] };
    });
    return {
      model,
      binaryOutputs: new Set(requested.filter((o) => o.binary).map((o) => o.name)),
      response: {
        model_name: name,
        model_version: model.version,
        ...(request.id !== undefined ? { id: request.id } : {}),
        outputs,
      },
    };
  }
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
    feeds[input.name] = new ort.Tensor(DATATYPES[spec.datatype].ort, input.data as never, input.shape);
  }
  const missing = [...model.inputs.keys()].filter((n) => !(n in feeds));
  if (missing.length > 0) throw new BadRequestError(`missing input${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
  return feeds;
}
