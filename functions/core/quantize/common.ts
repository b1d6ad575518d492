import { assertNoExternalData, assertNotQuantized, ensureOpset, forEachGraph, opsetVersion, resolveWeight, UnsupportedModelError } from '../onnx/graph-toolkit.ts';
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

/** Per op type: how many nodes were converted (and to what), how many kept, and why. */
export type OpTypeSummary = Record<string, { converted: number; kept: number; as: Record<string, number>; reasons: Record<string, number> }>;

export function summarizeByOpType(report: Pick<QuantizeReport, 'quantized' | 'skipped'>): OpTypeSummary {
  const summary: OpTypeSummary = {};
  const entry = (op: string) => (summary[op] ??= { converted: 0, kept: 0, as: {}, reasons: {} });
  for (const q of report.quantized) {
    const e = entry(q.opType);
    e.converted++;
    e.as[q.as] = (e.as[q.as] ?? 0) + 1;
  }
  for (const s of report.skipped) {
    const e = entry(s.opType);
    e.kept++;
    e.reasons[s.reason] = (e.reasons[s.reason] ?? 0) + 1;
  }
  return summary;
}

/** One line per op type, e.g. "MatMul: 16 converted, 6 kept (6: B is not a constant fp32 tensor)". */
export function describeByOpType(summary: OpTypeSummary): string {
  return Object.entries(summary)
    .map(([op, e]) => `${op}: ${e.converted} converted, ${e.kept} kept${e.kept > 0 ? ` (${Object.entries(e.reasons).map(([reason, n]) => `${n}: ${reason}`).join('; ')})` : ''}`)
    .join('; ');
}

/**
 * Makes every reader of an Identity whose input is a weight (an initializer or Constant, directly
 * or through a chain of Identity nodes) read the weight itself, and drops those Identity nodes.
 * torch.onnx.export stores equal parameters once and hands them to the other layers through
 * Identity; without this, those layers' weights look computed and stay fp32, and the shared tensor
 * stays in fp32 beside its quantized copy. An Identity whose output is a graph's output (main graph or
 * subgraph) is kept. Returns how many were bypassed.
 */
export function bypassWeightIdentities(model: ModelProto): number {
  const renamed = new Map<string, string>();
  let bypassed = 0;
  forEachGraph(model, (scope) => {
    const graph = scope.graph;
    const outputs = new Set((graph.output ?? []).map((o) => o.name));
    const kept = [];
    for (const node of graph.node ?? []) {
      node.input = (node.input ?? []).map((i) => renamed.get(i) ?? i);
      const input = node.input[0];
      const output = node.output?.[0];
      const isWeightIdentity = node.opType === 'Identity' && (!node.domain || node.domain === 'ai.onnx') && input && output && resolveWeight(scope, input);
      if (isWeightIdentity && !outputs.has(output)) {
        renamed.set(output, input);
        bypassed++;
        continue;
      }
      kept.push(node);
    }
    graph.node = kept;
    graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !renamed.has(v.name ?? ''));
  });
  // forEachGraph visits a graph before its subgraphs, so a reader inside one sees its parents' renames
  // (a subgraph never returns an outer name directly: onnxruntime requires an Identity there, kept above).
  return bypassed;
}

export interface QuantizeResult {
  bytes: Uint8Array;
  report: QuantizeReport;
}

/** Why a model's opset is too old for a method; the API says it at submission, the quantizer again if reached. */
export function opsetRefusal(method: QuantizeMethod, minimumOpset: number, opset: number | undefined): string {
  return `${method} needs ai.onnx opset ${minimumOpset} or later, the model imports ${opset ?? 'none'}; convert it first (onnx.version_converter.convert_version(model, ${minimumOpset})) and upload it as a new version`;
}

/** Decodes and checks what every method refuses: external data and models that are already quantized. */
export function prepareModel(bytes: Uint8Array, minimumOpset: number, method: QuantizeMethod): ModelProto {
  const model = decodeModel(bytes);
  assertNoExternalData(model);
  assertNotQuantized(model);
  const opset = opsetVersion(model, '');
  if (opset === undefined || opset < minimumOpset) throw new UnsupportedModelError(opsetRefusal(method, minimumOpset, opset));
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
