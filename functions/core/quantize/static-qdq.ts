/**
 * Static int8 quantization in QDQ form: every activation that a quantizable op reads or writes gets a
 * QuantizeLinear → DequantizeLinear pair with a scale fixed by calibration, weights are stored as int8
 * (per channel) behind a DequantizeLinear, biases as int32 with scale x_scale * w_scale. The model
 * stays a plain fp32-typed ONNX graph that any runtime can execute; onnxruntime's QDQ transformer
 * fuses each DQ → op → Q group into its quantized kernel (QLinearConv, QLinearMatMul, QGemm,
 * QLinearAdd, QLinearLeakyRelu, QLinearGlobalAveragePool, ...).
 *
 * Calibration sees only tensors of the main graph, so nodes inside subgraphs stay fp32 (use
 * int8-dynamic for those).
 */
import { attr, node as makeNode, tensorFromFloat32, tensorFromInt32, tensorFromInt8, tensorFromUint8 } from '../onnx/builder.ts';
import {
  DataType,
  floatWeight,
  foldBatchNormalization,
  forEachGraph,
  NameAllocator,
  numberAttribute,
  opsetVersion,
  pruneUnusedWeights,
  resolveWeight,
  tensorDims,
  UnsupportedModelError,
  type GraphScope,
  type WeightSource,
} from '../onnx/graph-toolkit.ts';
import { encodeModel, type NodeProtoInit } from '../onnx/model-proto.ts';
import { calibrateRanges, type CalibrationBatches } from './calibration.ts';
import { bypassWeightIdentities, finishModel, nodeLabel, prepareModel, type QuantizeReport, type QuantizeResult } from './common.ts';
import { int8StaticOptionsSchema, isExcluded, minimumOpset, type Int8StaticOptions } from './options.ts';
import { quantParams, quantizeWeights, roundHalfEven, type QuantParams, type QuantType } from './quant-math.ts';

type StaticInput = Omit<Partial<Int8StaticOptions>, 'dataset'> & { dataset?: string };

/** Which inputs of an op are activations to quantize, and which is its weight and bias. */
function roles(node: NodeProtoInit): { activations: number[]; weight?: number; bias?: number } {
  switch (node.opType) {
    case 'Conv':
      return { activations: [0], weight: 1, bias: 2 };
    case 'Gemm':
      return { activations: [0], weight: 1, bias: 2 };
    case 'MatMul':
      return { activations: [0], weight: 1 };
    case 'Add':
    case 'Mul':
      return { activations: [0, 1] };
    case 'Concat':
      return { activations: (node.input ?? []).map((_, i) => i) };
    default:
      return { activations: [0] };
  }
}

function isFloatTensorName(scope: GraphScope, name: string, floatNames: Set<string>): boolean {
  const w = resolveWeight(scope, name);
  return w ? w.tensor.dataType === DataType.FLOAT : floatNames.has(name);
}

/**
 * Float-typed names of the main graph: inputs declared FLOAT and the outputs of every op that keeps
 * its input type; anything else (shapes, indices) is never quantized.
 */
function floatTensors(scope: GraphScope): Set<string> {
  const names = new Set<string>();
  for (const i of scope.graph.input ?? []) if (i.type?.tensorType?.elemType === DataType.FLOAT) names.add(i.name ?? '');
  const typed = new Set(['Conv', 'Gemm', 'MatMul', 'Add', 'Mul', 'Sub', 'Div', 'LeakyRelu', 'Relu', 'Sigmoid', 'GlobalAveragePool', 'AveragePool', 'MaxPool', 'Concat', 'Reshape', 'Flatten', 'Transpose', 'Squeeze', 'Unsqueeze', 'BatchNormalization', 'Softmax', 'Identity']);
  for (const n of scope.graph.node ?? []) {
    if (!typed.has(n.opType ?? '')) continue;
    const first = n.input?.[0] ?? '';
    if (isFloatTensorName(scope, first, names)) for (const o of n.output ?? []) names.add(o);
  }
  return names;
}

interface Plan {
  targets: NodeProtoInit[];
  /** Activation tensors that get a Q/DQ pair. */
  tensors: Set<string>;
}

function plan(scope: GraphScope, options: Int8StaticOptions, report: QuantizeReport): Plan {
  const floats = floatTensors(scope);
  const targets: NodeProtoInit[] = [];
  const tensors = new Set<string>();
  for (const n of scope.graph.node ?? []) {
    const op = n.opType ?? '';
    if (!(options.opTypes as string[]).includes(op) || (n.domain && n.domain !== 'ai.onnx')) continue;
    if (isExcluded(options.exclude, n)) {
      report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: 'excluded' });
      continue;
    }
    const r = roles(n);
    if (r.weight !== undefined) {
      const w = resolveWeight(scope, n.input![r.weight]!);
      if (!floatWeight(w)) {
        report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: 'weight is not a constant fp32 tensor' });
        continue;
      }
      const dims = tensorDims(w!.tensor);
      if (op !== 'Conv' && dims.length !== 2) {
        report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: `weight has rank ${dims.length}` });
        continue;
      }
      if (op === 'Gemm' && (numberAttribute(n, 'transA', 0) !== 0 || numberAttribute(n, 'alpha', 1) !== 1 || numberAttribute(n, 'beta', 1) !== 1)) {
        report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: 'Gemm with transA, alpha or beta' });
        continue;
      }
      if (r.bias !== undefined && n.input![r.bias] && !floatWeight(resolveWeight(scope, n.input![r.bias]!))) {
        report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: 'bias is not a constant fp32 tensor' });
        continue;
      }
    }
    const activationNames = r.activations.map((i) => n.input?.[i] ?? '').filter(Boolean);
    if (!activationNames.every((a) => isFloatTensorName(scope, a, floats)) || !(n.output ?? []).every((o) => floats.has(o))) {
      report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: 'reads or writes a tensor that is not fp32' });
      continue;
    }
    targets.push(n);
    for (const a of activationNames) tensors.add(a);
    // Pooling ops pass their input's scale through; quantizing their output too keeps the group intact for fusion.
    for (const o of n.output ?? []) tensors.add(o);
  }
  return { targets, tensors };
}

/** Quantizes a model in QDQ form, calibrated on `batches`. */
export async function quantizeStatic(bytes: Uint8Array, batches: CalibrationBatches, input: StaticInput = {}): Promise<QuantizeResult> {
  const options = int8StaticOptionsSchema.parse({ dataset: 'inline', ...input });
  const model = prepareModel(bytes, minimumOpset({ method: 'int8-static', options }), 'int8-static');
  const report: QuantizeReport = { method: 'int8-static', inputBytes: bytes.byteLength, outputBytes: 0, quantized: [], skipped: [], notes: [] };
  const bypassed = bypassWeightIdentities(model);
  if (bypassed > 0) report.notes.push(`${bypassed} Identity nodes that pass a weight on were bypassed, so shared weights are found`);
  if (options.foldBatchNorm) {
    const folded = foldBatchNormalization(model);
    if (folded > 0) report.notes.push(`folded ${folded} BatchNormalization nodes into the Conv before them`);
  }
  let main: GraphScope | undefined;
  forEachGraph(model, (scope) => {
    if (!scope.parent) {
      main = scope;
      return;
    }
    for (const n of scope.graph.node ?? []) {
      if ((options.opTypes as string[]).includes(n.opType ?? '')) {
        report.skipped.push({ node: nodeLabel(n), opType: n.opType ?? '', graph: scope.path, reason: 'inside a subgraph, which calibration cannot observe; int8-dynamic quantizes these' });
      }
    }
  });
  const scope = main!;
  const { targets, tensors } = plan(scope, options, report);
  if (targets.length === 0) throw new UnsupportedModelError(`int8-static found nothing to quantize in the main graph (looked for ${options.opTypes.join(', ')})`);

  // Constant activations (an Add's bias, say) are quantized from their own values, not calibrated.
  const calibrated = [...tensors].filter((t) => !resolveWeight(scope, t));
  const ranges = await calibrateRanges(encodeModel(model), calibrated, batches, {
    method: options.calibration,
    percentile: options.percentile,
    symmetric: options.activationSymmetric,
  });
  const aType: QuantType = options.activationType;
  const params = new Map<string, QuantParams>();
  for (const t of tensors) {
    const w = resolveWeight(scope, t);
    let range = ranges.get(t);
    if (w) {
      const values = floatWeight(w)!;
      range = { min: values.reduce((a, b) => Math.min(a, b), 0), max: values.reduce((a, b) => Math.max(a, b), 0) };
    }
    params.set(t, quantParams(range!.min, range!.max, aType, options.activationSymmetric));
  }

  const names = new NameAllocator(model);
  const graph = scope.graph;
  const newNodes: NodeProtoInit[] = [];
  const dequantized = new Map<string, string>();
  const zeroPointTensor = (name: string, type: QuantType, values: number[], dims: number[]) =>
    type === 'int8' ? tensorFromInt8(name, dims, values) : tensorFromUint8(name, dims, values);

  const qdqPair = (tensor: string): NodeProtoInit[] => {
    const p = params.get(tensor)!;
    const base = tensor.replace(/[^A-Za-z0-9_./-]/g, '_');
    const scale = names.fresh(`${base}_scale`);
    const zp = names.fresh(`${base}_zero_point`);
    const q = names.fresh(`${base}_quantized`);
    const dq = names.fresh(`${base}_dequantized`);
    graph.initializer!.push(tensorFromFloat32(scale, [], [p.scale]), zeroPointTensor(zp, aType, [p.zeroPoint], []));
    dequantized.set(tensor, dq);
    return [
      makeNode('QuantizeLinear', [tensor, scale, zp], [q], {}, names.fresh(`${base}_QuantizeLinear`)),
      makeNode('DequantizeLinear', [q, scale, zp], [dq], {}, names.fresh(`${base}_DequantizeLinear`)),
    ];
  };

  const weightDq = (target: NodeProtoInit, source: WeightSource, axis: number | undefined, inputScale: QuantParams, biasIndex: number | undefined): { weight: string; bias?: string } => {
    const dims = tensorDims(source.tensor);
    const values = floatWeight(source)!;
    const q = quantizeWeights(values, dims, { type: 'int8', symmetric: options.weightSymmetric, axis, reduceRange: options.reduceRange });
    const base = `${source.name}`.replace(/[^A-Za-z0-9_./-]/g, '_');
    const qName = names.fresh(`${base}_quantized`);
    const scale = names.fresh(`${base}_scale`);
    const zp = names.fresh(`${base}_zero_point`);
    const dq = names.fresh(`${base}_dequantized`);
    const perAxis = axis !== undefined;
    graph.initializer!.push(
      tensorFromInt8(qName, dims, q.values as Int8Array),
      tensorFromFloat32(scale, perAxis ? [q.scales.length] : [], q.scales),
      tensorFromInt8(zp, perAxis ? [q.zeroPoints.length] : [], Array.from(q.zeroPoints)),
    );
    newNodes.push(makeNode('DequantizeLinear', [qName, scale, zp], [dq], perAxis ? { axis: attr.int(axis) } : {}, names.fresh(`${base}_DequantizeLinear`)));
    const result: { weight: string; bias?: string } = { weight: dq };
    const biasName = biasIndex !== undefined ? target.input?.[biasIndex] : undefined;
    if (biasName) {
      const bias = floatWeight(resolveWeight(scope, biasName))!;
      const channels = bias.length;
      const biasScales = new Float32Array(channels);
      const biasValues = new Int32Array(channels);
      for (let c = 0; c < channels; c++) {
        biasScales[c] = Math.fround(inputScale.scale * q.scales[perAxis ? c : 0]!);
        biasValues[c] = biasScales[c] === 0 ? 0 : Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundHalfEven(bias[c]! / biasScales[c]!)));
      }
      const bBase = biasName.replace(/[^A-Za-z0-9_./-]/g, '_');
      const bq = names.fresh(`${bBase}_quantized`);
      const bs = names.fresh(`${bBase}_scale`);
      const bzp = names.fresh(`${bBase}_zero_point`);
      const bdq = names.fresh(`${bBase}_dequantized`);
      graph.initializer!.push(
        tensorFromInt32(bq, [channels], biasValues),
        tensorFromFloat32(bs, perAxis ? [channels] : [], perAxis ? biasScales : biasScales.subarray(0, 1)),
        tensorFromInt32(bzp, perAxis ? [channels] : [], perAxis ? new Int32Array(channels) : [0]),
      );
      newNodes.push(makeNode('DequantizeLinear', [bq, bs, bzp], [bdq], perAxis ? { axis: attr.int(0) } : {}, names.fresh(`${bBase}_DequantizeLinear`)));
      result.bias = bdq;
    }
    return result;
  };

  if (options.perChannel && (opsetVersion(model, '') ?? 0) < 13) throw new UnsupportedModelError('per-channel QDQ needs opset 13 or later');
  const targetSet = new Set(targets);
  // Graph inputs and constant activations get their pair first; other tensors right after their producer.
  for (const input of graph.input ?? []) if (tensors.has(input.name ?? '')) newNodes.push(...qdqPair(input.name!));
  for (const t of tensors) if (resolveWeight(scope, t)) newNodes.push(...qdqPair(t));
  for (const n of graph.node ?? []) {
    if (targetSet.has(n)) {
      const r = roles(n);
      const inputs = [...(n.input ?? [])];
      for (const i of r.activations) if (inputs[i] && dequantized.has(inputs[i])) inputs[i] = dequantized.get(inputs[i])!;
      if (r.weight !== undefined) {
        const source = resolveWeight(scope, n.input![r.weight]!)!;
        const op = n.opType;
        const axis = !options.perChannel ? undefined : op === 'Conv' ? 0 : op === 'Gemm' && numberAttribute(n, 'transB', 0) === 1 ? 0 : 1;
        const w = weightDq(n, source, axis, params.get(n.input![r.activations[0]!]!)!, r.bias);
        inputs[r.weight] = w.weight;
        if (w.bias && r.bias !== undefined) inputs[r.bias] = w.bias;
      }
      newNodes.push({ ...n, input: inputs });
      report.quantized.push({ node: nodeLabel(n), opType: n.opType!, graph: scope.path, as: 'QDQ' });
    } else {
      newNodes.push({ ...n, input: (n.input ?? []).map((i) => (i && dequantized.has(i) && !resolveWeight(scope, i) ? dequantized.get(i)! : i)) });
    }
    for (const o of n.output ?? []) if (tensors.has(o) && !dequantized.has(o)) newNodes.push(...qdqPair(o));
  }
  graph.node = newNodes;
  pruneUnusedWeights(model);
  const out = finishModel(model, 'int8-static');
  report.outputBytes = out.byteLength;
  report.notes.push(`calibration: ${options.calibration}${options.calibration === 'percentile' ? ` ${options.percentile}` : ''} over ${calibrated.length} tensors`);
  return { bytes: out, report };
}
