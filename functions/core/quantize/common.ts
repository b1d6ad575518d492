import { assertNoExternalData, assertNotQuantized, ensureOpset, opsetVersion, UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import { decodeModel, encodeModel, type ModelProto } from '../onnx/model-proto.ts';
import type { QuantizeMethod } from './options.ts';

/** What a quantizer did, node by node: stored beside the job so a user sees what stayed fp32 and why. */
export interface QuantizeReport {
  method: QuantizeMethod;
  inputBytes: number;
  outputBytes: number;
  quantized: { node: string; opType: string; graph: string; as: string }[];
  skipped: { node: string; opType: string; graph: string; reason: string }[];
  notes: string[];
}

export interface QuantizeResult {
  bytes: Uint8Array;
  report: QuantizeReport;
}

/** Decodes and checks what every method refuses: external data and models that are already quantized. */
export function prepareModel(bytes: Uint8Array, minimumOpset: number, method: QuantizeMethod): ModelProto {
  const model = decodeModel(bytes);
  assertNoExternalData(model);
  assertNotQuantized(model);
  const opset = opsetVersion(model, '');
  if (opset === undefined || opset < minimumOpset) {
    throw new UnsupportedModelError(
      `${method} needs ai.onnx opset ${minimumOpset} or later, the model imports ${opset ?? 'none'}; convert it first (onnx.version_converter.convert_version(model, ${minimumOpset}))`,
    );
  }
  return model;
}

/** Encodes the rewritten model with a metadata entry that says how it was made; other metadata is kept as it was. */
export function finishModel(model: ModelProto, method: QuantizeMethod, extraDomains: Record<string, number> = {}): Uint8Array {
  for (const [domain, version] of Object.entries(extraDomains)) ensureOpset(model, domain, version);
  const key = 'ai-mass.quantization';
  model.metadataProps = model.metadataProps.filter((p) => p.key !== key);
  model.metadataProps.push({ key, value: method } as (typeof model.metadataProps)[number]);
  return encodeModel(model);
}

export function nodeLabel(node: { name?: string | null; output?: string[] | null; opType?: string | null }): string {
  return node.name || node.output?.[0] || node.opType || '?';
}
