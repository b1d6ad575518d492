import { readFile } from 'node:fs/promises';
import { BadRequestError, PayloadTooLargeError } from '../platform/errors.ts';
import { sha256Hex } from '../platform/hash.ts';
import { findExternalData } from '../onnx/external-data.ts';
import { UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import { decodeModel, encodeModel, OnnxFormatError } from '../onnx/model-proto.ts';
import { serveAsTensors, type BoundaryMapping } from '../onnx/non-tensor.ts';
import type { ModelFacts } from './signature.ts';
import { withMapping } from '../v2/tensor-metadata.ts';
import { assertFitsTier } from './capacity.ts';
import { releaseDroppedMemory } from '../platform/memory.ts';
import { candidateFromBytes, examineCandidate, factsOf, replaceCandidate, type CandidateFile, type ExaminedModel } from './candidate-session.ts';

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

/** A model that keeps any tensor in a file beside it is refused: such a file would be read from wherever onnxruntime runs. */
export function assertNoExternalData(bytes: Uint8Array): void {
  const [use] = findExternalData(bytes);
  if (use) {
    throw new ModelRejectedError(
      `${use.where} uses external data; save the model with its weights inside the .onnx file (onnx.save(model, path, save_as_external_data=False)) and upload that`,
    );
  }
}

export interface ValidateOptions {
  /** The file's sha256 when the caller has it already (a download hashes as it reads). */
  sha256?: string | undefined;
  /** The memory of the function that will serve it (the deployment's tier): a model it cannot hold is refused (capacity.ts). */
  servingMemoryMiB?: number | undefined;
}

/**
 * Every check a model passes before it becomes a version: size, a guarded protobuf parse, weights
 * inside the file, inputs and outputs that V2 can carry (mapped to tensors where they are not:
 * onnx/non-tensor.ts; the mapped graph is what is stored and served), and a real load in onnxruntime
 * (examineCandidate: the one session that also gives the signature and the staged artifact). There is
 * no IR or opset window: what this onnxruntime loads is served, and what it refuses is refused with
 * its reason (an opset older than its kernels, an IR newer than it reads).
 * A CandidateFile is this call's to dispose of when it throws, the result's once it returns;
 * bytes are written to a candidate folder of their own first.
 */
export async function validateModel(input: Uint8Array | CandidateFile, maxBytes = DEFAULT_MAX_MODEL_BYTES, options: ValidateOptions = {}): Promise<ExaminedModel> {
  const inMemory = input instanceof Uint8Array;
  if (inMemory) assertModelSize(input.length, maxBytes);
  const candidate = inMemory ? await candidateFromBytes(input) : input;
  try {
    assertModelSize(candidate.bytes, maxBytes);
    const { facts, sha256, served } = inMemory ? checkModelBytes(input, options) : await checkModelFile(candidate.path, options);
    if (served.rewritten) await replaceCandidate(candidate, served.bytes);
    // The bytes read for the checks are garbage now: returned before onnxruntime reads the model again.
    if (!inMemory) releaseDroppedMemory();
    let examined: ExaminedModel;
    try {
      examined = await examineCandidate(candidate, facts, sha256);
    } catch (error) {
      if (error instanceof BadRequestError) throw new ModelRejectedError(error.message, { cause: error });
      throw error;
    }
    const { signature } = examined;
    signature.inputs = signature.inputs.map((tensor) => withMapping(tensor, served.inputs.get(tensor.name)));
    signature.outputs = signature.outputs.map((tensor) => withMapping(tensor, served.outputs.get(tensor.name)));
    return examined;
  } catch (error) {
    await candidate.dispose();
    throw error;
  }
}

/** checkModelBytes on a file, read in a frame of its own so that nothing holds the bytes once it returns. */
async function checkModelFile(path: string, options: ValidateOptions): Promise<CheckedModel> {
  return checkModelBytes(await readFile(path), options);
}

interface CheckedModel {
  facts: ModelFacts;
  /** Of the bytes that are stored and served: the mapped graph's when it was rewritten. */
  sha256: string;
  served: { rewritten: false; inputs: Map<string, BoundaryMapping>; outputs: Map<string, BoundaryMapping> } | { rewritten: true; bytes: Uint8Array; inputs: Map<string, BoundaryMapping>; outputs: Map<string, BoundaryMapping> };
}

/** The checks that read the file itself, before onnxruntime does; what the manifest needs of it. */
function checkModelBytes(bytes: Uint8Array, options: ValidateOptions): CheckedModel {
  let model;
  try {
    model = decodeModel(bytes);
    assertNoExternalData(bytes);
  } catch (error) {
    if (error instanceof OnnxFormatError) throw new ModelRejectedError(error.message, { cause: error });
    throw error;
  }
  if (options.servingMemoryMiB !== undefined) assertFitsTier(model, bytes.length, options.servingMemoryMiB);
  let mapping;
  try {
    mapping = serveAsTensors(model);
  } catch (error) {
    if (error instanceof UnsupportedModelError) throw new ModelRejectedError(error.message, { cause: error });
    throw error;
  }
  if (!mapping.rewritten) return { facts: factsOf(model), sha256: options.sha256 ?? sha256Hex(bytes), served: { rewritten: false, inputs: mapping.inputs, outputs: mapping.outputs } };
  const servedBytes = encodeModel(model);
  return { facts: factsOf(model), sha256: sha256Hex(servedBytes), served: { rewritten: true, bytes: servedBytes, inputs: mapping.inputs, outputs: mapping.outputs } };
}
