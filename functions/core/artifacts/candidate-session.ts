import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BadRequestError } from '../platform/errors.ts';
import { sha256Hex, sha256OfFile } from '../platform/hash.ts';
import { decodeModel, defaultOpsetVersion, int64ToNumber, type ModelProto } from '../onnx/model-proto.ts';
import ort, { type InferenceSession } from '../onnx/ort.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { signatureOf, type ModelFacts, type ModelSignature } from './signature.ts';
import { stagingKey } from './staging.ts';

/**
 * A model file no one has vetted yet, alone in a private folder: onnxruntime loads it from there, so
 * a tensor whose data claims to live in a file beside the model can only name this folder, which
 * holds nothing but the model itself (onnxruntime refuses absolute paths and paths that leave the
 * model's folder). Nothing of ours (the function package, the repository, credentials in the working
 * directory) is reachable, even should findExternalData miss something.
 */
export interface CandidateFile {
  path: string;
  /** Its size: the served graph's once replaceCandidate put that in the upload's place. */
  bytes: number;
  /** Removes the folder and everything in it. */
  dispose(): Promise<void>;
}

/** A private folder for one candidate; `write` puts the model at its path. */
export async function candidateFolder(): Promise<{ dir: string; path: string; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ai-mass-candidate-'));
  const modelDir = join(dir, 'model');
  await mkdir(modelDir);
  return { dir, path: join(modelDir, 'model.onnx'), dispose: () => rm(dir, { recursive: true, force: true }) };
}

export async function candidateFromBytes(bytes: Uint8Array): Promise<CandidateFile> {
  const folder = await candidateFolder();
  try {
    await writeFile(folder.path, bytes);
  } catch (error) {
    await folder.dispose();
    throw error;
  }
  return { path: folder.path, bytes: bytes.length, dispose: folder.dispose };
}

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
  /** The model file itself, for the upload to models/<m>/<v>/model.onnx. */
  modelFile: string;
  /** Undefined when onnxruntime cannot save the graph in its ORT format (optional values). */
  staged: StagedFile | undefined;
  /** Removes the candidate's folder: model file and staged artifact. */
  dispose(): Promise<void>;
}

export function factsOf(model: ModelProto): ModelFacts {
  return {
    irVersion: int64ToNumber(model.irVersion),
    opset: defaultOpsetVersion(model) ?? 0,
    producer: { name: model.producerName ?? '', version: model.producerVersion ?? '' },
  };
}

/**
 * Loads a candidate model in onnxruntime once (a file onnxruntime cannot load is not a model we can
 * serve), and from that one session reads the signature and saves the staged artifact beside it:
 * optimizations up to 'extended' only, since 'all' adds layout changes tuned to the CPU that ran
 * it and the registering function may run on another CPU model. Weights are not pre-packed (a
 * serving session packs its own; here it would only add a copy of the weights). The session is
 * released before this returns; the staged file stays on disk, never read whole into memory.
 */
export async function examineCandidate(candidate: CandidateFile, facts: ModelFacts, sha256: string): Promise<ExaminedModel> {
  const staged = join(candidate.path, '..', '..', 'staged.ort');
  let session: InferenceSession;
  let stagedMade = true;
  try {
    session = await createExamining(candidate.path, staged);
  } catch (cause) {
    if (!(cause instanceof Error && ORT_FORMAT_UNSUPPORTED.test(cause.message))) throw loadFailure(cause, candidate);
    // onnxruntime runs graphs with optional values but cannot save them in its ORT format: such a
    // version has no staged artifact and is served from model.onnx, as on a server whose staging key differs.
    stagedMade = false;
    try {
      session = await createExamining(candidate.path, undefined);
    } catch (retryCause) {
      throw loadFailure(retryCause, candidate);
    }
  }
  let signature: ModelSignature;
  try {
    signature = signatureOf(session, facts, sha256, candidate.bytes);
  } finally {
    await session.release();
  }
  return {
    signature,
    modelFile: candidate.path,
    staged: stagedMade ? { key: stagingKey(), path: staged, sha256: await sha256OfFile(staged), bytes: (await stat(staged)).size } : undefined,
    dispose: candidate.dispose,
  };
}

const ORT_FORMAT_UNSUPPORTED = /^We do not support type \[\d+\] for now/;

function createExamining(path: string, staged: string | undefined): Promise<InferenceSession> {
  return ort.InferenceSession.create(path, {
    logSeverityLevel: 3,
    graphOptimizationLevel: 'extended',
    ...(staged ? { optimizedModelFilePath: staged } : {}),
    extra: { session: { ...(staged ? { save_model_format: 'ORT' } : {}), disable_prepacking: '1' } },
  } as InferenceSession.SessionOptions);
}

/**
 * onnxruntime's reason without its source paths (paths inside the candidate's folder shown relative
 * to it: the uploader's names, not our folders), and what to do where the reason alone does not say.
 */
function loadFailure(cause: unknown, candidate: CandidateFile): BadRequestError {
  // "Load model from <our folder>/model.onnx failed:" says nothing the uploader needs.
  const message = runtimeMessage(cause).replace(/^Load model from .*? failed:\s*/s, '').replaceAll(`${dirname(candidate.path)}/`, '');
  const missingKernel = /Could not find an implementation for (\S+)\((\d+)\)/.exec(message);
  const hint = missingKernel
    ? `. This onnxruntime has no kernel for ${missingKernel[1]} at opset ${missingKernel[2]}: convert the model to a newer opset (e.g. onnx.version_converter.convert_version(model, 13)) and upload again`
    : '';
  return new BadRequestError(`onnxruntime cannot load the model: ${message}${hint}`, { cause });
}

/** Puts the served graph (non-tensor boundaries mapped) in the candidate's place before onnxruntime loads it. */
export async function replaceCandidate(candidate: CandidateFile, bytes: Uint8Array): Promise<void> {
  await writeFile(candidate.path, bytes);
  candidate.bytes = bytes.length;
}

/** The staged artifact of a model, in memory (benchmarks, tools); registration keeps it on disk. */
export async function stageArtifact(modelBytes: Uint8Array): Promise<Uint8Array> {
  const candidate = await candidateFromBytes(modelBytes);
  try {
    const examined = await examineCandidate(candidate, factsOf(decodeModel(modelBytes)), sha256Hex(modelBytes));
    if (!examined.staged) throw new Error('onnxruntime cannot save this graph in its ORT format');
    return new Uint8Array(await readFile(examined.staged.path));
  } finally {
    await candidate.dispose();
  }
}
