import { BadRequestError } from '../errors.ts';
import type { InferenceSession } from '../ort.ts';
import { v2DatatypeOf } from './datatypes.ts';
import type { TensorMetadata } from './schemas.ts';

type ValueMetadata = InferenceSession.ValueMetadata;

/** onnxruntime's view of one input or output, in V2 terms (-1 for a dynamic dimension). */
export function tensorMetadataOf(meta: ValueMetadata): TensorMetadata {
  if (!meta.isTensor) throw new BadRequestError(`'${meta.name}' is not a tensor; only tensor inputs and outputs are served`);
  const datatype = v2DatatypeOf(meta.type);
  if (!datatype) throw new BadRequestError(`'${meta.name}' has type ${meta.type}, which the V2 protocol cannot carry`);
  return { name: meta.name, datatype, shape: meta.shape.map((d) => (typeof d === 'number' ? d : -1)) };
}
