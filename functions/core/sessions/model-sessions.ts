import { availableParallelism } from 'node:os';
import ort, { type InferenceSession, type Tensor } from '../onnx/ort.ts';
import type { ModelManifest, WarmupTensor } from '../artifacts/manifest.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { STAGED_SESSION_EXTRA, stagingKey } from '../artifacts/staging.ts';
import { tensorMetadataOf } from '../v2/tensor-metadata.ts';
import { DATATYPES } from '../v2/datatypes.ts';
import { decodeJsonTensorData } from '../v2/codec.ts';
import type { TensorMetadata } from '../v2/schemas.ts';
import { NotReadyError } from '../platform/errors.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';

export interface LoadedModel {
  name: string;
  version: string;
  manifest: ModelManifest;
  session: InferenceSession;
  inputs: ReadonlyMap<string, TensorMetadata>;
  outputs: ReadonlyMap<string, TensorMetadata>;
  /** Where the bytes came from, which artifact, and how long fetch + session + warm-up took. */
  source: 'cache' | 'bucket';
  artifact: 'staged' | 'onnx';
  /** Kept alive with the session: a staged session reads its weights from this buffer in place. */
  bytes: Uint8Array;
  loadMs: number;
  warmupError?: string;
  /** The execution providers the session was created with, when not the default CPU-only list. */
  executionProviders?: string[];
}

/**
 * Session options for serving. Thread counts are set from the CPUs this environment really has
 * (a Lambda's vCPUs follow its memory size), not left to onnxruntime's guess from the host.
 */
export function servingSessionOptions(intraOpThreads?: number): InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: intraOpThreads ?? availableParallelism(),
    interOpNumThreads: 1,
    enableCpuMemArena: true,
    enableMemPattern: true,
    logSeverityLevel: 3,
  };
}

/**
 * An onnxruntime tensor that the binding can read. Where the JavaScript engine has Float16Array (Node
 * 24), onnxruntime-common wraps the Uint16Array of a 'float16' tensor in a Float16Array, and the
 * 1.30 binding reads that as 0 bytes ("not enough space: expected 12, got 0"): the tensor is given
 * back its Uint16Array (the same memory, the same bits), which the binding reads as float16.
 */
export function ortTensor(type: Tensor.Type, data: Tensor.DataType | string[], dims: readonly number[]): Tensor {
  const tensor = new ort.Tensor(type, data as never, dims);
  if (type === 'float16' && data instanceof Uint16Array && !(tensor.data instanceof Uint16Array)) {
    (tensor as unknown as { cpuData: Uint16Array }).cpuData = data;
  }
  return tensor;
}

/** Feeds for the warm-up run: the manifest's example when it has one, else zeros with dynamic dims of 1. */
export function warmupFeeds(inputs: Iterable<TensorMetadata>, example?: WarmupTensor[]): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  if (example) {
    for (const t of example) {
      const data = decodeJsonTensorData(t.name, t.datatype, t.data, t.shape);
      feeds[t.name] = ortTensor(DATATYPES[t.datatype].ort, data, t.shape);
    }
    return feeds;
  }
  for (const input of inputs) {
    const shape = input.shape.map((d) => (d < 0 ? 1 : d));
    const count = shape.reduce((a, b) => a * b, 1);
    const type = DATATYPES[input.datatype].ort;
    feeds[input.name] =
      type === 'string'
        ? new ort.Tensor('string', new Array<string>(count).fill(''), shape)
        : ortTensor(type, emptyTyped(type, count), shape);
  }
  return feeds;
}

function emptyTyped(type: Tensor.Type, count: number): Tensor.DataType {
  switch (type) {
    case 'float32': return new Float32Array(count);
    case 'float64': return new Float64Array(count);
    case 'int64': return new BigInt64Array(count);
    case 'uint64': return new BigUint64Array(count);
    case 'int32': return new Int32Array(count);
    case 'uint32': return new Uint32Array(count);
    case 'int16': return new Int16Array(count);
    case 'uint16': case 'float16': return new Uint16Array(count);
    case 'int8': return new Int8Array(count);
    default: return new Uint8Array(count);
  }
}

/**
 * A one-node model (y = x + x) whose session brings onnxruntime up: its environment, thread pools and
 * CPU kernel registry, about half of a cold first session. Built with functions/core/onnx/builder.ts
 * (test/unit/runtime-warmup.test.ts rebuilds it and checks these bytes).
 */
export const RUNTIME_WARMUP_MODEL = Uint8Array.from(
  atob('CAgSB2FpLW1hc3MaADpCCg4KAXgKAXgSAXkiA0FkZBIOcnVudGltZS13YXJtdXBaDwoBeBIKCggIARIECgIIAWIPCgF5EgoKCAgBEgQKAggBQgQKABAR'),
  (c) => c.charCodeAt(0),
);

let runtimeWarm: Promise<void> | undefined;

/**
 * Brings onnxruntime up once per process, with the serving options. Cold starts call it while a
 * model's bytes are still arriving, so that work overlaps the transfer instead of following it.
 */
export function warmRuntime(intraOpThreads?: number): Promise<void> {
  runtimeWarm ??= ort.InferenceSession.create(RUNTIME_WARMUP_MODEL, servingSessionOptions(intraOpThreads)).then(
    (session) => session.release(),
    () => undefined, // only an optimization: the model's own session reports any real problem
  );
  return runtimeWarm;
}

export interface ModelSessionsOptions {
  store: ModelRepository;
  intraOpThreads?: number | undefined;
  onWarmupFailure?: (model: string, version: string, error: Error) => void;
  /**
   * Serving: a version whose warm-up run fails is not loaded (NotReadyError with the reason), so
   * readiness reports it instead of a model that fails its first request. Otherwise (batch,
   * evaluation) the failure is recorded in `warmupError` and the session is kept.
   */
  requireWarmup?: boolean | undefined;
  /**
   * Providers in order of preference (the GPU batch worker passes CUDA first). When onnxruntime
   * cannot create a session with them (no GPU, no CUDA libraries), the session falls back to CPU.
   */
  executionProviders?: readonly InferenceSession.ExecutionProviderConfig[] | undefined;
  onProviderFallback?: (model: string, version: string, error: Error) => void;
  /** Which staged artifact this runtime can use; defaults to its own onnxruntime version and CPU. */
  stagingKey?: string | undefined;
  onStagedFallback?: (model: string, version: string, error: Error) => void;
  /**
   * Loads a version that is not one ONNX file (a pipeline: pipeline/session.ts), for runtimes that
   * take one wherever they take a model (batch scoring, evaluation). Without it such a version is refused.
   */
  composite?: ((manifest: ModelManifest, sessions: ModelSessions) => Promise<LoadedModel>) | undefined;
}

/**
 * Sessions kept for the life of the environment, one per model version. Concurrent requests for a
 * version that is still loading share one load; a failed load is forgotten so a later request retries.
 */
export class ModelSessions {
  private readonly loads = new Map<string, Promise<LoadedModel>>();
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly options: ModelSessionsOptions;

  constructor(options: ModelSessionsOptions) {
    this.options = options;
  }

  /**
   * Starts downloading a version's staged artifact before its manifest is read (cold-start preload),
   * when this runtime would use one; the manifest still checks the bytes before a session is built.
   */
  prefetch(name: string, version: string): void {
    const key = this.options.stagingKey ?? stagingKey();
    if (key === 'off' || this.loads.has(`${name}/${version}`) || (this.options.executionProviders?.length ?? 0) > 0) return;
    this.options.store.prefetch(keys.staged(name, version, key));
  }

  loadedModel(name: string, version: string): LoadedModel | undefined {
    return this.loaded.get(`${name}/${version}`);
  }

  get(manifest: ModelManifest): Promise<LoadedModel> {
    const key = `${manifest.name}/${manifest.version}`;
    let load = this.loads.get(key);
    if (!load) {
      load = this.load(manifest).then(
        (model) => {
          this.loaded.set(key, model);
          return model;
        },
        (error: unknown) => {
          this.loads.delete(key);
          throw error;
        },
      );
      this.loads.set(key, load);
    }
    return load;
  }

  private async load(manifest: ModelManifest): Promise<LoadedModel> {
    if (manifest.format !== 'onnx') {
      if (!this.options.composite) throw new NotReadyError(`'${manifest.name}' version '${manifest.version}' is a ${manifest.format}, which this runtime does not load`);
      return this.options.composite(manifest, this);
    }
    const started = performance.now();
    const { session, source, artifact, bytes, executionProviders } = await this.createSession(manifest);
    const inputs = new Map(session.inputMetadata.map((m) => [m.name, tensorMetadataOf(m)] as const));
    const outputs = new Map(session.outputMetadata.map((m) => [m.name, tensorMetadataOf(m)] as const));
    let warmupError: string | undefined;
    try {
      // The first run of a session is slow (allocations, kernel selection): pay it here, not in a request.
      await session.run(warmupFeeds(inputs.values(), manifest.warmup));
    } catch (error) {
      warmupError = runtimeMessage(error);
      this.options.onWarmupFailure?.(manifest.name, manifest.version, error as Error);
      if (this.options.requireWarmup) {
        await session.release();
        throw new NotReadyError(`model '${manifest.name}' version '${manifest.version}' is not ready: its warm-up run failed: ${warmupError}`, { cause: error });
      }
    }
    return {
      name: manifest.name,
      version: manifest.version,
      manifest,
      session,
      inputs,
      outputs,
      source,
      artifact,
      bytes,
      loadMs: performance.now() - started,
      ...(warmupError ? { warmupError } : {}),
      ...(executionProviders ? { executionProviders } : {}),
    };
  }

  /**
   * The staged artifact when one matches this runtime (CPU serving only: it was optimized for the
   * CPU provider), else model.onnx; a staged artifact that is missing, tampered with or refused by
   * onnxruntime falls back to model.onnx rather than failing the load.
   */
  private async createSession(manifest: ModelManifest) {
    const options = servingSessionOptions(this.options.intraOpThreads);
    const preferred = this.options.executionProviders;
    if (!preferred || preferred.length === 0) {
      try {
        // onnxruntime comes up while the bytes arrive; Promise.all holds the fetch's rejection from the start.
        const [staged] = await Promise.all([
          this.options.store.getStagedBytes(manifest, this.options.stagingKey ?? stagingKey()),
          warmRuntime(this.options.intraOpThreads),
        ]);
        if (staged) {
          const session = await ort.InferenceSession.create(staged.bytes, { ...options, extra: STAGED_SESSION_EXTRA } as InferenceSession.SessionOptions);
          return { session, source: staged.source, artifact: 'staged' as const, bytes: staged.bytes, executionProviders: undefined };
        }
      } catch (error) {
        this.options.onStagedFallback?.(manifest.name, manifest.version, error as Error);
      }
    }
    const { bytes, source } = await this.options.store.getModelBytes(manifest);
    if (preferred && preferred.length > 0) {
      try {
        const session = await ort.InferenceSession.create(bytes, { ...options, executionProviders: [...preferred] });
        return { session, source, artifact: 'onnx' as const, bytes, executionProviders: preferred.map((p) => (typeof p === 'string' ? p : p.name)) };
      } catch (error) {
        this.options.onProviderFallback?.(manifest.name, manifest.version, error as Error);
        const session = await ort.InferenceSession.create(bytes, options);
        return { session, source, artifact: 'onnx' as const, bytes, executionProviders: ['cpu'] };
      }
    }
    const session = await ort.InferenceSession.create(bytes, options);
    return { session, source, artifact: 'onnx' as const, bytes, executionProviders: undefined };
  }
}
