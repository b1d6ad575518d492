import type { InferenceSession } from '../onnx/ort.ts';
import { tensorMetadataOf } from '../v2/tensor-metadata.ts';
import type { TensorMetadata } from '../v2/schemas.ts';

export interface ModelSignature {
  sha256: string;
  bytes: number;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  irVersion: number;
  opset: number;
  producer: { name: string; version: string };
}

/** What the model file itself says about its format and origin. */
export interface ModelFacts {
  irVersion: number;
  opset: number;
  producer: { name: string; version: string };
}

/**
 * What a manifest records about a model file: hash, size, and the signature as onnxruntime reads it
 * from a session over the model (registry/candidate-session.ts opens the one session registration uses).
 */
export function signatureOf(session: InferenceSession, facts: ModelFacts, sha256: string, bytes: number): ModelSignature {
  return {
    sha256,
    bytes,
    inputs: session.inputMetadata.map(tensorMetadataOf),
    outputs: session.outputMetadata.map(tensorMetadataOf),
    ...facts,
  };
}
