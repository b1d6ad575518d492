import ort from '../onnx/ort.ts';

/**
 * A staged artifact is the model pre-optimized into onnxruntime's own format by the very onnxruntime
 * version and CPU architecture that serve it, so a session skips parsing protobuf and re-running graph
 * optimizations at cold start. The key names both; a server whose key differs uses model.onnx.
 */
export function stagingKey(): string {
  return `ort-${ort.env.versions.node ?? ort.env.versions.common}-${process.platform}-${process.arch}`;
}

/**
 * Session options for a staged artifact: onnxruntime reads the ORT-format bytes in place (no copy of
 * the weights), which is why the caller must keep the buffer alive as long as the session.
 */
export const STAGED_SESSION_EXTRA = {
  session: { load_model_format: 'ORT', use_ort_model_bytes_directly: '1', use_ort_model_bytes_for_initializers: '1' },
} as const;
