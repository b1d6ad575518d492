/**
 * Builds a training-step ONNX graph from an inference model: the forward pass (training-mode
 * BatchNormalization and Dropout), the loss, reverse-mode gradients as ONNX nodes (gradients.ts) and,
 * when an optimizer is given, its update. Plain onnxruntime runs it; parameters, optimizer state and
 * BatchNormalization running statistics are graph inputs whose next values are graph outputs.
 */
import { attr, graph, model, valueInfo, type TensorElementType } from '../onnx/builder.ts';
import { assertNoExternalData, tensorDims } from '../onnx/graph-toolkit.ts';
import {
  decodeModel,
  defaultOpsetVersion,
  encodeModel,
  onnx,
  readFloat32Tensor,
  type ModelProto,
  type NodeProtoInit,
  type TensorProtoInit,
} from '../onnx/model-proto.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { GraphWriter, type FloatType } from './graph-writer.ts';
import { nodeLabel, opGradients, supportedOps, TrainingGraphError, type GradientContext } from './gradients.ts';
import { lossInputs, readsLogits, writeLoss, type LossTerm } from './losses.ts';
import { learningRateInput, writeOptimizer, type OptimizerSpec } from './optimizers.ts';

export { TrainingGraphError } from './gradients.ts';

/** Which float initializers train: by exact names, by a name prefix, or (neither) every one that reaches the loss. */
export interface TrainableSelection {
  names?: readonly string[];
  prefix?: string;
}

export interface TrainingGraphOptions {
  /** The tensor the loss reads; default the model's first output, stepping back over a final Softmax for logit losses. */
  output?: string;
  loss: LossTerm | readonly LossTerm[];
  trainable?: TrainableSelection;
  /** Without one, the graph stops at the gradients (and exposes them). */
  optimizer?: OptimizerSpec;
  /** Also output every parameter's gradient as `<parameter>.grad`. */
  exposeGradients?: boolean;
  /**
   * FedProx's proximal term: the loss adds mu/2 |w - w0|^2 over the trainable parameters, w0 their
   * values when the graph was built (carried as optimizer state `<p>.proximal_anchor`, so a session
   * can be pointed at a new anchor with restoreState).
   */
  proximal?: { mu: number };
}

export type StateValues = Float32Array | Float64Array | BigInt64Array;

/** A tensor carried from one step to the next: fed as `input`, read back from `output`. */
export interface StateTensor {
  input: string;
  output: string;
  role: 'parameter' | 'buffer' | 'optimizer';
  type: FloatType | 'int64';
  dims: number[];
  initial: StateValues;
}

export interface TrainingGraph {
  bytes: Uint8Array;
  floatType: FloatType;
  /** The tensor the loss reads. */
  prediction: string;
  /** Model inputs every batch feeds. */
  dataInputs: string[];
  /** Inputs the loss terms read (labels, targets, teacher_probabilities). */
  lossInputs: string[];
  learningRateInput?: string;
  lossOutput: string;
  /** Parameter name to its gradient output (when exposed). */
  gradientOutputs: Record<string, string>;
  state: StateTensor[];
  trainable: string[];
}

/** Inputs that carry no gradient (statistics, shapes, ratios), by op. */
const nonDifferentiableInputs: Record<string, readonly number[]> = {
  BatchNormalization: [3, 4],
  Reshape: [1],
  Dropout: [1, 2],
};
const differentiableSlot = (node: NodeProtoInit, index: number) => !(nonDifferentiableInputs[node.opType ?? '']?.includes(index) ?? false);

/** Ops whose output has the shape of their first input. */
const sameShapeOps = new Set(['Identity', 'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Softmax', 'LogSoftmax', 'BatchNormalization', 'Dropout', 'Neg', 'Exp', 'Log', 'Sqrt', 'Cast', 'Clip', 'Abs']);
/** Ops whose output has the rank of their first input (shape not followed here). */
const rankOfFirstInput = new Set(['Conv', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'Transpose', 'Concat']);
const elementwiseBinary = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Equal', 'Greater', 'Less', 'Where']);
const trainingOpset = 17;

function readFloat64Tensor(tensor: TensorProtoInit): Float64Array {
  const raw = tensor.rawData;
  if (raw && raw.byteLength > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Float64Array.from({ length: raw.byteLength / 8 }, (_, index) => view.getFloat64(index * 8, true));
  }
  return Float64Array.from(tensor.doubleData ?? []);
}

const floatTypeOf = (tensor: TensorProtoInit): FloatType | undefined =>
  tensor.dataType === onnx.TensorProto.DataType.FLOAT ? 'float32' : tensor.dataType === onnx.TensorProto.DataType.DOUBLE ? 'float64' : undefined;

export function readFloatInitializer(tensor: TensorProtoInit): Float32Array | Float64Array {
  return floatTypeOf(tensor) === 'float64' ? readFloat64Tensor(tensor) : readFloat32Tensor(tensor);
}

/** A dimension as far as the graph tells it: a number, a named symbolic dimension, or null (unknown). */
export type KnownDim = number | string | null;

function broadcastDims(a: readonly KnownDim[], b: readonly KnownDim[]): KnownDim[] {
  const rank = Math.max(a.length, b.length);
  return Array.from({ length: rank }, (_, axis) => {
    const x = axis - (rank - a.length) >= 0 ? a[axis - (rank - a.length)] : 1;
    const y = axis - (rank - b.length) >= 0 ? b[axis - (rank - b.length)] : 1;
    if (x === y) return x ?? null;
    if (x === 1) return y ?? null;
    if (y === 1) return x ?? null;
    return null;
  });
}

/** Output shapes from the inputs' declared shapes and the initializers, for the ops whose shape rule is simple. */
function inferShapes(graphProto: OnnxTypes.GraphProto, initializers: Map<string, TensorProtoInit>): Map<string, KnownDim[]> {
  const shapes = new Map<string, KnownDim[]>();
  for (const info of [...graphProto.input, ...graphProto.valueInfo, ...graphProto.output]) {
    const shape = info.type?.tensorType?.shape;
    if (info.name && shape) {
      shapes.set(info.name, (shape.dim ?? []).map((dim) => (dim.dimParam ? dim.dimParam : dim.dimValue !== undefined && dim.dimValue !== null && Number(dim.dimValue) > 0 ? Number(dim.dimValue) : null)));
    }
  }
  for (const [name, tensor] of initializers) shapes.set(name, tensorDims(tensor));
  const unknown = (rank: number | undefined) => (rank === undefined ? undefined : new Array<KnownDim>(rank).fill(null));
  for (const node of graphProto.node) {
    const inputShapes = (node.input ?? []).map((input) => shapes.get(input));
    const output = (node.output ?? [])[0];
    if (!output || shapes.has(output)) continue;
    const opType = node.opType ?? '';
    const [a, b] = inputShapes;
    let shape: KnownDim[] | undefined;
    if (sameShapeOps.has(opType)) shape = a;
    else if (rankOfFirstInput.has(opType)) shape = unknown(a?.length);
    else if (elementwiseBinary.has(opType)) shape = inputShapes.every(Boolean) ? (inputShapes as KnownDim[][]).reduce(broadcastDims) : undefined;
    else if (opType === 'MatMul' && a && b && a.length >= 2 && b.length >= 2) {
      shape = [...broadcastDims(a.slice(0, -2), b.slice(0, -2)), a[a.length - 2] ?? null, b[b.length - 1] ?? null];
    } else if (opType === 'Gemm' && a && b) {
      const transA = Number(node.attribute?.find((x) => x.name === 'transA')?.i ?? 0);
      const transB = Number(node.attribute?.find((x) => x.name === 'transB')?.i ?? 0);
      shape = [(transA ? a[1] : a[0]) ?? null, (transB ? b[0] : b[1]) ?? null];
    } else if (opType === 'Flatten') shape = unknown(2);
    else if (opType === 'Shape') shape = unknown(1);
    else if (opType === 'Size') shape = [];
    else if (opType === 'Reshape') {
      const target = initializers.get((node.input ?? [])[1] ?? '');
      if (target) shape = unknown(tensorDims(target)[0]);
    }
    if (shape) shapes.set(output, shape);
  }
  return shapes;
}

/** mu/2 sum |p - anchor|^2 and its gradient mu (p - anchor) per parameter; each anchor is carried state. */
function writeProximalTerm(w: GraphWriter, trainable: readonly string[], mu: number) {
  if (!(mu >= 0) || !Number.isFinite(mu)) throw new TrainingGraphError(`proximal mu ${mu} must be a finite number >= 0`);
  const anchors: { parameter: string; input: string; output: string }[] = [];
  const gradients = new Map<string, string>();
  const squares: string[] = [];
  for (const parameter of trainable) {
    const input = w.fresh(`${parameter}.proximal_anchor`);
    const difference = w.op('Sub', [parameter, input], `${parameter}.proximal_difference`);
    anchors.push({ parameter, input, output: w.op('Identity', [input], `${input}.kept`) });
    gradients.set(parameter, w.op('Mul', [difference, w.float(mu)], `${parameter}.proximal_grad`));
    squares.push(w.op('ReduceSum', [w.op('Mul', [difference, difference], `${parameter}.proximal_squared`)], `${parameter}.proximal_sum`, { keepdims: attr.int(0) }));
  }
  const total = squares.length === 1 ? (squares[0] as string) : w.op('Sum', squares, 'loss.proximal_sum');
  return { anchors, gradients, loss: w.op('Mul', [total, w.float(mu / 2)], 'loss.proximal') };
}

/** Builds the training-step (or gradient) graph; throws TrainingGraphError naming what it refuses. */
export function buildTrainingGraph(source: Uint8Array | ModelProto, options: TrainingGraphOptions): TrainingGraph {
  const inference = source instanceof Uint8Array ? decodeModel(source) : source;
  const opset = defaultOpsetVersion(inference);
  if (opset === undefined || opset < 13 || opset > trainingOpset) {
    throw new TrainingGraphError(`the model imports ai.onnx opset ${opset ?? 'none'}; training supports opsets 13 to ${trainingOpset}`);
  }
  assertNoExternalData(inference);
  const graphProto = inference.graph as OnnxTypes.GraphProto;
  const terms = Array.isArray(options.loss) ? (options.loss as readonly LossTerm[]) : [options.loss as LossTerm];
  const initializers = new Map(graphProto.initializer.map((tensor) => [tensor.name ?? '', tensor as TensorProtoInit]));
  const producers = new Map<string, NodeProtoInit>();
  for (const node of graphProto.node) for (const output of node.output ?? []) producers.set(output, node);
  const shapes = inferShapes(graphProto, initializers);
  const ranks = new Map([...shapes].map(([name, shape]) => [name, shape.length]));

  // The tensor the loss reads.
  let prediction = options.output ?? graphProto.output[0]?.name ?? '';
  if (!producers.has(prediction) && !initializers.has(prediction)) throw new TrainingGraphError(`the model has no tensor "${prediction}" to train against`);
  if (options.output === undefined && terms.some(readsLogits)) {
    const producer = producers.get(prediction);
    const rank = ranks.get(prediction);
    const axis = producer ? Number(producer.attribute?.find((a) => a.name === 'axis')?.i ?? -1) : 0;
    if (producer?.opType === 'Softmax' && (axis === -1 || (rank !== undefined && axis === rank - 1))) prediction = producer.input?.[0] as string;
  }

  // The nodes the prediction needs, in graph order.
  const needed = new Set<NodeProtoInit>();
  const pending = [prediction];
  while (pending.length) {
    const producer = producers.get(pending.pop() as string);
    if (!producer || needed.has(producer)) continue;
    needed.add(producer);
    pending.push(...(producer.input ?? []).filter(Boolean));
  }
  const forwardNodes = graphProto.node.filter((node) => needed.has(node));

  // Tensors through which a change reaches the prediction (via slots that carry gradients).
  const contributes = new Set([prediction]);
  for (const node of [...forwardNodes].reverse()) {
    if (!(node.output ?? []).some((output) => contributes.has(output))) continue;
    (node.input ?? []).forEach((input, index) => {
      if (input && differentiableSlot(node, index)) contributes.add(input);
    });
  }

  // Trainable parameters.
  const floatInitializers = [...initializers.values()].filter((tensor) => floatTypeOf(tensor) !== undefined);
  let trainable: string[];
  const selection = options.trainable ?? {};
  if (selection.names) {
    for (const name of selection.names) {
      const tensor = initializers.get(name);
      if (!tensor || floatTypeOf(tensor) === undefined) throw new TrainingGraphError(`trainable parameter "${name}" is not a float initializer of the model`);
      if (!contributes.has(name)) throw new TrainingGraphError(`trainable parameter "${name}" does not affect "${prediction}"`);
    }
    trainable = [...selection.names];
  } else {
    trainable = floatInitializers.map((tensor) => tensor.name as string).filter((name) => contributes.has(name) && name.startsWith(selection.prefix ?? ''));
    if (trainable.length === 0) throw new TrainingGraphError(`no float initializer ${selection.prefix === undefined ? '' : `named "${selection.prefix}..." `}affects "${prediction}"`);
  }
  const floatType = floatTypeOf(initializers.get(trainable[0] as string) as TensorProtoInit) as FloatType;
  const mixed = trainable.find((name) => floatTypeOf(initializers.get(name) as TensorProtoInit) !== floatType);
  if (mixed) throw new TrainingGraphError(`trainable parameters mix ${floatType} and another float type ("${mixed}")`);
  const trainableSet = new Set(trainable);

  // Tensors that need a gradient, and the refusal of any op on that path without a gradient rule.
  const needsGrad = new Set(trainable);
  for (const node of forwardNodes) {
    const gradientIn = (node.input ?? []).some((input, index) => needsGrad.has(input) && differentiableSlot(node, index));
    if (!gradientIn) continue;
    if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') {
      throw new TrainingGraphError(`${nodeLabel(node)} of domain "${node.domain}" has no gradient; training supports ${supportedOps.join(', ')}`);
    }
    if (!opGradients[node.opType ?? '']) {
      throw new TrainingGraphError(`op ${node.opType} (node "${node.name || (node.output ?? [])[0]}") has no gradient rule; training supports ${supportedOps.join(', ')}`);
    }
    for (const output of node.output ?? []) if (contributes.has(output)) needsGrad.add(output);
  }

  const allNames = new Set<string>();
  for (const info of [...graphProto.input, ...graphProto.output, ...graphProto.valueInfo]) allNames.add(info.name ?? '');
  for (const name of initializers.keys()) allNames.add(name);
  for (const node of graphProto.node) {
    for (const output of node.output ?? []) allNames.add(output);
    if (node.name) allNames.add(node.name);
  }
  for (const reserved of [...Object.values(lossInputs), learningRateInput, 'loss']) {
    if (allNames.has(reserved)) throw new TrainingGraphError(`the model already has a tensor named "${reserved}", a name the training graph reserves`);
  }
  const w = new GraphWriter(floatType, allNames);
  const buffers: { input: string; output: string }[] = [];
  const context: GradientContext = {
    writer: w,
    rank: (name) => ranks.get(name),
    shape: (name) => shapes.get(name),
    staticDims: (name) => {
      const tensor = initializers.get(name);
      return tensor ? tensorDims(tensor) : undefined;
    },
    requiresGrad: (name) => needsGrad.has(name),
    isTrainable: (name) => trainableSet.has(name),
    addBuffer: (input, output) => buffers.push({ input, output }),
  };

  // Forward.
  const saved = new Map<NodeProtoInit, Record<string, string>>();
  for (const node of forwardNodes) {
    const rule = opGradients[node.opType ?? ''];
    const onGradientPath = (node.input ?? []).some((input) => needsGrad.has(input));
    if (rule?.forward && onGradientPath) saved.set(node, rule.forward(context, node));
    else w.push(node);
  }

  // Loss and backward.
  const written = writeLoss(w, prediction, ranks.get(prediction), terms);
  const { grad } = written;
  const proximal = options.proximal ? writeProximalTerm(w, trainable, options.proximal.mu) : undefined;
  const loss = proximal ? w.op('Add', [written.loss, proximal.loss], 'loss.with_proximal') : written.loss;
  const lossOutput = w.op('Identity', [loss], 'loss');
  const contributions = new Map<string, string[]>([[prediction, [grad]]]);
  const gradientOf = (name: string): string | undefined => {
    const parts = contributions.get(name);
    if (!parts || parts.length === 0) return undefined;
    if (parts.length === 1) return parts[0];
    return w.op('Sum', parts, `${name}.grad`);
  };
  for (const node of [...forwardNodes].reverse()) {
    const inputs = node.input ?? [];
    if (!inputs.some((input, index) => needsGrad.has(input) && differentiableSlot(node, index))) continue;
    const outputGrads = (node.output ?? []).map(gradientOf);
    if (outputGrads[0] === undefined) continue;
    const inputGrads = (opGradients[node.opType ?? ''] as NonNullable<(typeof opGradients)[string]>).backward(context, node, outputGrads, saved.get(node) ?? {});
    inputs.forEach((input, index) => {
      const part = inputGrads[index];
      if (part && needsGrad.has(input) && differentiableSlot(node, index)) contributions.set(input, [...(contributions.get(input) ?? []), part]);
    });
  }
  const gradients = new Map(trainable.map((name) => [name, gradientOf(name) as string]));
  if (proximal) for (const [name, pull] of proximal.gradients) gradients.set(name, w.op('Add', [gradients.get(name) as string, pull], `${name}.grad_with_proximal`));

  // Outputs, state and the optimizer.
  const elementType = (type: FloatType | 'int64'): TensorElementType => type;
  const outputs = [valueInfo(lossOutput, floatType, [])];
  const gradientOutputs: Record<string, string> = {};
  if (options.exposeGradients || !options.optimizer) {
    for (const [name, gradient] of gradients) {
      const output = w.op('Identity', [gradient], `${name}.grad`);
      gradientOutputs[name] = output;
      outputs.push(valueInfo(output, floatType, tensorDims(initializers.get(name) as TensorProtoInit)));
    }
  }
  const state: StateTensor[] = [];
  const dimsOf = (name: string) => tensorDims(initializers.get(name) as TensorProtoInit);
  let learningRate: string | undefined;
  if (options.optimizer) {
    learningRate = learningRateInput;
    const result = writeOptimizer(w, options.optimizer, trainable.map((parameter) => ({ parameter, gradient: gradients.get(parameter) as string, rank: dimsOf(parameter).length })));
    for (const parameter of trainable) {
      state.push({ input: parameter, output: result.updated.get(parameter) as string, role: 'parameter', type: floatType, dims: dimsOf(parameter), initial: readFloatInitializer(initializers.get(parameter) as TensorProtoInit) });
    }
    for (const entry of result.state) {
      if (entry.kind === 'step') state.push({ input: entry.input, output: entry.output, role: 'optimizer', type: 'int64', dims: [], initial: new BigInt64Array(1) });
      else {
        const dims = dimsOf(entry.parameter as string);
        const count = dims.reduce((product, dim) => product * dim, 1);
        state.push({ input: entry.input, output: entry.output, role: 'optimizer', type: floatType, dims, initial: floatType === 'float32' ? new Float32Array(count) : new Float64Array(count) });
      }
    }
  } else {
    for (const parameter of trainable) {
      state.push({ input: parameter, output: parameter, role: 'parameter', type: floatType, dims: dimsOf(parameter), initial: readFloatInitializer(initializers.get(parameter) as TensorProtoInit) });
    }
  }
  for (const anchor of proximal?.anchors ?? []) {
    state.push({ input: anchor.input, output: anchor.output, role: 'optimizer', type: floatType, dims: dimsOf(anchor.parameter), initial: readFloatInitializer(initializers.get(anchor.parameter) as TensorProtoInit) });
  }
  for (const buffer of buffers) {
    const tensor = initializers.get(buffer.input);
    if (!tensor || floatTypeOf(tensor) !== floatType) throw new TrainingGraphError(`running statistic "${buffer.input}" must be a ${floatType} initializer to train BatchNormalization`);
    state.push({ input: buffer.input, output: buffer.output, role: 'buffer', type: floatType, dims: tensorDims(tensor), initial: readFloatInitializer(tensor) });
  }
  for (const entry of state) if (entry.output !== entry.input) outputs.push(valueInfo(entry.output, elementType(entry.type), entry.dims));

  const stateInputs = new Set(state.map((entry) => entry.input));
  const used = new Set<string>();
  for (const node of w.nodes) for (const input of node.input ?? []) used.add(input);
  const dataInputs = graphProto.input.filter((info) => used.has(info.name ?? '') && !initializers.has(info.name ?? '') && !stateInputs.has(info.name ?? ''));
  const usedLossInputs = [...new Set(terms.map((term) => lossInputs[term.kind]))];
  const lossInputInfos = usedLossInputs.map((name) =>
    name === 'labels' ? valueInfo(name, 'int64', ['batch']) : valueInfo(name, floatType, ranks.get(prediction) === undefined ? undefined : Array.from({ length: ranks.get(prediction) as number }, (_, axis) => `${name}_dim${axis}`)),
  );
  const inputs = [
    ...dataInputs,
    ...lossInputInfos,
    ...(learningRate ? [valueInfo(learningRate, floatType, [])] : []),
    ...state.map((entry) => valueInfo(entry.input, elementType(entry.type), entry.dims)),
  ];
  const keptInitializers = graphProto.initializer.filter((tensor) => used.has(tensor.name ?? '') && !stateInputs.has(tensor.name ?? ''));
  const training = model({
    irVersion: 8,
    opset: trainingOpset,
    producerName: 'ai-mass-train',
    graph: graph({
      name: `${graphProto.name || 'model'}_training_step`,
      nodes: w.nodes,
      inputs,
      outputs,
      initializers: [...keptInitializers, ...w.initializers],
    }),
  });
  return {
    bytes: encodeModel(training),
    floatType,
    prediction,
    dataInputs: dataInputs.map((info) => info.name as string),
    lossInputs: usedLossInputs,
    ...(learningRate ? { learningRateInput: learningRate } : {}),
    lossOutput,
    gradientOutputs,
    state,
    trainable,
  };
}
