/**
 * The inputs and outputs of a graph as the V2 protocol carries them: tensors only. onnxruntime-node
 * (1.30) runs models with sequence, map and optional values inside, but not across its boundary: a
 * sequence or map output makes `run` throw ("Non tensor type is temporarily not supported"), a
 * sequence input cannot be fed, an optional input cannot be left out, an empty optional output
 * brings the process down, and a bfloat16 input or output fails the load ("Unsupported data type:
 * 16"). So at registration, where an exact mapping exists, the graph is rewritten so that every
 * input and output is a tensor, keeping its name; the rewritten graph is what is stored and served,
 * and each mapped tensor says in its `parameters` how (docs: README "Inputs and outputs that are not
 * tensors"). What has no exact mapping is refused with what to do instead.
 *
 * The mappings:
 * - a sequence of tensors, in or out: one tensor, the sequence's tensors stacked along a new first
 *   axis (SplitToSequence / ConcatFromSequence); every tensor in it has the same shape;
 * - an optional input: a required tensor (onnxruntime-node cannot leave an input out); an optional
 *   output: its tensor, and a run that leaves it empty fails instead of crashing;
 * - scikit-learn's ZipMap (a sequence of {label: probability} maps): the probability tensor it was
 *   made from, one column per class, and a `<name>_labels` output with the class labels in column order.
 */
import { attr, node, tensorFromInt64 } from './builder.ts';
import { forEachGraph, NameAllocator, opsetVersion, UnsupportedModelError, useCounts } from './graph-toolkit.ts';
import { int64ToNumber, onnx, type ModelProto, type NodeProtoInit, type TensorProtoInit, type ValueInfoProtoInit } from './model-proto.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';

type TypeProto = OnnxTypes.ITypeProto;
type TensorTypeProto = OnnxTypes.TypeProto.ITensor;
const DataType = onnx.TensorProto.DataType;

/** What a mapped input or output records in its V2 metadata `parameters`. */
export interface BoundaryMapping {
  /** The value's type in the original model, in ONNX's notation: `seq(tensor(float))`. */
  onnx_type: string;
  /**
   * How the tensor served stands for it: `stacked-sequence`, `required-optional`, `optional-element`,
   * `zipmap-probabilities`, `zipmap-labels`; an optional sequence joins two with `+`.
   */
  mapping: string;
  /** For zipmap-probabilities: the output holding the class labels in column order. */
  labels_output?: string;
  /** For zipmap-labels: the output whose columns these labels name. */
  labels_of?: string;
}

export interface ServedGraph {
  /** True when the graph had to be rewritten; the caller then stores `model` re-encoded. */
  rewritten: boolean;
  /** By input or output name, for each one that stands for something other than a tensor. */
  inputs: Map<string, BoundaryMapping>;
  outputs: Map<string, BoundaryMapping>;
}

/** ONNX element type names, as ONNX writes them in `tensor(float)`. */
const ELEMENT_NAMES: Record<number, string> = {
  [DataType.FLOAT]: 'float',
  [DataType.UINT8]: 'uint8',
  [DataType.INT8]: 'int8',
  [DataType.UINT16]: 'uint16',
  [DataType.INT16]: 'int16',
  [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64',
  [DataType.STRING]: 'string',
  [DataType.BOOL]: 'bool',
  [DataType.FLOAT16]: 'float16',
  [DataType.DOUBLE]: 'double',
  [DataType.UINT32]: 'uint32',
  [DataType.UINT64]: 'uint64',
  [DataType.COMPLEX64]: 'complex64',
  [DataType.COMPLEX128]: 'complex128',
  [DataType.BFLOAT16]: 'bfloat16',
  // Newer than onnx-proto's enum: float8 variants, 4-bit integers, float4.
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};

/** Element types onnxruntime-node hands over as JavaScript tensors, so V2 can carry them. */
const CARRIED_ELEMENTS = new Set<number>([
  DataType.FLOAT,
  DataType.UINT8,
  DataType.INT8,
  DataType.UINT16,
  DataType.INT16,
  DataType.INT32,
  DataType.INT64,
  DataType.STRING,
  DataType.BOOL,
  DataType.FLOAT16,
  DataType.DOUBLE,
  DataType.UINT32,
  DataType.UINT64,
]);

export function elementName(elemType: number | null | undefined): string {
  return ELEMENT_NAMES[elemType ?? 0] ?? `data type ${elemType ?? 0}`;
}

/** A type in ONNX's notation: `tensor(float)`, `seq(map(int64,tensor(float)))`, `optional(seq(tensor(int64)))`. */
export function typeString(type: TypeProto | null | undefined): string {
  if (!type) return 'an undeclared type';
  if (type.tensorType) return `tensor(${elementName(type.tensorType.elemType)})`;
  if (type.sequenceType) return `seq(${typeString(type.sequenceType.elemType)})`;
  if (type.mapType) return `map(${elementName(type.mapType.keyType)},${typeString(type.mapType.valueType)})`;
  if (type.optionalType) return `optional(${typeString(type.optionalType.elemType)})`;
  if (type.sparseTensorType) return `sparse_tensor(${elementName(type.sparseTensorType.elemType)})`;
  return 'an undeclared type';
}

type Side = 'input' | 'output';

/** Opsets that bring the operators a mapping inserts. */
const SEQUENCE_OPSET = 11; // SplitToSequence, ConcatFromSequence
const OPTIONAL_OPSET = 15; // Optional, OptionalGetElement

/**
 * Rewrites the model's main graph, in place, so that every input and output is a tensor of an
 * element type V2 carries; says which ones were mapped and how. Throws UnsupportedModelError for one
 * that cannot be carried exactly, saying what to change.
 */
export function serveAsTensors(model: ModelProto): ServedGraph {
  const graph = model.graph!;
  const served: ServedGraph = { rewritten: false, inputs: new Map(), outputs: new Map() };
  const names = new NameAllocator(model);
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const prologue: NodeProtoInit[] = [];
  const epilogue: NodeProtoInit[] = [];
  const added: ValueInfoProtoInit[] = [];

  for (const input of graph.input ?? []) {
    // IR < 4 lists weights among the inputs; a client never feeds them.
    if (input.type?.tensorType || weights.has(input.name)) continue;
    const name = input.name ?? '';
    const original = input.type;
    const inner = names.fresh(`${name}.${original?.optionalType ? 'optional' : 'sequence'}`);
    renameValue(model, name, inner);
    const stages = tensorStages(model, 'input', name, original);
    input.type = { tensorType: stages.tensorType };
    // Tensor in, then wrapped innermost first: SplitToSequence, then Optional.
    let from = name;
    stages.ops.toReversed().forEach((op, index, all) => {
      const to = index === all.length - 1 ? inner : names.fresh(`${name}.${op}`);
      prologue.push(op === 'sequence' ? node('SplitToSequence', [from], [to], { axis: attr.int(0), keepdims: attr.int(0) }) : node('Optional', [from], [to]));
      from = to;
    });
    served.inputs.set(name, { onnx_type: typeString(original), mapping: stages.ops.map((op) => (op === 'optional' ? 'required-optional' : 'stacked-sequence')).join('+') });
  }

  for (const output of graph.output ?? []) {
    if (output.type?.tensorType) continue;
    const name = output.name ?? '';
    const original = output.type;
    const producer = (graph.node ?? []).find((n) => (n.output ?? []).includes(name));
    if (producer?.opType === 'ZipMap' && producer.domain === 'ai.onnx.ml') {
      const labels = unzip(model, producer, output, names);
      epilogue.push(...labels.nodes);
      added.push(labels.labelsOutput);
      served.outputs.set(name, { onnx_type: typeString(original), mapping: 'zipmap-probabilities', labels_output: labels.labelsOutput.name ?? '' });
      served.outputs.set(labels.labelsOutput.name ?? '', { onnx_type: typeString(original), mapping: 'zipmap-labels', labels_of: name });
      continue;
    }
    const inner = names.fresh(`${name}.${original?.optionalType ? 'optional' : 'sequence'}`);
    renameValue(model, name, inner);
    const stages = tensorStages(model, 'output', name, original);
    output.type = { tensorType: stages.tensorType };
    // Unwrapped outermost first: OptionalGetElement, then ConcatFromSequence.
    let from = inner;
    stages.ops.forEach((op, index, all) => {
      const to = index === all.length - 1 ? name : names.fresh(`${name}.${op === 'optional' ? 'element' : 'stacked'}`);
      epilogue.push(op === 'sequence' ? node('ConcatFromSequence', [from], [to], { axis: attr.int(0), new_axis: attr.int(1) }) : node('OptionalGetElement', [from], [to]));
      from = to;
    });
    served.outputs.set(name, { onnx_type: typeString(original), mapping: stages.ops.map((op) => (op === 'optional' ? 'optional-element' : 'stacked-sequence')).join('+') });
  }

  if (prologue.length > 0 || epilogue.length > 0) {
    graph.node = [...prologue, ...(graph.node ?? []), ...epilogue];
    graph.output = [...(graph.output ?? []), ...added];
    served.rewritten = true;
  }
  for (const input of graph.input ?? []) if (!weights.has(input.name)) assertCarried('input', input);
  for (const output of graph.output ?? []) assertCarried('output', output);
  return served;
}

/**
 * How a non-tensor input or output becomes one tensor: the tensor's type, and the wrappers between
 * the two, outermost first ('optional' then 'sequence' for optional(seq(tensor))).
 */
function tensorStages(model: ModelProto, side: Side, name: string, type: TypeProto | null | undefined): { tensorType: TensorTypeProto; ops: ('optional' | 'sequence')[] } {
  const ops: ('optional' | 'sequence')[] = [];
  let inner = type;
  if (inner?.optionalType) {
    ops.push('optional');
    inner = inner.optionalType.elemType;
  }
  if (inner?.sequenceType) {
    ops.push('sequence');
    inner = inner.sequenceType.elemType;
  }
  const element = inner?.tensorType;
  if (type?.sparseTensorType) throw sparseRefusal(side, name, type);
  if (!element) throw notCarried(side, name, type);
  const opset = opsetVersion(model) ?? 0;
  if (ops.includes('optional') && opset < OPTIONAL_OPSET) throw notCarried(side, name, type, `mapping it needs ai.onnx opset ${OPTIONAL_OPSET} or newer, the model imports ${opset}`);
  if (ops.includes('sequence') && opset < SEQUENCE_OPSET) throw notCarried(side, name, type, `mapping it needs ai.onnx opset ${SEQUENCE_OPSET} or newer, the model imports ${opset}`);
  if (!ops.includes('sequence')) return { tensorType: element, ops };
  if (!element.shape) {
    throw new UnsupportedModelError(
      `${side} '${name}' is ${typeString(type)} with no declared tensor shape; it is served as one tensor, its tensors stacked along a new first axis, so declare the rank of the tensors in the sequence (e.g. [N, 4]) and upload again`,
    );
  }
  // The new first axis is the sequence's length: unknown until run time.
  return { tensorType: { elemType: element.elemType, shape: { dim: [{}, ...(element.shape.dim ?? [])] } }, ops };
}

/**
 * scikit-learn's ZipMap turns the [N, C] probability tensor into N maps {label: probability}.
 * Served instead: that tensor, unchanged, under the ZipMap's output name, and the labels (C of
 * them, in column order) as a constant output beside it.
 */
function unzip(model: ModelProto, zipMap: NodeProtoInit, output: ValueInfoProtoInit, names: NameAllocator) {
  const graph = model.graph!;
  const name = output.name ?? '';
  const probabilities = zipMap.input?.[0] ?? '';
  if ((useCounts(model).get(name) ?? 0) !== 1) {
    throw new UnsupportedModelError(`output '${name}' (ZipMap) is also read inside the graph, so it cannot be replaced by its probability tensor; remove the ZipMap (skl2onnx: options={'zipmap': False}) and upload again`);
  }
  const intLabels = zipMap.attribute?.find((a) => a.name === 'classlabels_int64s');
  const stringLabels = zipMap.attribute?.find((a) => a.name === 'classlabels_strings');
  const labelsName = names.fresh(`${name}_labels`);
  let labels: TensorProtoInit;
  if (intLabels) {
    labels = tensorFromInt64('', [intLabels.ints?.length ?? 0], (intLabels.ints ?? []).map((v) => BigInt(int64ToNumber(v))));
  } else if (stringLabels) {
    const strings = stringLabels.strings ?? [];
    labels = { name: '', dataType: DataType.STRING, dims: [strings.length], stringData: strings };
  } else {
    throw new UnsupportedModelError(`output '${name}' comes from a ZipMap without class labels; remove the ZipMap and upload again`);
  }
  const classes = labels.dims![0] as number;
  const declared = (graph.valueInfo ?? []).find((v) => v.name === probabilities)?.type?.tensorType;
  const tensorType = declared?.shape ? declared : { elemType: DataType.FLOAT, shape: { dim: [{}, { dimValue: classes }] } };
  output.type = { tensorType };
  // ONNX's shape inference knows no type for the ai.onnx.ml ops that usually write it; the checker
  // then refuses the Identity that reads it, unless its type is declared.
  if (!declared) (graph.valueInfo ??= []).push({ name: probabilities, type: { tensorType } });
  graph.node = (graph.node ?? []).filter((n) => n !== zipMap);
  return {
    nodes: [node('Identity', [probabilities], [name]), node('Constant', [], [labelsName], { value: attr.tensor(labels) })],
    labelsOutput: {
      name: labelsName,
      type: { tensorType: { elemType: labels.dataType, shape: { dim: [{ dimValue: classes }] } } },
    } satisfies ValueInfoProtoInit,
  };
}

/** Renames a value everywhere it is written or read, except in the main graph's input and output lists. */
function renameValue(model: ModelProto, from: string, to: string): void {
  const main = model.graph!;
  forEachGraph(model, ({ graph }) => {
    for (const n of graph.node ?? []) {
      n.input = (n.input ?? []).map((x) => (x === from ? to : x));
      n.output = (n.output ?? []).map((x) => (x === from ? to : x));
    }
    for (const v of graph.valueInfo ?? []) if (v.name === from) v.name = to;
    if (graph !== main) for (const v of graph.output ?? []) if (v.name === from) v.name = to;
  });
}

function notCarried(side: Side, name: string, type: TypeProto | null | undefined, why?: string): UnsupportedModelError {
  const reason = why ?? 'V2 carries tensors, and sequences of tensors, optionals and scikit-learn ZipMap outputs are mapped to them; nothing maps this type exactly';
  return new UnsupportedModelError(
    `${side} '${name}' is ${typeString(type)}: ${reason}. Change the graph at its boundary so that the ${side} is a tensor and upload again`,
  );
}

function sparseRefusal(side: Side, name: string, type: TypeProto): UnsupportedModelError {
  return new UnsupportedModelError(`${side} '${name}' is ${typeString(type)}; V2 carries dense tensors: densify it at the graph boundary and upload again`);
}

/** Refuses an input or output whose elements onnxruntime-node cannot hand over, saying what cast fixes it. */
function assertCarried(side: Side, value: ValueInfoProtoInit): void {
  const name = value.name ?? '';
  if (value.type?.sparseTensorType) throw sparseRefusal(side, name, value.type);
  const elemType = value.type?.tensorType?.elemType;
  if (elemType === undefined || elemType === null) throw notCarried(side, name, value.type);
  if (CARRIED_ELEMENTS.has(elemType)) return;
  const where = side === 'input' ? `a Cast from it to float (or float16) right after the input` : `a Cast to float (or float16) right before the output`;
  throw new UnsupportedModelError(
    `${side} '${name}' is a ${elementName(elemType)} tensor, which cannot be served: onnxruntime-node has no ${elementName(elemType)} tensor to hand over. Cast it at the graph boundary (${where}) and upload again`,
  );
}

