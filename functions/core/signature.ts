import { createHash } from 'node:crypto';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { BadRequestError } from './errors.ts';
import { v2DatatypeOf } from './v2/datatypes.ts';
import type { TensorMetadata } from './v2/schemas.ts';

const { onnx } = onnxProto;

export interface ModelSignature {
  sha256: string;
  bytes: number;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  irVersion: number;
  opset: number;
  producer: { name: string; version: string };
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

type ValueMetadata = ort.InferenceSession.ValueMetadata;

/** onnxruntime's view of one input or output, in V2 terms (-1 for a dynamic dimension). */
export function tensorMetadataOf(meta: ValueMetadata): TensorMetadata {
  if (!meta.isTensor) throw new BadRequestError(`'${meta.name}' is not a tensor; only tensor inputs and outputs are served`);
  const datatype = v2DatatypeOf(meta.type);
  if (!datatype) throw new BadRequestError(`'${meta.name}' has type ${meta.type}, which the V2 protocol cannot carry`);
  return { name: meta.name, datatype, shape: meta.shape.map((d) => (typeof d === 'number' ? d : -1)) };
}

/**
 * Reads what a manifest records about a model file: hash, size, and the signature, checked by really
 * loading the model in onnxruntime (a file onnxruntime cannot load is not a model we can serve).
 */
export async function readModelSignature(bytes: Uint8Array): Promise<ModelSignature> {
  let model: InstanceType<typeof onnx.ModelProto>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new BadRequestError(`not an ONNX model: ${(cause as Error).message}`, { cause });
  }
  if (!model.graph) throw new BadRequestError('not an ONNX model: it has no graph');
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4, graphOptimizationLevel: 'disabled' });
  } catch (cause) {
    throw new BadRequestError(`onnxruntime cannot load the model: ${(cause as Error).message}`, { cause });
  }
  try {
    const opset = model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
    return {
      sha256: sha256Hex(bytes),
      bytes: bytes.length,
      inputs: session.inputMetadata.map(tensorMetadataOf),
      outputs: session.outputMetadata.map(tensorMetadataOf),
      irVersion: Number(model.irVersion),
      opset: Number(opset?.version ?? 0),
      producer: { name: model.producerName ?? '', version: model.producerVersion ?? '' },
    };
  } finally {
    await session.release();
  }
}
