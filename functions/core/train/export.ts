/**
 * Writes trained values back into the inference model: the same graph, only the initializers'
 * data replaced (parameters and BatchNormalization running statistics), same names, dims and types.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { decodeModel, encodeModel, onnx, type ModelProto } from '../onnx/model-proto.ts';
import { tensorDims } from '../onnx/graph-toolkit.ts';
import { tensorFromFloat32 } from '../onnx/builder.ts';
import { tensorFromFloat64 } from './graph-writer.ts';
import { TrainingGraphError } from './gradients.ts';

export function withTrainedValues(source: Uint8Array | ModelProto, values: ReadonlyMap<string, Float32Array | Float64Array>): Uint8Array {
  // Decode a fresh copy so the caller's model object is left as it was.
  const inference = decodeModel(source instanceof Uint8Array ? source : onnx.ModelProto.encode(source).finish());
  const initializers = inference.graph?.initializer ?? [];
  const byName = new Map(initializers.map((tensor, index) => [tensor.name, index]));
  for (const [name, data] of values) {
    const index = byName.get(name);
    if (index === undefined) throw new TrainingGraphError(`the model has no initializer "${name}" to write a trained value into`);
    const tensor = initializers[index] as OnnxTypes.TensorProto;
    const dims = tensorDims(tensor);
    const count = dims.reduce((product, dim) => product * dim, 1);
    if (count !== data.length) throw new TrainingGraphError(`trained "${name}" has ${data.length} values; the initializer holds ${count}`);
    let replacement;
    if (tensor.dataType === onnx.TensorProto.DataType.FLOAT) replacement = tensorFromFloat32(name, dims, data instanceof Float32Array ? data : Float32Array.from(data));
    else if (tensor.dataType === onnx.TensorProto.DataType.DOUBLE) replacement = tensorFromFloat64(name, dims, data instanceof Float64Array ? data : Float64Array.from(data));
    else throw new TrainingGraphError(`initializer "${name}" is not FP32 or FP64`);
    initializers[index] = onnx.TensorProto.create({ ...replacement, ...(tensor.docString ? { docString: tensor.docString } : {}) });
  }
  return encodeModel(inference);
}
