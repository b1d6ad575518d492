import ort, { type InferenceSession } from './ort.ts';
import { BadRequestError } from './errors.ts';
import { tensorMetadataOf } from './v2/tensor-metadata.ts';
import { sha256Hex } from './hash.ts';
import { decodeModel, defaultOpsetVersion, int64ToNumber, OnnxFormatError, type ModelProto } from './onnx/model-proto.ts';
import type { TensorMetadata } from './v2/schemas.ts';

export interface ModelSignature {
  sha256: string;
  bytes: number;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  irVersion: number;
  opset: number;
  producer: { name: string; version: string };
}


/**
 * Reads what a manifest records about a model file: hash, size, and the signature, checked by really
 * loading the model in onnxruntime (a file onnxruntime cannot load is not a model we can serve).
 */
export async function readModelSignature(bytes: Uint8Array): Promise<ModelSignature> {
  let model: ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (cause) {
    if (cause instanceof OnnxFormatError) throw new BadRequestError(cause.message, { cause });
    throw cause;
  }
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4, graphOptimizationLevel: 'disabled' });
  } catch (cause) {
    throw new BadRequestError(`onnxruntime cannot load the model: ${(cause as Error).message}`, { cause });
  }
  try {
    return {
      sha256: sha256Hex(bytes),
      bytes: bytes.length,
      inputs: session.inputMetadata.map(tensorMetadataOf),
      outputs: session.outputMetadata.map(tensorMetadataOf),
      irVersion: int64ToNumber(model.irVersion),
      opset: defaultOpsetVersion(model) ?? 0,
      producer: { name: model.producerName ?? '', version: model.producerVersion ?? '' },
    };
  } finally {
    await session.release();
  }
}
