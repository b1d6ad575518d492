import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort, { type InferenceSession } from '../ort.ts';

/**
 * A staged artifact is the model pre-optimized into onnxruntime's own format by the very onnxruntime
 * version and CPU architecture that serve it, so a session skips parsing protobuf and re-running graph
 * optimizations at cold start. The key names both; a server whose key differs uses model.onnx.
 */
export function stagingKey(): string {
  return `ort-${ort.env.versions.node ?? ort.env.versions.common}-${process.platform}-${process.arch}`;
}

/**
 * Optimizations up to 'extended' only: 'all' adds layout changes tuned to the CPU that ran it (ORT
 * warns the result is hardware specific), and the registering Lambda may run on another CPU model.
 */
export async function stageArtifact(modelBytes: Uint8Array): Promise<Uint8Array> {
  const dir = await mkdtemp(join(tmpdir(), 'ai-mass-stage-'));
  const file = join(dir, 'model.ort');
  try {
    const session = await ort.InferenceSession.create(modelBytes, {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: file,
      logSeverityLevel: 3,
      extra: { session: { save_model_format: 'ORT' } },
    } as InferenceSession.SessionOptions);
    await session.release();
    return new Uint8Array(await readFile(file));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Session options for a staged artifact: onnxruntime reads the ORT-format bytes in place (no copy of
 * the weights), which is why the caller must keep the buffer alive as long as the session.
 */
export const STAGED_SESSION_EXTRA = {
  session: { load_model_format: 'ORT', use_ort_model_bytes_directly: '1', use_ort_model_bytes_for_initializers: '1' },
} as const;
