/**
 * Dynamic int8 quantization: weights quantized offline, activations at run time.
 *
 * MatMul and Gemm become onnxruntime's com.microsoft DynamicQuantizeMatMul (one fused kernel that
 * quantizes A, runs the u8s8 GEMM and rescales, bias included), or with `operatorPattern: 'onnx'`
 * the standard DynamicQuantizeLinear → MatMulInteger → Cast → Mul chain. LSTM becomes
 * com.microsoft DynamicQuantizeLSTM (int8 W and R, per channel). Conv, only when asked for, becomes
 * DynamicQuantizeLinear → ConvInteger → Cast → Mul (→ Add bias).
 */
import { node as makeNode, tensorFromFloat32, tensorFromInt8, tensorFromUint8, attr } from '../onnx/builder.ts';
import {
  addWeight,
  consumersIn,
  DataType,
  floatWeight,
  forEachGraph,
  NameAllocator,
  numberAttribute,
  pruneUnusedWeights,
  replaceNode,
  resolveWeight,
  tensorDims,
  useCounts,
  type GraphScope,
  type WeightSource,
} from '../onnx/graph-toolkit.ts';
import type { NodeProtoInit, TensorProtoInit } from '../onnx/model-proto.ts';
import { bypassWeightIdentities, finishModel, nodeLabel, prepareModel, type QuantizeReport, type QuantizeResult } from './common.ts';
import { int8DynamicOptionsSchema, isExcluded, minimumOpset, type Int8DynamicOptions } from './options.ts';
import { quantizeWeights, type QuantizedTensor, type QuantType } from './quant-math.ts';

function quantizedTensor(name: string, dims: number[], q: QuantizedTensor): TensorProtoInit {
  return q.values instanceof Int8Array ? tensorFromInt8(name, dims, q.values) : tensorFromUint8(name, dims, q.values);
}

function zeroPointTensor(name: string, dims: number[], type: QuantType, values: Int32Array): TensorProtoInit {
  return type === 'int8' ? tensorFromInt8(name, dims, Array.from(values)) : tensorFromUint8(name, dims, Array.from(values));
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

interface Rewriter {
  scope: GraphScope;
  names: NameAllocator;
  options: Int8DynamicOptions;
  uses: Map<string, number>;
  /** Quantized weights already written, by source name and layout, so a shared initializer is quantized once. */
  cache: Map<string, { q: string; scale: string; zeroPoint: string }>;
  /** DynamicQuantizeLinear outputs per activation (onnx pattern), shared by every consumer in one graph. */
  activations: Map<string, { q: string; scale: string; zeroPoint: string }>;
}

function writeQuantizedWeight(
  rw: Rewriter,
  source: WeightSource,
  layoutKey: string,
  data: Float32Array,
  dims: number[],
  type: QuantType,
  axis: number | undefined,
  symmetric: boolean,
  scaleDims: (channels: number) => number[],
  zeroPointScalar: boolean,
  before: NodeProtoInit,
): { q: string; scale: string; zeroPoint: string; scales: Float32Array } {
  const key = `${source.name}|${layoutKey}|${type}|${axis}|${symmetric}`;
  const q = quantizeWeights(data, dims, { type, symmetric, axis, reduceRange: rw.options.reduceRange });
  if (zeroPointScalar && q.zeroPoints.some((z) => z !== q.zeroPoints[0])) {
    throw new Error(`per-channel zero points of ${source.name} differ, but the kernel takes one for all channels`);
  }
  const cached = rw.cache.get(key);
  if (cached) return { ...cached, scales: q.scales };
  const base = source.name.replace(/[^A-Za-z0-9_./-]/g, '_');
  const names = { q: rw.names.fresh(`${base}_quantized`), scale: rw.names.fresh(`${base}_scale`), zeroPoint: rw.names.fresh(`${base}_zero_point`) };
  // A subgraph-local Constant stays a Constant in its own graph; anything else becomes an initializer of the defining graph.
  const kind = source.kind === 'constant' ? 'constant' : 'initializer';
  const at = source.kind === 'constant' && source.owner === rw.scope.graph ? before : undefined;
  addWeight(source.owner, kind, quantizedTensor(names.q, dims, q), at);
  addWeight(source.owner, kind, tensorFromFloat32(names.scale, scaleDims(q.scales.length), q.scales), at);
  const zeroPoints = zeroPointScalar ? q.zeroPoints.subarray(0, 1) : q.zeroPoints;
  addWeight(source.owner, kind, zeroPointTensor(names.zeroPoint, zeroPointScalar ? [] : scaleDims(q.zeroPoints.length), type, zeroPoints), at);
  rw.cache.set(key, names);
  return { ...names, scales: q.scales };
}

/** The constant bias of an Add that is the only reader of `output`, when it broadcasts as [N]. */
function foldableBias(rw: Rewriter, output: string, n: number): { add: NodeProtoInit; bias: string } | undefined {
  if (rw.uses.get(output) !== 1) return undefined;
  const add = consumersIn(rw.scope.graph).get(output)?.find((c) => c.opType === 'Add');
  if (!add || isExcluded(rw.options.exclude, add)) return undefined;
  const other = add.input![0] === output ? add.input![1]! : add.input![0]!;
  const source = resolveWeight(rw.scope, other);
  if (!source || source.tensor.dataType !== DataType.FLOAT) return undefined;
  const dims = tensorDims(source.tensor);
  if (dims.reduce((a, b) => a * b, 1) !== n || dims[dims.length - 1] !== n) return undefined;
  return { add, bias: other };
}

/** A bias as the 1-D [N] tensor the fused kernel wants; a [1, N] one gets a reshaped copy beside it. */
function biasVector(rw: Rewriter, name: string, n: number, before: NodeProtoInit): string {
  const source = resolveWeight(rw.scope, name)!;
  if (tensorDims(source.tensor).length === 1) return name;
  const vector = rw.names.fresh(`${name}_vector`);
  addWeight(source.owner, source.kind, tensorFromFloat32(vector, [n], floatWeight(source)!), source.owner === rw.scope.graph && source.kind === 'constant' ? before : undefined);
  return vector;
}

function activationQuantization(rw: Rewriter, input: string, nodes: NodeProtoInit[]): { q: string; scale: string; zeroPoint: string } {
  const known = rw.activations.get(input);
  if (known) return known;
  const base = input.replace(/[^A-Za-z0-9_./-]/g, '_');
  const names = { q: rw.names.fresh(`${base}_quantized`), scale: rw.names.fresh(`${base}_scale`), zeroPoint: rw.names.fresh(`${base}_zero_point`) };
  nodes.push(makeNode('DynamicQuantizeLinear', [input], [names.q, names.scale, names.zeroPoint], {}, rw.names.fresh(`${base}_DynamicQuantizeLinear`)));
  rw.activations.set(input, names);
  return names;
}

function rewriteMatMul(rw: Rewriter, node: NodeProtoInit, report: QuantizeReport): string | undefined {
  const isGemm = node.opType === 'Gemm';
  const source = resolveWeight(rw.scope, node.input![1]!);
  const raw = floatWeight(source);
  if (!source || !raw) return 'B is not a constant fp32 tensor';
  if (resolveWeight(rw.scope, node.input![0]!)) return 'A is a constant too (nothing to compute at run time)';
  const dims = tensorDims(source.tensor);
  if (dims.length !== 2) return `B has rank ${dims.length}; only 2-D weights are quantized`;
  let data = raw;
  let [k, n] = dims as [number, number];
  let bias: string | undefined;
  let biasAdd: NodeProtoInit | undefined;
  if (isGemm) {
    if (numberAttribute(node, 'transA', 0) !== 0) return 'Gemm with transA=1';
    if (numberAttribute(node, 'alpha', 1) !== 1 || numberAttribute(node, 'beta', 1) !== 1) return 'Gemm with alpha or beta other than 1';
    if (numberAttribute(node, 'transB', 0) === 1) {
      data = transpose2d(raw, k, n);
      [k, n] = [n, k];
    }
    const c = node.input![2];
    if (c) {
      const cSource = resolveWeight(rw.scope, c);
      const cDims = cSource ? tensorDims(cSource.tensor) : [];
      if (!cSource || cSource.tensor.dataType !== DataType.FLOAT || cDims.reduce((a, b) => a * b, 1) !== n) return 'Gemm whose C is not a constant [N] bias';
      bias = c;
    }
  }
  const output = node.output![0]!;
  if (!bias) {
    const folded = foldableBias(rw, output, n);
    if (folded) ({ bias, add: biasAdd } = { bias: folded.bias, add: folded.add });
  }
  const finalOutput = biasAdd ? biasAdd.output![0]! : output;
  if (bias) bias = biasVector(rw, bias, n, node);
  const type: QuantType = rw.options.weightType;
  const axis = rw.options.perChannel ? 1 : undefined;
  const layout = isGemm && numberAttribute(node, 'transB', 0) === 1 ? 'transposed' : 'plain';
  const w = writeQuantizedWeight(rw, source, layout, data, [k, n], type, axis, rw.options.symmetric, (c) => (c === 1 ? [] : [c]), false, node);
  const label = nodeLabel(node);
  const nodes: NodeProtoInit[] = [];
  let as: string;
  if (rw.options.operatorPattern === 'com.microsoft') {
    const inputs = [node.input![0]!, w.q, w.scale, w.zeroPoint, ...(bias ? [bias] : [])];
    nodes.push(makeNode('DynamicQuantizeMatMul', inputs, [finalOutput], {}, rw.names.fresh(`${label}_quant`), 'com.microsoft'));
    as = 'DynamicQuantizeMatMul';
  } else {
    const a = activationQuantization(rw, node.input![0]!, nodes);
    const integer = rw.names.fresh(`${label}_int32`);
    const asFloat = rw.names.fresh(`${label}_int32_float`);
    const scale = rw.names.fresh(`${label}_output_scale`);
    nodes.push(makeNode('MatMulInteger', [a.q, w.q, a.zeroPoint, w.zeroPoint], [integer], {}, rw.names.fresh(`${label}_MatMulInteger`)));
    nodes.push(makeNode('Cast', [integer], [asFloat], { to: attr.int(DataType.FLOAT) }, rw.names.fresh(`${label}_Cast`)));
    nodes.push(makeNode('Mul', [a.scale, w.scale], [scale], {}, rw.names.fresh(`${label}_scale_Mul`)));
    const scaled = bias ? rw.names.fresh(`${label}_scaled`) : finalOutput;
    nodes.push(makeNode('Mul', [asFloat, scale], [scaled], {}, rw.names.fresh(`${label}_Mul`)));
    if (bias) nodes.push(makeNode('Add', [scaled, bias], [finalOutput], {}, rw.names.fresh(`${label}_bias_Add`)));
    as = 'MatMulInteger';
  }
  replaceNode(rw.scope.graph, node, nodes);
  if (biasAdd) rw.scope.graph.node!.splice(rw.scope.graph.node!.indexOf(biasAdd), 1);
  report.quantized.push({ node: label, opType: node.opType!, graph: rw.scope.path, as: biasAdd ? `${as} (bias Add fused)` : as });
  return undefined;
}

function rewriteConv(rw: Rewriter, node: NodeProtoInit, report: QuantizeReport): string | undefined {
  const source = resolveWeight(rw.scope, node.input![1]!);
  const raw = floatWeight(source);
  if (!source || !raw) return 'W is not a constant fp32 tensor';
  const dims = tensorDims(source.tensor);
  if (dims.length < 3) return `W has rank ${dims.length}`;
  const biasName = node.input![2];
  if (biasName && !floatWeight(resolveWeight(rw.scope, biasName))) return 'B is not a constant fp32 tensor';
  // onnxruntime's ConvInteger takes uint8 filters with one zero point: symmetric per-channel keeps
  // every channel's zero point at 128, asymmetric per-channel cannot be expressed.
  const perChannel = rw.options.perChannel && rw.options.symmetric;
  if (rw.options.perChannel && !perChannel) report.notes.push(`${nodeLabel(node)}: asymmetric Conv weights quantized per tensor (ConvInteger takes one filter zero point)`);
  const channels = dims[0]!;
  const broadcast = [1, channels, ...dims.slice(2).map(() => 1)];
  const w = writeQuantizedWeight(rw, source, 'conv', raw, dims, 'uint8', perChannel ? 0 : undefined, rw.options.symmetric, (c) => (c === 1 ? [] : broadcast), true, node);
  const label = nodeLabel(node);
  const nodes: NodeProtoInit[] = [];
  const a = activationQuantization(rw, node.input![0]!, nodes);
  const integer = rw.names.fresh(`${label}_int32`);
  const asFloat = rw.names.fresh(`${label}_int32_float`);
  const scale = rw.names.fresh(`${label}_output_scale`);
  const output = node.output![0]!;
  nodes.push({ ...makeNode('ConvInteger', [a.q, w.q, a.zeroPoint, w.zeroPoint], [integer], {}, rw.names.fresh(`${label}_ConvInteger`)), attribute: node.attribute ?? [] });
  nodes.push(makeNode('Cast', [integer], [asFloat], { to: attr.int(DataType.FLOAT) }, rw.names.fresh(`${label}_Cast`)));
  nodes.push(makeNode('Mul', [a.scale, w.scale], [scale], {}, rw.names.fresh(`${label}_scale_Mul`)));
  if (biasName) {
    const biasSource = resolveWeight(rw.scope, biasName)!;
    const reshaped = rw.names.fresh(`${biasName}_broadcast`);
    addWeight(biasSource.owner, biasSource.kind, tensorFromFloat32(reshaped, broadcast, floatWeight(biasSource)!), biasSource.owner === rw.scope.graph && biasSource.kind === 'constant' ? node : undefined);
    const scaled = rw.names.fresh(`${label}_scaled`);
    nodes.push(makeNode('Mul', [asFloat, scale], [scaled], {}, rw.names.fresh(`${label}_Mul`)));
    nodes.push(makeNode('Add', [scaled, reshaped], [output], {}, rw.names.fresh(`${label}_bias_Add`)));
  } else {
    nodes.push(makeNode('Mul', [asFloat, scale], [output], {}, rw.names.fresh(`${label}_Mul`)));
  }
  replaceNode(rw.scope.graph, node, nodes);
  report.quantized.push({ node: label, opType: 'Conv', graph: rw.scope.path, as: 'ConvInteger' });
  return undefined;
}

/**
 * LSTM → DynamicQuantizeLSTM: W [D, 4H, I] and R [D, 4H, H] quantized to int8, symmetric, one scale
 * per gate row of each direction, then stored transposed ([D, I, 4H], [D, H, 4H]) as the kernel
 * reads them; the bias, sequence lengths, initial states and peepholes pass through in fp32.
 */
function rewriteLstm(rw: Rewriter, node: NodeProtoInit, report: QuantizeReport): string | undefined {
  const sources = [resolveWeight(rw.scope, node.input?.[1] ?? ''), resolveWeight(rw.scope, node.input?.[2] ?? '')];
  const raw = sources.map(floatWeight);
  if (!raw[0] || !raw[1]) {
    const computed = [1, 2].map((i) => rw.scope.graph.node?.find((n) => n.output?.includes(node.input?.[i] ?? ''))?.opType).find(Boolean);
    return computed
      ? `W or R is computed by a ${computed} node, not stored as a constant; fold constants first (onnxruntime's offline graph optimizer does)`
      : 'W or R is not a constant fp32 tensor';
  }
  if (numberAttribute(node, 'layout', 0) !== 0) return 'layout=1 (batch first); DynamicQuantizeLSTM reads sequence-first input';
  const dims = sources.map((w) => tensorDims(w!.tensor));
  if (dims.some((d) => d.length !== 3)) return 'W or R is not 3-D';
  const label = nodeLabel(node);
  const quantized = sources.map((source, i) => {
    const [directions, rows, columns] = dims[i] as [number, number, number];
    const q = quantizeWeights(raw[i]!, [directions * rows, columns], { type: 'int8', symmetric: true, axis: 0, reduceRange: rw.options.reduceRange });
    const transposed = new Int8Array(q.values.length);
    for (let d = 0; d < directions; d++) {
      for (let g = 0; g < rows; g++) for (let c = 0; c < columns; c++) transposed[(d * columns + c) * rows + g] = q.values[(d * rows + g) * columns + c]!;
    }
    const base = source!.name.replace(/[^A-Za-z0-9_./-]/g, '_');
    const names = { q: rw.names.fresh(`${base}_quantized`), scale: rw.names.fresh(`${base}_scale`), zeroPoint: rw.names.fresh(`${base}_zero_point`) };
    const kind = source!.kind === 'constant' ? 'constant' : 'initializer';
    const at = source!.kind === 'constant' && source!.owner === rw.scope.graph ? node : undefined;
    addWeight(source!.owner, kind, tensorFromInt8(names.q, [directions, columns, rows], transposed), at);
    addWeight(source!.owner, kind, tensorFromFloat32(names.scale, [directions, rows], q.scales), at);
    addWeight(source!.owner, kind, tensorFromInt8(names.zeroPoint, [directions, rows], Array.from(q.zeroPoints)), at);
    return names;
  });
  const inputs = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => node.input?.[i] ?? '');
  inputs[1] = quantized[0]!.q;
  inputs[2] = quantized[1]!.q;
  inputs.push(quantized[0]!.scale, quantized[0]!.zeroPoint, quantized[1]!.scale, quantized[1]!.zeroPoint);
  const attributes = (node.attribute ?? []).filter((a) => a.name !== 'layout');
  replaceNode(rw.scope.graph, node, [{ ...makeNode('DynamicQuantizeLSTM', inputs, node.output ?? [], {}, rw.names.fresh(`${label}_quant`), 'com.microsoft'), attribute: attributes }]);
  report.quantized.push({ node: label, opType: 'LSTM', graph: rw.scope.path, as: 'DynamicQuantizeLSTM' });
  return undefined;
}

/** Why an op with weights that is not in opTypes stays fp32. */
const NOT_SELECTED: Record<string, string> = {
  Conv: 'Conv is not in opTypes by default: onnxruntime runs ConvInteger slower than fp32 Conv on x86 CPUs; int8-static (QDQ) quantizes convolutions into QLinearConv',
  GRU: 'onnxruntime has no dynamically quantized GRU kernel (DynamicQuantizeLSTM covers LSTM only)',
  RNN: 'onnxruntime has no dynamically quantized RNN kernel (DynamicQuantizeLSTM covers LSTM only)',
  ConvTranspose: 'onnxruntime has no integer ConvTranspose kernel',
};

/** Quantizes the weights of MatMul, Gemm and LSTM (and Conv when listed) in every graph, subgraphs included, to int8. */
export function quantizeDynamic(bytes: Uint8Array, input: Partial<Int8DynamicOptions> = {}): QuantizeResult {
  const options = int8DynamicOptionsSchema.parse(input);
  const model = prepareModel(bytes, minimumOpset({ method: 'int8-dynamic', options }), 'int8-dynamic');
  const report: QuantizeReport = { method: 'int8-dynamic', inputBytes: bytes.byteLength, outputBytes: 0, quantized: [], skipped: [], notes: [] };
  const bypassed = bypassWeightIdentities(model);
  if (bypassed > 0) report.notes.push(`${bypassed} Identity nodes that pass a weight on were bypassed, so shared weights are found and quantized once`);
  report.notes.push(
    `kernels: ${options.operatorPattern === 'com.microsoft' ? 'DynamicQuantizeMatMul' : 'MatMulInteger'} for ${options.opTypes.filter((o) => o === 'MatMul' || o === 'Gemm').join(' and ') || 'no MatMul or Gemm'}` +
      `${options.opTypes.includes('LSTM') ? ', DynamicQuantizeLSTM for LSTM' : ''}${options.opTypes.includes('Conv') ? ', ConvInteger for Conv (slower than fp32 on x86 CPUs)' : '; Conv stays fp32 (use int8-static for convolutions)'}`,
  );
  const names = new NameAllocator(model);
  const uses = useCounts(model);
  const cache = new Map<string, { q: string; scale: string; zeroPoint: string }>();
  forEachGraph(model, (scope) => {
    const rw: Rewriter = { scope, names, options, uses, cache, activations: new Map() };
    for (const node of [...(scope.graph.node ?? [])]) {
      const op = node.opType ?? '';
      if (node.domain && node.domain !== 'ai.onnx') continue;
      if (!(options.opTypes as string[]).includes(op)) {
        const known = NOT_SELECTED[op] ?? (['MatMul', 'Gemm', 'LSTM'].includes(op) ? `${op} is not in opTypes` : undefined);
        if (known) report.skipped.push({ node: nodeLabel(node), opType: op, graph: scope.path, reason: known });
        continue;
      }
      if (!scope.graph.node!.includes(node)) continue; // an Add already fused away
      if (isExcluded(options.exclude, node)) {
        report.skipped.push({ node: nodeLabel(node), opType: op, graph: scope.path, reason: 'excluded' });
        continue;
      }
      const reason = op === 'Conv' ? rewriteConv(rw, node, report) : op === 'LSTM' ? rewriteLstm(rw, node, report) : rewriteMatMul(rw, node, report);
      if (reason) report.skipped.push({ node: nodeLabel(node), opType: op, graph: scope.path, reason });
    }
  });
  pruneUnusedWeights(model);
  const out = finishModel(model, 'int8-dynamic', report.quantized.some((q) => q.as.startsWith('DynamicQuantize')) ? { 'com.microsoft': 1 } : {});
  report.outputBytes = out.byteLength;
  return { bytes: out, report };
}
