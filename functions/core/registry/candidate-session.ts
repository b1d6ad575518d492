import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadRequestError } from '../errors.ts';
import { sha256Hex } from '../hash.ts';
import { decodeModel, type ModelProto } from '../onnx/model-proto.ts';
import ort, { type InferenceSession } from '../ort.ts';
import { runtimeMessage } from '../runtime-message.ts';
import { signatureOf, type ModelSignature } from '../signature.ts';
import { stagingKey } from './staging.ts';

/** The pre-optimized artifact of a model, on local disk until it is uploaded. */
export interface StagedFile {
  /** The staging key it is valid for (staging.ts). */
  key: string;
  path: string;
  sha256: string;
  bytes: number;
}

/** What one onnxruntime session over a candidate model gave: its signature and its staged artifact. */
export interface ExaminedModel {
  signature: ModelSignature;
  staged: StagedFile;
  /** Removes the staged file and its folder. */
  dispose(): Promise<void>;
}

/**
 * Session options for a model no one has vetted yet. onnxruntime gets the model as a buffer, so it
 * has no model path; a tensor with external data would then resolve against the process's working
 * directory (the function package, the repository locally). So external data may only come from a
 * folder made empty for this load (`model_external_initializers_file_folder_path`), which onnxruntime
 * also refuses to leave ("escapes model directory", absolute paths refused): should a location get
 * past findExternalData, it reads nothing of ours.
 */
export function candidateSessionOptions(emptyFolder: string, extra: Record<string, string> = {}): InferenceSession.SessionOptions {
  return {
    logSeverityLevel: 3,
    extra: { session: { model_external_initializers_file_folder_path: emptyFolder, ...extra } },
  } as InferenceSession.SessionOptions;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Loads a candidate model in onnxruntime once (a file onnxruntime cannot load is not a model we can
 * serve), and from that one session reads the signature and saves the staged artifact: optimizations
 * up to 'extended' only, since 'all' adds layout changes tuned to the CPU that ran it and the
 * registering function may run on another CPU model. The session is released before this returns;
 * the staged file stays on disk (never read whole into memory) until `dispose`.
 */
export async function examineCandidate(bytes: Uint8Array, model: ModelProto, sha256: string): Promise<ExaminedModel> {
  const dir = await mkdtemp(join(tmpdir(), 'ai-mass-candidate-'));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    const emptyFolder = join(dir, 'nothing-here');
    await mkdir(emptyFolder);
    const path = join(dir, 'staged.ort');
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        ...candidateSessionOptions(emptyFolder, { save_model_format: 'ORT' }),
        graphOptimizationLevel: 'extended',
        optimizedModelFilePath: path,
      });
    } catch (cause) {
      throw new BadRequestError(`onnxruntime cannot load the model: ${runtimeMessage(cause)}`, { cause });
    }
    let signature: ModelSignature;
    try {
      signature = signatureOf(session, model, sha256, bytes.length);
    } finally {
      await session.release();
    }
    const staged = { key: stagingKey(), path, sha256: await sha256OfFile(path), bytes: (await stat(path)).size };
    return { signature, staged, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** The staged artifact of a model, in memory (benchmarks, tools); registration keeps it on disk. */
export async function stageArtifact(modelBytes: Uint8Array): Promise<Uint8Array> {
  const examined = await examineCandidate(modelBytes, decodeModel(modelBytes), sha256Hex(modelBytes));
  try {
    return new Uint8Array(await readFile(examined.staged.path));
  } finally {
    await examined.dispose();
  }
}
