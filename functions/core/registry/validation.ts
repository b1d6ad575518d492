import { readFile } from 'node:fs/promises';
import { BadRequestError, PayloadTooLargeError } from '../errors.ts';
import { sha256Hex } from '../hash.ts';
import { findExternalData } from '../onnx/external-data.ts';
import { decodeModel, defaultOpsetVersion, int64ToNumber, OnnxFormatError } from '../onnx/model-proto.ts';
import type { ModelFacts } from '../signature.ts';
import { assertFitsTier } from './capacity.ts';
import { releaseDroppedMemory } from '../memory.ts';
import { candidateFromBytes, examineCandidate, factsOf, type CandidateFile, type ExaminedModel } from './candidate-session.ts';

/**
 * What the layer's onnxruntime (1.30) loads: IR versions up to 13 and ai.onnx opsets 7 to 26
 * (test/unit/registry-validation.test.ts loads both ends). Checked before onnxruntime sees the file,
 * so the uploader reads which limit was crossed instead of a loader stack trace.
 */
export const SUPPORTED_IR_VERSIONS = { min: 3, max: 13 } as const;
export const SUPPORTED_OPSETS = { min: 7, max: 26 } as const;
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
 * inside the file, IR and opset within what onnxruntime supports, and a real load in onnxruntime
 * (examineCandidate: the one session that also gives the signature and the staged artifact).
 * A CandidateFile is this call's to dispose of when it throws, the result's once it returns;
 * bytes are written to a candidate folder of their own first.
 */
export async function validateModel(input: Uint8Array | CandidateFile, maxBytes = DEFAULT_MAX_MODEL_BYTES, options: ValidateOptions = {}): Promise<ExaminedModel> {
  const inMemory = input instanceof Uint8Array;
  if (inMemory) assertModelSize(input.length, maxBytes);
  const candidate = inMemory ? await candidateFromBytes(input) : input;
  try {
    assertModelSize(candidate.bytes, maxBytes);
    const { facts, sha256 } = inMemory ? checkModelBytes(input, options) : await checkModelFile(candidate.path, options);
    // The bytes read for the checks are garbage now: returned before onnxruntime reads the model again.
    if (!inMemory) releaseDroppedMemory();
    try {
      return await examineCandidate(candidate, facts, sha256);
    } catch (error) {
      if (error instanceof BadRequestError) throw new ModelRejectedError(error.message, { cause: error });
      throw error;
    }
  } catch (error) {
    await candidate.dispose();
    throw error;
  }
}

/** checkModelBytes on a file, read in a frame of its own so that nothing holds the bytes once it returns. */
async function checkModelFile(path: string, options: ValidateOptions): Promise<{ facts: ModelFacts; sha256: string }> {
  return checkModelBytes(await readFile(path), options);
}

/** The checks that read the file itself, before onnxruntime does; what the manifest needs of it. */
function checkModelBytes(bytes: Uint8Array, options: ValidateOptions): { facts: ModelFacts; sha256: string } {
  let model;
  try {
    model = decodeModel(bytes);
    assertNoExternalData(bytes);
  } catch (error) {
    if (error instanceof OnnxFormatError) throw new ModelRejectedError(error.message, { cause: error });
    throw error;
  }
  const ir = int64ToNumber(model.irVersion);
  if (ir < SUPPORTED_IR_VERSIONS.min || ir > SUPPORTED_IR_VERSIONS.max) {
    throw new ModelRejectedError(`IR version ${ir} is not supported: onnxruntime here loads IR ${SUPPORTED_IR_VERSIONS.min} to ${SUPPORTED_IR_VERSIONS.max}`);
  }
  const opset = defaultOpsetVersion(model);
  if (opset === undefined) throw new ModelRejectedError('the model imports no ai.onnx opset');
  if (opset < SUPPORTED_OPSETS.min || opset > SUPPORTED_OPSETS.max) {
    throw new ModelRejectedError(`opset ${opset} is not supported: onnxruntime here runs ai.onnx opsets ${SUPPORTED_OPSETS.min} to ${SUPPORTED_OPSETS.max}`);
  }
  if (options.servingMemoryMiB !== undefined) assertFitsTier(model, bytes.length, options.servingMemoryMiB);
  return { facts: factsOf(model), sha256: options.sha256 ?? sha256Hex(bytes) };
}
