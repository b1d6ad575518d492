import ort, { type InferenceSession, type Tensor } from '../onnx/ort.ts';
import { BadRequestError } from '../platform/errors.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { ortTensor, servingSessionOptions, type LoadedModel } from '../sessions/model-sessions.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { DATATYPES } from '../v2/datatypes.ts';
import { tensorMetadataOf } from '../v2/tensor-metadata.ts';
import type { TensorMetadata } from '../v2/schemas.ts';
import { executePipeline, type RunnablePipeline } from './executor.ts';

/** Fused and unfused outputs may differ by at most this much (absolute), integers not at all. */
export const FUSE_TOLERANCE = 1e-6;

/** Deterministic request tensors for the pipeline's inputs: a batch of 2 where a dimension is dynamic, values spread over each type's range. */
export function sampleInputs(inputs: readonly TensorMetadata[]): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const input of inputs) {
    const shape = input.shape.map((d) => (d < 0 ? 2 : d));
    const count = shape.reduce((a, b) => a * b, 1);
    const info = DATATYPES[input.datatype];
    if (!info.array) throw new BadRequestError(`cannot fuse: input '${input.name}' is ${input.datatype}; fused mode checks numeric inputs only`);
    const array = new info.array(new ArrayBuffer(count * info.size), 0, count) as unknown as { [i: number]: number | bigint; length: number };
    for (let i = 0; i < count; i += 1) {
      const wave = Math.abs(Math.sin(i * 12.9898 + 78.233)); // in [0, 1]
      if (input.datatype === 'FP32' || input.datatype === 'FP64') array[i] = wave;
      else if (input.datatype === 'INT64' || input.datatype === 'UINT64') array[i] = BigInt(i % 7);
      else if (input.datatype === 'BOOL') array[i] = i % 2;
      else if (input.datatype === 'FP16') throw new BadRequestError(`cannot fuse: input '${input.name}' is FP16; fused mode checks FP32, FP64 and integer inputs`);
      else array[i] = Math.floor(wave * Math.min(255, Number(info.range![1])));
    }
    out.set(input.name, ortTensor(info.ort, array as unknown as Tensor.DataType, shape));
  }
  return out;
}

async function session(bytes: Uint8Array) {
  return ort.InferenceSession.create(bytes, servingSessionOptions(1));
}

/**
 * Runs the unfused pipeline (one session per step, as serving would) and the fused model on the same
 * sample inputs and compares every output. Refused (400) when they differ by more than FUSE_TOLERANCE.
 */
export async function checkFusedEqual(
  pipeline: RunnablePipeline,
  steps: ReadonlyMap<string, { manifest: ModelManifest; bytes: Uint8Array }>,
  fused: Uint8Array,
  inputs: readonly TensorMetadata[],
): Promise<{ maxAbsDiff: number }> {
  const feeds = sampleInputs(inputs);
  const loaded = new Map<string, LoadedModel>();
  const sessions: InferenceSession[] = [];
  try {
    for (const { manifest, bytes } of steps.values()) {
      const s = await session(bytes);
      sessions.push(s);
      loaded.set(`${manifest.name}/${manifest.version}`, {
        name: manifest.name, version: manifest.version, manifest, session: s, bytes, source: 'bucket', artifact: 'onnx', loadMs: 0,
        inputs: new Map(s.inputMetadata.map((m) => [m.name, tensorMetadataOf(m)] as const)),
        outputs: new Map(s.outputMetadata.map((m) => [m.name, tensorMetadataOf(m)] as const)),
      });
    }
    const unfused = await executePipeline(pipeline, feeds, {
      loadModel: (model, version) => Promise.resolve(loaded.get(`${model}/${version}`)!),
      runtimeFailure: (model, error) => new BadRequestError(`cannot fuse: model '${model.name}' version '${model.version}' failed on the sample input: ${runtimeMessage(error)}`),
    });
    let fusedSession: InferenceSession;
    try {
      fusedSession = await session(fused);
    } catch (error) {
      throw new BadRequestError(`cannot fuse: onnxruntime refused the fused model: ${runtimeMessage(error)}`, { cause: error });
    }
    sessions.push(fusedSession);
    const results = (await fusedSession.run(Object.fromEntries(feeds))) as Record<string, Tensor>;
    let maxAbsDiff = 0;
    for (const [name, expected] of unfused.tensors) {
      const got = results[name]!;
      if (got.type !== expected.type || got.dims.join(',') !== expected.dims.join(',')) {
        throw new BadRequestError(`cannot fuse: output '${name}' is ${got.type} [${got.dims.join(',')}] fused but ${expected.type} [${expected.dims.join(',')}] unfused`);
      }
      const a = expected.data as ArrayLike<number | bigint>;
      const b = got.data as ArrayLike<number | bigint>;
      for (let i = 0; i < a.length; i += 1) {
        const diff = typeof a[i] === 'bigint' ? (a[i] === b[i] ? 0 : Infinity) : Math.abs(Number(a[i]) - Number(b[i]));
        if (!(diff <= FUSE_TOLERANCE)) throw new BadRequestError(`cannot fuse: output '${name}' differs at element ${i} (${String(a[i])} unfused, ${String(b[i])} fused), more than ${FUSE_TOLERANCE}`);
        maxAbsDiff = Math.max(maxAbsDiff, diff);
      }
    }
    return { maxAbsDiff };
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}
