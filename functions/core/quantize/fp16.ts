/**
 * fp16 conversion: every float weight and every float tensor computed inside the model becomes
 * float16, in the main graph and every subgraph. The model's own inputs and outputs keep their fp32
 * type (a Cast after each input and before each output), so clients call it exactly as before. Ops on
 * the block list, and excluded nodes, run in fp32 between Casts.
 *
 * Knowing which tensors are float needs their types; they are propagated op by op from the inputs,
 * weights and Constant nodes. An op whose output type this code cannot tell is refused by name.
 */
import { attr, node as makeNode, tensorFromFloat16 } from '../onnx/builder.ts';
import { DataType, forEachGraph, NameAllocator, numberAttribute, subgraphsOf, UnsupportedModelError, type GraphScope } from '../onnx/graph-toolkit.ts';
import { onnx, readFloat32Tensor, type GraphProtoInit, type NodeProtoInit, type TensorProtoInit, type ValueInfoProtoInit } from '../onnx/model-proto.ts';
import { finishModel, nodeLabel, prepareModel, type QuantizeReport, type QuantizeResult } from './common.ts';
import { DEFAULT_FP16_BLOCKED_OPS, fp16OptionsSchema, isExcluded, type Fp16Options } from './options.ts';

const FLOAT = DataType.FLOAT;
const FLOAT16 = DataType.FLOAT16;
const INT64 = DataType.INT64;
const BOOL = DataType.BOOL;

/** Ops whose every output has the type of their first input. */
const SAME_AS_FIRST = new Set([
  'Abs', 'Acos', 'Acosh', 'Add', 'Asin', 'Asinh', 'Atan', 'Atanh', 'AveragePool', 'BatchNormalization', 'Ceil', 'Celu', 'Clip',
  'Concat', 'Conv', 'ConvTranspose', 'Cos', 'Cosh', 'DepthToSpace', 'Div', 'Dropout', 'Elu', 'Erf', 'Exp', 'Expand', 'Flatten',
  'Floor', 'Gather', 'GatherElements', 'GatherND', 'Gelu', 'Gemm', 'GlobalAveragePool', 'GlobalMaxPool', 'GroupNormalization',
  'HardSigmoid', 'HardSwish', 'Hardmax', 'Identity', 'InstanceNormalization', 'LRN', 'LayerNormalization', 'LeakyRelu', 'Log',
  'LogSoftmax', 'LpNormalization', 'LSTM', 'GRU', 'RNN', 'MatMul', 'Max', 'MaxPool', 'Mean', 'Min', 'Mish', 'Mod', 'Mul', 'Neg',
  'Pad', 'Pow', 'PRelu', 'Reciprocal', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean',
  'ReduceMin', 'ReduceProd', 'ReduceSum', 'ReduceSumSquare', 'Relu', 'Reshape', 'Resize', 'Round', 'ScatterElements', 'ScatterND',
  'Selu', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh', 'Slice', 'Softmax', 'Softplus', 'Softsign', 'SpaceToDepth', 'Split', 'Sqrt',
  'Squeeze', 'Sub', 'Sum', 'Tan', 'Tanh', 'ThresholdedRelu', 'Tile', 'TopK', 'Transpose', 'Trilu', 'Unsqueeze', 'Upsample',
  'CumSum', 'Einsum', 'ReverseSequence', 'Compress', 'RoiAlign', 'Range', 'STFT', 'DFT',
]);
const ALWAYS = new Map<string, number>([
  ['Shape', INT64], ['Size', INT64], ['NonZero', INT64], ['ArgMax', INT64], ['ArgMin', INT64], ['NonMaxSuppression', INT64],
  ['Equal', BOOL], ['Less', BOOL], ['Greater', BOOL], ['LessOrEqual', BOOL], ['GreaterOrEqual', BOOL], ['Not', BOOL],
  ['And', BOOL], ['Or', BOOL], ['Xor', BOOL], ['IsNaN', BOOL], ['IsInf', BOOL],
]);
/** Secondary outputs with a fixed type (TopK's indices, MaxPool's indices, Dropout's mask). */
const SECOND_OUTPUT = new Map<string, number>([['TopK', INT64], ['MaxPool', INT64], ['Dropout', BOOL]]);

function elemType(v: ValueInfoProtoInit): number | undefined {
  return v.type?.tensorType?.elemType ?? undefined;
}

/** Element types of every name, over all graphs (names are unique across a model). */
function inferTypes(model: { graph?: GraphProtoInit | null }, options: Fp16Options): Map<string, number> {
  const types = new Map<string, number>();
  const visit = (graph: GraphProtoInit, path: string) => {
    for (const v of [...(graph.input ?? []), ...(graph.valueInfo ?? [])]) {
      const t = elemType(v);
      if (t) types.set(v.name ?? '', t);
    }
    for (const t of graph.initializer ?? []) types.set(t.name ?? '', t.dataType ?? 0);
    for (const n of graph.node ?? []) {
      for (const { attribute, graph: sub } of subgraphsOf(n)) visit(sub, `${path}/${n.name || n.opType}.${attribute}`);
      const op = n.opType ?? '';
      const outputs = (n.output ?? []).filter(Boolean);
      const set = (name: string, t: number | undefined) => {
        if (t !== undefined && !types.has(name)) types.set(name, t);
      };
      const domainKnown = !n.domain || n.domain === 'ai.onnx';
      if (op === 'Constant') {
        const a = n.attribute?.[0];
        set(outputs[0]!, a?.t ? (a.t.dataType ?? FLOAT) : a?.name === 'value_int' || a?.name === 'value_ints' ? INT64 : FLOAT);
      } else if (op === 'Cast' && domainKnown) {
        set(outputs[0]!, numberAttribute(n, 'to', FLOAT));
      } else if (op === 'CastLike') {
        set(outputs[0]!, types.get(n.input?.[1] ?? ''));
      } else if (op === 'ConstantOfShape') {
        const value = n.attribute?.find((a) => a.name === 'value')?.t;
        set(outputs[0]!, value?.dataType ?? FLOAT);
      } else if (op === 'If' || op === 'Loop' || op === 'Scan') {
        const body = subgraphsOf(n)[0]!.graph;
        const bodyOutputs = (body.output ?? []).slice(op === 'Loop' ? 1 : 0);
        outputs.forEach((o, i) => set(o, bodyOutputs[i] ? elemType(bodyOutputs[i]) : undefined));
      } else if (ALWAYS.has(op) && domainKnown) {
        for (const o of outputs) set(o, ALWAYS.get(op));
      } else if (op === 'Where' && domainKnown) {
        set(outputs[0]!, types.get(n.input?.[1] ?? ''));
      } else if (SAME_AS_FIRST.has(op) && domainKnown) {
        const t = types.get(n.input?.[0] ?? '');
        outputs.forEach((o, i) => set(o, i > 0 && SECOND_OUTPUT.has(op) ? SECOND_OUTPUT.get(op) : t));
      } else if (!outputs.every((o) => types.has(o))) {
        if (isExcluded(options.exclude, n) || options.blockOps.includes(op)) continue;
        throw new UnsupportedModelError(
          `fp16: node "${nodeLabel(n)}" in ${path} is ${n.domain ? `${n.domain}.` : ''}${op}, an op whose output types the converter does not know; keep it in fp32 with exclude.opTypes: ["${op}"] (its outputs must then be declared in value_info) or convert another way`,
        );
      }
    }
  };
  visit(model.graph!, 'main');
  return types;
}

function toFloat16Tensor(tensor: TensorProtoInit): TensorProtoInit {
  return { ...tensorFromFloat16(tensor.name ?? '', (tensor.dims ?? []).map(Number), readFloat32Tensor(tensor)), ...(tensor.docString ? { docString: tensor.docString } : {}) };
}

const FLOAT16_MAX = 65504;

/** Converts a model to fp16 compute and weights, keeping its fp32 interface. */
export function convertToFloat16(bytes: Uint8Array, input: Partial<Fp16Options> = {}): QuantizeResult {
  const options = fp16OptionsSchema.parse(input);
  const model = prepareModel(bytes, 7, 'fp16');
  const report: QuantizeReport = { method: 'fp16', inputBytes: bytes.byteLength, outputBytes: 0, quantized: [], skipped: [], notes: [] };
  const blocked = new Set([...(options.replaceDefaultBlockList ? [] : DEFAULT_FP16_BLOCKED_OPS), ...options.blockOps]);
  const types = inferTypes(model, options);
  const names = new NameAllocator(model);
  const isFloat = (name: string | null | undefined) => !!name && types.get(name) === FLOAT;
  let clamped = 0;

  // Renames every read of `from` (in any graph) to `to`, except by the node that makes `to`.
  const renameReads = (from: string, to: string, except: NodeProtoInit) => {
    forEachGraph(model, ({ graph }) => {
      for (const n of graph.node ?? []) {
        if (n === except) continue;
        n.input = (n.input ?? []).map((i) => (i === from ? to : i));
      }
    });
  };

  const convertScope = (scope: GraphScope) => {
    const graph = scope.graph;
    const isMain = !scope.parent;
    graph.initializer = (graph.initializer ?? []).map((t) => {
      if (t.dataType !== FLOAT) return t;
      const values = readFloat32Tensor(t);
      for (const v of values) if (Math.abs(v) > FLOAT16_MAX) clamped++;
      return toFloat16Tensor(t);
    });
    const nodes: NodeProtoInit[] = [];
    const fp32Copies = new Map<string, string>();
    for (const n of graph.node ?? []) {
      const op = n.opType ?? '';
      if (op === 'Constant') {
        const a = n.attribute?.find((x) => x.name === 'value');
        if (a?.t && a.t.dataType === FLOAT) a.t = toFloat16Tensor(a.t);
        const f = n.attribute?.find((x) => x.name === 'value_float' || x.name === 'value_floats');
        if (f) {
          const values = f.name === 'value_float' ? [f.f ?? 0] : [...(f.floats ?? [])];
          n.attribute = [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: tensorFromFloat16('', f.name === 'value_float' ? [] : [values.length], values) }];
        }
        nodes.push(n);
        continue;
      }
      const keep = blocked.has(op) || isExcluded(options.exclude, n);
      if (!keep) {
        if (op === 'Cast' && numberAttribute(n, 'to', 0) === FLOAT) {
          n.attribute = (n.attribute ?? []).map((a) => (a.name === 'to' ? { ...a, i: FLOAT16 } : a));
        }
        if (op === 'ConstantOfShape') {
          const a = n.attribute?.find((x) => x.name === 'value');
          if (!a || !a.t) n.attribute = [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: tensorFromFloat16('', [1], [0]) }];
          else if (a.t.dataType === FLOAT) a.t = toFloat16Tensor(a.t);
        }
        nodes.push(n);
        if ((n.output ?? []).some(isFloat)) report.quantized.push({ node: nodeLabel(n), opType: op, graph: scope.path, as: 'float16' });
        continue;
      }
      // Kept in fp32: float inputs cast up (once per tensor and graph), float outputs cast back down.
      n.input = (n.input ?? []).map((i) => {
        if (!isFloat(i)) return i;
        let copy = fp32Copies.get(i);
        if (!copy) {
          copy = names.fresh(`${i}_fp32`);
          nodes.push(makeNode('Cast', [i], [copy], { to: attr.int(FLOAT) }, names.fresh(`${i}_Cast_fp32`)));
          fp32Copies.set(i, copy);
        }
        return copy;
      });
      const after: NodeProtoInit[] = [];
      n.output = (n.output ?? []).map((o) => {
        if (!isFloat(o)) return o;
        const raw = names.fresh(`${o}_fp32`);
        after.push(makeNode('Cast', [raw], [o], { to: attr.int(FLOAT16) }, names.fresh(`${o}_Cast_fp16`)));
        return raw;
      });
      nodes.push(n, ...after);
      report.skipped.push({ node: nodeLabel(n), opType: op, graph: scope.path, reason: blocked.has(op) ? 'on the fp16 block list' : 'excluded' });
    }
    graph.node = nodes;
    for (const v of [...(graph.valueInfo ?? []), ...(isMain ? [] : [...(graph.input ?? []), ...(graph.output ?? [])])]) {
      if (elemType(v) === FLOAT) v.type!.tensorType!.elemType = FLOAT16;
    }
  };

  forEachGraph(model, convertScope);

  // The model's interface stays fp32: Cast each float input down, each float output up.
  const main = model.graph!;
  const head: NodeProtoInit[] = [];
  for (const input of main.input ?? []) {
    if (elemType(input) !== FLOAT || (main.initializer ?? []).some((t) => t.name === input.name)) continue;
    const half = names.fresh(`${input.name}_fp16`);
    const cast = makeNode('Cast', [input.name!], [half], { to: attr.int(FLOAT16) }, names.fresh(`${input.name}_Cast_fp16`));
    renameReads(input.name!, half, cast);
    head.push(cast);
  }
  main.node = [...head, ...(main.node ?? [])];
  for (const output of main.output ?? []) {
    if (elemType(output) !== FLOAT) continue;
    const half = names.fresh(`${output.name}_fp16`);
    for (const n of main.node) n.output = (n.output ?? []).map((o) => (o === output.name ? half : o));
    const cast = makeNode('Cast', [half], [output.name!], { to: attr.int(FLOAT) }, names.fresh(`${output.name}_Cast_fp32`));
    renameReads(output.name!, half, cast);
    main.node.push(cast);
  }
  // value_info may still describe a renamed output as fp32; drop entries that no longer match a value.
  main.valueInfo = (main.valueInfo ?? []).filter((v) => !(main.output ?? []).some((o) => o.name === v.name));
  if (clamped > 0) report.notes.push(`${clamped} weight values beyond the float16 range (±65504) became infinities; block the ops that hold them`);
  const out = finishModel(model, 'fp16');
  report.outputBytes = out.byteLength;
  return { bytes: out, report };
}
