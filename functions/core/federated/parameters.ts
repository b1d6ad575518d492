/**
 * The parameters a federation exchanges: every float initializer of the global model (FP32 or FP64),
 * in graph order. Any client that produces the same tensors, by name, shape and type, can take part,
 * whatever trains them. The strategies see them as one flat FP64 vector in this layout.
 */
import { decodeModel, onnx, readFloat32Tensor, type TensorProtoInit } from '../onnx/model-proto.ts';
import { assertNoExternalData, tensorDims } from '../onnx/graph-toolkit.ts';
import { withTrainedValues } from '../train/export.ts';
import { readFloatInitializer } from '../train/training-graph.ts';

export type ParameterType = 'float32' | 'float64';

export interface ParameterEntry {
  name: string;
  dtype: ParameterType;
  dims: number[];
  /** Position of its first value in the flat vector. */
  offset: number;
  length: number;
}

export interface ParameterLayout {
  entries: ParameterEntry[];
  /** Values in all. */
  length: number;
}

const typeOf = (tensor: TensorProtoInit): ParameterType | undefined =>
  tensor.dataType === onnx.TensorProto.DataType.FLOAT ? 'float32' : tensor.dataType === onnx.TensorProto.DataType.DOUBLE ? 'float64' : undefined;

/** The model's float initializers as a layout and one flat vector of their values. */
export function readParameters(modelBytes: Uint8Array): { layout: ParameterLayout; values: Float64Array } {
  const model = decodeModel(modelBytes);
  assertNoExternalData(model);
  const entries: ParameterEntry[] = [];
  const parts: (Float32Array | Float64Array)[] = [];
  let offset = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    const dtype = typeOf(tensor);
    if (!dtype) continue;
    const values = dtype === 'float32' ? readFloat32Tensor(tensor) : readFloatInitializer(tensor);
    entries.push({ name: tensor.name ?? '', dtype, dims: tensorDims(tensor), offset, length: values.length });
    parts.push(values);
    offset += values.length;
  }
  const flat = new Float64Array(offset);
  entries.forEach((entry, index) => flat.set(parts[index] as Float32Array, entry.offset));
  return { layout: { entries, length: offset }, values: flat };
}

/** The tensors of a flat vector, each in its own type (FP32 rounds to nearest). */
export function splitParameters(layout: ParameterLayout, flat: Float64Array): Map<string, Float32Array | Float64Array> {
  if (flat.length !== layout.length) throw new RangeError(`${flat.length} values for a layout of ${layout.length}`);
  return new Map(
    layout.entries.map((entry) => {
      const part = flat.subarray(entry.offset, entry.offset + entry.length);
      return [entry.name, entry.dtype === 'float32' ? Float32Array.from(part) : Float64Array.from(part)];
    }),
  );
}

/** The global model with new parameter values: same graph, same initializer names, dims and types. */
export function withParameters(modelBytes: Uint8Array, layout: ParameterLayout, flat: Float64Array): Uint8Array {
  return withTrainedValues(modelBytes, splitParameters(layout, flat));
}
