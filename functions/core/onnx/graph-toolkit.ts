/**
 * Graph-level tools the quantizers share: walk the main graph and every subgraph (If, Loop, Scan),
 * find weights wherever exporters put them (initializers, Constant nodes, initializers shared by
 * several nodes, tensors of an outer scope used inside a subgraph), allocate fresh names, prune
 * what a rewrite left unused, fold BatchNormalization into Conv, and refuse what cannot be handled.
 *
 * Everything works on the decoded ModelProto in place; callers decode, rewrite, then encode.
 */
import type { onnx as OnnxTypes } from 'onnx-proto';
import { HttpError } from '../platform/errors.ts';
import { tensorFromFloat32 } from './builder.ts';
import {
  int64ToNumber,
  onnx,
  readFloat32Tensor,
  type GraphProtoInit,
  type ModelProto,
  type ModelProtoInit,
  type NodeProtoInit,
  type TensorProtoInit,
} from './model-proto.ts';

export const DataType = onnx.TensorProto.DataType;
const AttributeType = onnx.AttributeProto.AttributeType;

/** A model this code will not rewrite, with the reason; a client mistake, so its message is exposed (422). */
export class UnsupportedModelError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(422, message, options);
    this.name = 'UnsupportedModelError';
  }
}

/** Where a weight lives: an initializer of some graph, or the value of a Constant node in it. */
export interface WeightSource {
  name: string;
  tensor: TensorProtoInit;
  kind: 'initializer' | 'constant';
  /** The graph that defines the name; rewrites put derived tensors here so every consumer sees them. */
  owner: GraphProtoInit;
  node?: NodeProtoInit;
}

/** One graph in the walk, with the scopes around it (a subgraph sees its parents' names). */
export interface GraphScope {
  graph: GraphProtoInit;
  parent: GraphScope | undefined;
  /** e.g. "main", "main/If_0.then_branch". */
  path: string;
  /** The node that holds this graph as an attribute (undefined for the main graph). */
  holder: NodeProtoInit | undefined;
  weights: Map<string, WeightSource>;
}

/** Subgraphs held by a node's attributes (If branches, Loop and Scan bodies, any GRAPH/GRAPHS attribute). */
export function subgraphsOf(node: NodeProtoInit): { attribute: string; graph: GraphProtoInit }[] {
  const found: { attribute: string; graph: GraphProtoInit }[] = [];
  for (const attribute of node.attribute ?? []) {
    if (attribute.g) found.push({ attribute: attribute.name ?? '', graph: attribute.g });
    for (const g of attribute.graphs ?? []) found.push({ attribute: attribute.name ?? '', graph: g });
  }
  return found;
}

function constantTensor(node: NodeProtoInit): TensorProtoInit | undefined {
  if (node.opType !== 'Constant' || (node.domain && node.domain !== 'ai.onnx')) return undefined;
  const value = node.attribute?.find((a) => a.name === 'value');
  if (value?.t) return { ...value.t, name: node.output?.[0] ?? value.t.name ?? '' };
  const floats = node.attribute?.find((a) => a.name === 'value_float' || a.name === 'value_floats');
  if (floats) {
    const data = floats.name === 'value_float' ? [floats.f ?? 0] : [...(floats.floats ?? [])];
    return tensorFromFloat32(node.output?.[0] ?? '', floats.name === 'value_float' ? [] : [data.length], data);
  }
  return undefined;
}

function scopeOf(graph: GraphProtoInit, parent: GraphScope | undefined, path: string, holder?: NodeProtoInit): GraphScope {
  const weights = new Map<string, WeightSource>();
  for (const tensor of graph.initializer ?? []) {
    weights.set(tensor.name ?? '', { name: tensor.name ?? '', tensor, kind: 'initializer', owner: graph });
  }
  for (const node of graph.node ?? []) {
    const tensor = constantTensor(node);
    if (tensor) weights.set(node.output![0]!, { name: node.output![0]!, tensor, kind: 'constant', owner: graph, node });
  }
  return { graph, parent, path, holder, weights };
}

/** Visits the main graph, then every subgraph depth-first, parents before children. */
export function forEachGraph(model: ModelProtoInit, visit: (scope: GraphScope) => void): void {
  const walk = (scope: GraphScope) => {
    visit(scope);
    // Copy: the visitor may insert nodes.
    for (const node of [...(scope.graph.node ?? [])]) {
      for (const { attribute, graph } of subgraphsOf(node)) {
        walk(scopeOf(graph, scope, `${scope.path}/${node.name || node.opType}.${attribute}`, node));
      }
    }
  };
  walk(scopeOf(model.graph!, undefined, 'main'));
}

/** The weight a name refers to in this scope or any scope around it, or undefined for a computed value. */
export function resolveWeight(scope: GraphScope, name: string): WeightSource | undefined {
  for (let s: GraphScope | undefined = scope; s; s = s.parent) {
    const found = s.weights.get(name);
    if (found) return found;
    // A graph input of the same name shadows nothing in valid ONNX, but an initializer listed as an
    // input (IR < 4 style) can be overridden at run time: not a constant then.
    if ((s.graph.input ?? []).some((i) => i.name === name) && !s.weights.has(name)) return undefined;
  }
  return undefined;
}

/** How many times each name is read: node inputs and graph outputs, across all graphs. */
export function useCounts(model: ModelProtoInit): Map<string, number> {
  const counts = new Map<string, number>();
  const add = (name: string | null | undefined) => {
    if (name) counts.set(name, (counts.get(name) ?? 0) + 1);
  };
  forEachGraph(model, ({ graph }) => {
    for (const node of graph.node ?? []) for (const input of node.input ?? []) add(input);
    for (const output of graph.output ?? []) add(output.name);
  });
  return counts;
}

/** Hands out names no graph in the model uses yet. */
export class NameAllocator {
  private readonly taken = new Set<string>();

  constructor(model: ModelProtoInit) {
    forEachGraph(model, ({ graph }) => {
      if (graph.name) this.taken.add(graph.name);
      for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) this.taken.add(v.name ?? '');
      for (const t of graph.initializer ?? []) this.taken.add(t.name ?? '');
      for (const node of graph.node ?? []) {
        if (node.name) this.taken.add(node.name);
        for (const output of node.output ?? []) this.taken.add(output);
      }
    });
  }

  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.taken.has(name); i++) name = `${base}_${i}`;
    this.taken.add(name);
    return name;
  }
}

/** The opset a model imports for a domain ("" is ai.onnx), or undefined. */
export function opsetVersion(model: ModelProtoInit, domain = ''): number | undefined {
  const entry = (model.opsetImport ?? []).find((o) => (o.domain ?? '') === domain || (domain === '' && o.domain === 'ai.onnx'));
  return entry ? int64ToNumber(entry.version) : undefined;
}

/** Adds an opset import for a domain unless the model already has one. */
export function ensureOpset(model: ModelProtoInit, domain: string, version: number): void {
  if (opsetVersion(model, domain) === undefined) (model.opsetImport ??= []).push({ domain, version });
}

function tensorUsesExternalData(tensor: TensorProtoInit | null | undefined): boolean {
  return !!tensor && (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || (tensor.externalData ?? []).length > 0);
}

/**
 * Refuses a model whose tensors live in files beside it: the quantizer only ever sees the .onnx
 * bytes, and onnxruntime would read such a file from wherever it runs. Looks everywhere a tensor can
 * be in a decoded model: initializers and sparse initializers, tensor and sparse-tensor attributes,
 * model-local functions, training graphs, and every subgraph (registration checks the raw bytes with
 * findExternalData, which also sees fields this decoder does not know).
 */
export function assertNoExternalData(model: ModelProtoInit): void {
  const refuse = (where: string): never => {
    throw new UnsupportedModelError(
      `${where} uses external data; save the model with its weights inside the .onnx file (onnx.save(model, path, save_as_external_data=False)) and upload that`,
    );
  };
  const sparseUsesExternalData = (sparse: OnnxTypes.ISparseTensorProto | null | undefined) =>
    !!sparse && (tensorUsesExternalData(sparse.values) || tensorUsesExternalData(sparse.indices));
  const checkNodes = (nodes: readonly NodeProtoInit[], scope: string, path: string): void => {
    for (const node of nodes) {
      for (const attribute of node.attribute ?? []) {
        const held =
          tensorUsesExternalData(attribute.t) ||
          (attribute.tensors ?? []).some(tensorUsesExternalData) ||
          sparseUsesExternalData(attribute.sparseTensor) ||
          (attribute.sparseTensors ?? []).some(sparseUsesExternalData);
        if (held) refuse(`attribute ${JSON.stringify(attribute.name ?? '')} of node ${JSON.stringify(node.name ?? '')} (${node.opType}) in ${scope}`);
      }
      for (const { attribute, graph } of subgraphsOf(node)) checkGraph(graph, `${path}/${node.name || node.opType}.${attribute}`);
    }
  };
  const checkGraph = (graph: GraphProtoInit, path: string): void => {
    for (const tensor of graph.initializer ?? []) {
      if (tensorUsesExternalData(tensor)) refuse(`initializer ${JSON.stringify(tensor.name ?? '')} in graph ${path}`);
    }
    for (const sparse of graph.sparseInitializer ?? []) {
      if (sparseUsesExternalData(sparse)) refuse(`sparse initializer ${JSON.stringify(sparse.values?.name ?? '')} in graph ${path}`);
    }
    checkNodes(graph.node ?? [], `graph ${path}`, path);
  };
  checkGraph(model.graph!, 'main');
  for (const training of model.trainingInfo ?? []) {
    if (training.initialization) checkGraph(training.initialization, 'training.initialization');
    if (training.algorithm) checkGraph(training.algorithm, 'training.algorithm');
  }
  for (const fn of model.functions ?? []) checkNodes(fn.node ?? [], `function ${JSON.stringify(fn.name ?? '')}`, `function:${fn.name ?? ''}`);
}

/** Ops that only exist in models someone has already quantized. */
export const QUANTIZED_OPS = new Set([
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'MatMulInteger',
  'ConvInteger',
  'QLinearConv',
  'QLinearMatMul',
  'QLinearAdd',
  'QLinearMul',
  'QLinearLeakyRelu',
  'QLinearSigmoid',
  'QLinearAveragePool',
  'QLinearGlobalAveragePool',
  'QLinearConcat',
  'QLinearSoftmax',
  'QGemm',
  'DynamicQuantizeMatMul',
  'MatMulIntegerToFloat',
  'DynamicQuantizeLSTM',
  'QAttention',
  'MatMulNBits',
]);

/** Refuses a model that is already quantized: quantizing twice compounds the error and gains nothing. */
export function assertNotQuantized(model: ModelProtoInit): void {
  forEachGraph(model, ({ graph, path }) => {
    for (const node of graph.node ?? []) {
      if (QUANTIZED_OPS.has(node.opType ?? '')) {
        throw new UnsupportedModelError(
          `the model is already quantized: node "${node.name || node.output?.[0]}" in graph ${path} is ${node.opType}; quantize the original fp32 model instead`,
        );
      }
    }
  });
}

/** A weight's values when it is an FP32 tensor; undefined for a computed value or another type. */
export function floatWeight(source: WeightSource | undefined): Float32Array | undefined {
  if (!source || source.tensor.dataType !== DataType.FLOAT) return undefined;
  return readFloat32Tensor(source.tensor);
}

export function tensorDims(tensor: TensorProtoInit): number[] {
  return (tensor.dims ?? []).map((d) => int64ToNumber(d));
}

/** An attribute's value as a number (INT or FLOAT), or the fallback when the node does not set it. */
export function numberAttribute(node: NodeProtoInit, name: string, fallback: number): number {
  const attribute = node.attribute?.find((a) => a.name === name);
  if (!attribute) return fallback;
  if (attribute.type === AttributeType.FLOAT) return attribute.f ?? fallback;
  return int64ToNumber(attribute.i);
}

export function intsAttribute(node: NodeProtoInit, name: string): number[] | undefined {
  const attribute = node.attribute?.find((a) => a.name === name);
  return attribute ? (attribute.ints ?? []).map((v) => int64ToNumber(v)) : undefined;
}

/** Adds a tensor where a weight of `like`'s kind would be: an initializer, or a Constant node before `before`. */
export function addWeight(
  owner: GraphProtoInit,
  kind: WeightSource['kind'],
  tensor: TensorProtoInit,
  before?: NodeProtoInit,
): void {
  if (kind === 'initializer') {
    (owner.initializer ??= []).push(tensor);
    return;
  }
  const constant: NodeProtoInit = {
    opType: 'Constant',
    name: `${tensor.name}_constant`,
    input: [],
    output: [tensor.name ?? ''],
    attribute: [{ name: 'value', type: AttributeType.TENSOR, t: { ...tensor, name: '' } }],
  };
  const nodes = (owner.node ??= []);
  const at = before ? nodes.indexOf(before) : -1;
  nodes.splice(at >= 0 ? at : 0, 0, constant);
}

/**
 * Removes initializers and Constant nodes nothing reads any more, in every graph, so a rewrite does
 * not ship the fp32 weights beside their quantized copies. Repeats until nothing changes.
 */
export function pruneUnusedWeights(model: ModelProtoInit): void {
  for (;;) {
    const uses = useCounts(model);
    let removed = 0;
    forEachGraph(model, ({ graph }) => {
      const before = (graph.initializer ?? []).length + (graph.node ?? []).length;
      const initializerNames = new Set((graph.initializer ?? []).map((t) => t.name));
      graph.initializer = (graph.initializer ?? []).filter((t) => (uses.get(t.name ?? '') ?? 0) > 0);
      const kept = new Set(graph.initializer.map((t) => t.name));
      // IR < 4 lists initializers among the inputs too; drop those entries with their initializers.
      graph.input = (graph.input ?? []).filter((i) => !initializerNames.has(i.name) || kept.has(i.name));
      graph.node = (graph.node ?? []).filter((n) => n.opType !== 'Constant' || (n.output ?? []).some((o) => (uses.get(o) ?? 0) > 0));
      removed += before - graph.initializer.length - graph.node.length;
    });
    if (removed === 0) return;
  }
}

/** Replaces `node` in `graph` by `replacement`, in place, keeping topological order. */
export function replaceNode(graph: GraphProtoInit, node: NodeProtoInit, replacement: NodeProtoInit[]): void {
  const nodes = graph.node ?? [];
  const at = nodes.indexOf(node);
  if (at < 0) throw new Error(`node "${node.name}" is not in graph "${graph.name}"`);
  nodes.splice(at, 1, ...replacement);
}

/** Nodes of one graph by the names they read. */
export function consumersIn(graph: GraphProtoInit): Map<string, NodeProtoInit[]> {
  const map = new Map<string, NodeProtoInit[]>();
  for (const node of graph.node ?? []) {
    for (const input of node.input ?? []) {
      if (!input) continue;
      const list = map.get(input) ?? [];
      list.push(node);
      map.set(input, list);
    }
  }
  return map;
}

/**
 * Folds BatchNormalization (inference mode) into the Conv before it when the Conv's output feeds
 * nothing else and every parameter is a constant: w' = w * gamma / sqrt(var + eps) per output
 * channel, b' = (b - mean) * gamma / sqrt(var + eps) + beta. Exporters leave BN in place; quantizing
 * the folded weights is what makes per-channel scales meaningful. Returns how many were folded.
 */
export function foldBatchNormalization(model: ModelProto | ModelProtoInit): number {
  const uses = useCounts(model);
  const names = new NameAllocator(model);
  let folded = 0;
  forEachGraph(model, (scope) => {
    const { graph } = scope;
    const producers = new Map<string, NodeProtoInit>();
    for (const n of graph.node ?? []) for (const o of n.output ?? []) producers.set(o, n);
    for (const bn of [...(graph.node ?? [])]) {
      if (bn.opType !== 'BatchNormalization' || (bn.output ?? []).length !== 1) continue;
      const conv = producers.get(bn.input?.[0] ?? '');
      if (!conv || conv.opType !== 'Conv' || uses.get(conv.output![0]!) !== 1) continue;
      const w = resolveWeight(scope, conv.input![1]!);
      const params = bn.input!.slice(1, 5).map((n) => floatWeight(resolveWeight(scope, n)));
      const weights = floatWeight(w);
      const bias = conv.input![2] ? floatWeight(resolveWeight(scope, conv.input![2])) : undefined;
      if (!w || !weights || params.some((p) => !p) || (conv.input![2] && !bias)) continue;
      const [gamma, beta, mean, variance] = params as [Float32Array, Float32Array, Float32Array, Float32Array];
      const epsilon = numberAttribute(bn, 'epsilon', 1e-5);
      const dims = tensorDims(w.tensor);
      const channels = dims[0]!;
      const perChannel = weights.length / channels;
      const newWeights = new Float32Array(weights.length);
      const newBias = new Float32Array(channels);
      for (let c = 0; c < channels; c++) {
        const factor = gamma[c]! / Math.sqrt(variance[c]! + epsilon);
        for (let k = 0; k < perChannel; k++) newWeights[c * perChannel + k] = weights[c * perChannel + k]! * factor;
        newBias[c] = ((bias?.[c] ?? 0) - mean[c]!) * factor + beta[c]!;
      }
      const wName = names.fresh(`${conv.input![1]}_bnfolded`);
      const bName = names.fresh(`${conv.name || conv.output![0]}_bias_bnfolded`);
      addWeight(w.owner, w.kind === 'constant' && w.owner === graph ? 'constant' : 'initializer', tensorFromFloat32(wName, dims, newWeights), conv);
      addWeight(w.owner, w.kind === 'constant' && w.owner === graph ? 'constant' : 'initializer', tensorFromFloat32(bName, [channels], newBias), conv);
      conv.input = [conv.input![0]!, wName, bName];
      conv.output = [bn.output![0]!];
      graph.node!.splice(graph.node!.indexOf(bn), 1);
      folded++;
    }
  });
  if (folded > 0) pruneUnusedWeights(model);
  return folded;
}

/** Total bytes of tensor data held in initializers and Constant nodes, over all graphs. */
export function weightBytes(model: ModelProtoInit): number {
  let total = 0;
  forEachGraph(model, (scope) => {
    for (const source of scope.weights.values()) total += source.tensor.rawData?.byteLength ?? 0;
  });
  return total;
}
