import { BadRequestError } from '../platform/errors.ts';
import type { BoundaryMapping } from '../onnx/non-tensor.ts';
import type { InferenceSession } from '../onnx/ort.ts';
import { v2DatatypeOf } from './datatypes.ts';
import type { TensorMetadata } from './schemas.ts';

type ValueMetadata = InferenceSession.ValueMetadata;

/** onnxruntime's view of one input or output, in V2 terms (-1 for a dynamic dimension). */
export function tensorMetadataOf(meta: ValueMetadata): TensorMetadata {
  if (!meta.isTensor) {
    // Registration maps sequences, maps and optionals to tensors (onnx/non-tensor.ts); a file that
    // still has one at its boundary was stored without that mapping.
    throw new BadRequestError(`'${meta.name}' is not a tensor (a sequence, map or optional); register the model again so that it is mapped to a tensor`);
  }
  const datatype = v2DatatypeOf(meta.type);
  if (!datatype) throw new BadRequestError(`'${meta.name}' has type ${meta.type}, which the V2 protocol cannot carry`);
  return { name: meta.name, datatype, shape: meta.shape.map((d) => (typeof d === 'number' ? d : -1)) };
}

/**
 * A tensor's metadata with how it stands for a value of another type in the model, under
 * `parameters` (the model metadata response shows it); unchanged for a plain tensor.
 */
export function withMapping(tensor: TensorMetadata, mapping: BoundaryMapping | undefined): TensorMetadata {
  if (!mapping) return tensor;
  const parameters: Record<string, string> = {};
  for (const [key, value] of Object.entries(mapping)) if (value !== undefined) parameters[key] = value;
  return { ...tensor, parameters };
}
