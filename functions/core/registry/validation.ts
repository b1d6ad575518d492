import { BadRequestError, PayloadTooLargeError } from '../errors.ts';
import { assertNoExternalData, UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import { decodeModel, encodeModel, OnnxFormatError } from '../onnx/model-proto.ts';
import { serveAsTensors } from '../onnx/non-tensor.ts';
import { runtimeMessage } from '../runtime-message.ts';
import { readModelSignature, type ModelSignature } from '../signature.ts';
import { withMapping } from '../v2/tensor-metadata.ts';

export const DEFAULT_MAX_MODEL_BYTES = 512 * 1024 * 1024;

/** Rejection of an upload: the reason is for the uploader, so it is a client error. */
export class ModelRejectedError extends BadRequestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelRejectedError';
  }
}

export function assertModelSize(bytes: number, maxBytes: number): void {
  if (bytes > maxBytes) throw new PayloadTooLargeError(`model of ${bytes} bytes exceeds the limit of ${maxBytes} bytes`);
  if (bytes === 0) throw new ModelRejectedError('not an ONNX model: the upload is empty (0 bytes)');
}

/** A model admitted for serving: the bytes to store and serve, and what its manifest records. */
export interface AdmittedModel {
  /** The upload itself, or its graph with non-tensor inputs and outputs mapped to tensors (onnx/non-tensor.ts). */
  bytes: Uint8Array;
  signature: ModelSignature;
}

/**
 * Every check a model passes before it becomes a version: size, a guarded protobuf parse, weights
 * inside the file, inputs and outputs that V2 can carry (mapped to tensors where they are not), and a
 * real load in onnxruntime. There is no IR or opset window: what this onnxruntime loads is served, and
 * what it refuses is refused with its reason (an opset older than its kernels, an IR newer than it reads).
 */
export async function validateModel(bytes: Uint8Array, maxBytes = DEFAULT_MAX_MODEL_BYTES): Promise<AdmittedModel> {
  assertModelSize(bytes.length, maxBytes);
  let model;
  try {
    model = decodeModel(bytes);
  } catch (error) {
    if (error instanceof OnnxFormatError) throw new ModelRejectedError(error.message, { cause: error });
    throw error;
  }
  try {
    assertNoExternalData(model);
  } catch (error) {
    if (error instanceof UnsupportedModelError) throw new ModelRejectedError(error.message, { cause: error });
    throw error;
  }
  let served;
  try {
    served = serveAsTensors(model);
  } catch (error) {
    if (error instanceof UnsupportedModelError) throw new ModelRejectedError(error.message, { cause: error });
    throw error;
  }
  const servedBytes = served.rewritten ? encodeModel(model) : bytes;
  let signature;
  try {
    signature = await readModelSignature(servedBytes);
  } catch (error) {
    if (error instanceof BadRequestError) throw new ModelRejectedError(loadFailureMessage(error), { cause: error });
    throw error;
  }
  return {
    bytes: servedBytes,
    signature: {
      ...signature,
      inputs: signature.inputs.map((tensor) => withMapping(tensor, served.inputs.get(tensor.name))),
      outputs: signature.outputs.map((tensor) => withMapping(tensor, served.outputs.get(tensor.name))),
    },
  };
}

/** onnxruntime's reason without its source paths, and what to do where the reason alone does not say. */
function loadFailureMessage(error: Error): string {
  const message = runtimeMessage(error);
  const missingKernel = /Could not find an implementation for (\S+)\((\d+)\)/.exec(message);
  if (missingKernel) {
    return `${message}. This onnxruntime has no kernel for ${missingKernel[1]} at opset ${missingKernel[2]}: convert the model to a newer opset (e.g. onnx.version_converter.convert_version(model, 13)) and upload again`;
  }
  return message;
}
