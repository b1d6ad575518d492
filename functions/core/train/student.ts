/**
 * Students for distillation, built from a teacher's signature: an MLP of given hidden widths, or a
 * thinner Darknet-style CNN (onnx/darknet.ts's width multiplier and stages). A student keeps the teacher's
 * input and output names and shapes, and ends in a Softmax when the teacher does, so it can replace
 * the teacher behind the same requests.
 */
import { attr, graph, model, node, scalarFloat32, tensorFromFloat32, valueInfo, type Dimension } from '../onnx/builder.ts';
import { decodeModel, encodeModel, readFloat32Tensor, type ModelProto, type NodeProtoInit, type TensorProtoInit } from '../onnx/model-proto.ts';
import { buildDarknet53, DARKNET53_STAGES } from '../onnx/darknet.ts';
import { seededRandom } from '../platform/random.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { TrainingGraphError } from './gradients.ts';

export type StudentSpec =
  /** Hidden widths of MatMul + Add + Relu layers between the (flattened) input and the classes. */
  | { kind: 'mlp'; hidden: readonly number[]; seed?: number }
  /**
   * A Darknet-style CNN with every channel width times `widthMultiplier` and `stages` residual
   * blocks per stride-2 stage (default Darknet-53's); needs an [N, 3, S, S] input, S a multiple of 2^stages.
   */
  | { kind: 'darknet'; widthMultiplier: number; stages?: readonly number[]; seed?: number };

/** What a student must match: the teacher's first input and output. */
export interface TeacherSignature {
  inputName: string;
  /** Input dims after the batch dimension. */
  inputDims: number[];
  outputName: string;
  classes: number;
  /** The teacher's output is a Softmax over its logits. */
  softmax: boolean;
  /** Multiplies the input first (the teacher's own scalar Mul on its input, e.g. 1 / 255 for raw pixels); 1 leaves it as it is. */
  inputScale: number;
}

/** The scalar a model multiplies its input by first (`Mul(input, scalar initializer)`), else 1. */
export function inputScaleOf(proto: ModelProto, input: string): number {
  const g = proto.graph;
  const first = g?.node?.find((n) => n.input?.includes(input));
  if (first?.opType !== 'Mul') return 1;
  const other = (first.input ?? []).find((name) => name !== input);
  const scalar = g?.initializer?.find((t) => t.name === other && (t.dims ?? []).length === 0);
  return scalar ? (readFloat32Tensor(scalar)[0] ?? 1) : 1;
}

const staticDim = (dim: { dimValue?: unknown; dimParam?: string | null }) => (dim.dimParam ? undefined : Number(dim.dimValue ?? 0) || undefined);

/** The signature of a teacher model, refused when its first input or output has no static feature dims. */
export function teacherSignature(teacher: Uint8Array | ModelProto): TeacherSignature {
  const proto = teacher instanceof Uint8Array ? decodeModel(teacher) : teacher;
  const g = proto.graph;
  const initializers = new Set(g?.initializer?.map((t) => t.name));
  const input = g?.input?.find((i) => !initializers.has(i.name));
  const output = g?.output?.[0];
  if (!input?.name || !output?.name) throw new TrainingGraphError('the teacher has no input or no output');
  const inputDims = (input.type?.tensorType?.shape?.dim ?? []).slice(1).map(staticDim);
  if (inputDims.length === 0 || inputDims.some((d) => d === undefined)) {
    throw new TrainingGraphError(`the teacher's input "${input.name}" needs static dimensions after the batch to size a student`);
  }
  const outputDims = (output.type?.tensorType?.shape?.dim ?? []).map(staticDim);
  const classes = outputDims.at(-1);
  if (outputDims.length !== 2 || classes === undefined) throw new TrainingGraphError(`the teacher's output "${output.name}" must be [batch, classes] with static classes`);
  const producer = g?.node?.find((n) => n.output?.includes(output.name!));
  return { inputName: input.name, inputDims: inputDims as number[], outputName: output.name, classes, softmax: producer?.opType === 'Softmax', inputScale: inputScaleOf(proto, input.name) };
}

function gaussian(random: () => number): number {
  const u = 1 - random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** An MLP `features -> hidden... -> classes` (He-initialised under a seed), IR 8, opset 17. */
export function buildMlpStudent(signature: TeacherSignature, hidden: readonly number[], seed = 1): Uint8Array {
  if (hidden.some((w) => !Number.isInteger(w) || w < 1)) throw new TrainingGraphError(`hidden widths must be positive integers, got [${hidden.join(', ')}]`);
  const features = signature.inputDims.reduce((a, b) => a * b, 1);
  const sizes = [features, ...hidden, signature.classes];
  const random = seededRandom(seed);
  const nodes: NodeProtoInit[] = [];
  const initializers: TensorProtoInit[] = [];
  let previous = signature.inputName;
  if (signature.inputDims.length > 1) {
    nodes.push(node('Flatten', [previous], ['input.flat'], { axis: attr.int(1) }, 'flatten'));
    previous = 'input.flat';
  }
  if (signature.inputScale !== 1) {
    initializers.push(scalarFloat32('input_scale', signature.inputScale));
    nodes.push(node('Mul', [previous, 'input_scale'], ['input.scaled'], {}, 'scale_input'));
    previous = 'input.scaled';
  }
  for (let layer = 0; layer + 1 < sizes.length; layer++) {
    const [fanIn, fanOut] = [sizes[layer] as number, sizes[layer + 1] as number];
    const name = `dense${layer + 1}`;
    const last = layer + 2 === sizes.length;
    const std = Math.sqrt(2 / fanIn);
    initializers.push(tensorFromFloat32(`${name}.weight`, [fanIn, fanOut], Float32Array.from({ length: fanIn * fanOut }, () => gaussian(random) * std)));
    initializers.push(tensorFromFloat32(`${name}.bias`, [fanOut], new Float32Array(fanOut)));
    nodes.push(node('MatMul', [previous, `${name}.weight`], [`${name}.matmul`], {}, `${name}_matmul`));
    const sum = last ? (signature.softmax ? 'logits' : signature.outputName) : `${name}.preactivation`;
    nodes.push(node('Add', [`${name}.matmul`, `${name}.bias`], [sum], {}, `${name}_add_bias`));
    if (!last) nodes.push(node('Relu', [sum], [`${name}.activation`], {}, `${name}_relu`));
    previous = last ? sum : `${name}.activation`;
  }
  if (signature.softmax) nodes.push(node('Softmax', ['logits'], [signature.outputName], { axis: attr.int(-1) }, 'softmax'));
  const batchDims: Dimension[] = ['batch'];
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      docString: `distillation student: MLP ${sizes.join('-')}`,
      graph: graph({
        name: 'student_mlp',
        nodes,
        inputs: [valueInfo(signature.inputName, 'float32', [...batchDims, ...signature.inputDims])],
        outputs: [valueInfo(signature.outputName, 'float32', ['batch', signature.classes])],
        initializers,
      }),
    }),
  );
}

/** Why a teacher's input cannot feed a Darknet student of `stages` stages, or undefined when it can. */
export function darknetInputProblem(signature: TeacherSignature, stages: readonly number[] = DARKNET53_STAGES): string | undefined {
  const [channels, height, width] = signature.inputDims;
  const stride = 2 ** stages.length;
  if (signature.inputDims.length === 3 && channels === 3 && height === width && (height as number) % stride === 0) return undefined;
  return `a darknet student of ${stages.length} stages needs an input [batch, 3, S, S] with S a multiple of ${stride}; the teacher's is [batch, ${signature.inputDims.join(', ')}]`;
}

/** A thinner Darknet-style CNN for an image teacher ([N, 3, S, S]), renamed to the teacher's input and output. */
export async function buildDarknetStudent(signature: TeacherSignature, widthMultiplier: number, seed = 53, stages: readonly number[] = DARKNET53_STAGES): Promise<Uint8Array> {
  const problem = darknetInputProblem(signature, stages);
  if (problem) throw new TrainingGraphError(problem);
  const built = await buildDarknet53({ widthMultiplier, stages, inputSize: signature.inputDims[1] as number, classes: signature.classes, seed, probeImages: signature.classes, calibrationImages: 4 });
  const proto = decodeModel(encodeModel(built));
  const rename = new Map([['input', signature.inputName], ['probabilities', signature.outputName]]);
  const g = proto.graph as OnnxTypes.GraphProto;
  for (const n of g.node) {
    n.input = (n.input ?? []).map((name) => rename.get(name) ?? name);
    n.output = (n.output ?? []).map((name) => rename.get(name) ?? name);
  }
  for (const v of [...g.input, ...g.output]) v.name = rename.get(v.name ?? '') ?? v.name ?? '';
  return encodeModel(proto);
}

export async function buildStudent(signature: TeacherSignature, spec: StudentSpec): Promise<Uint8Array> {
  return spec.kind === 'mlp' ? buildMlpStudent(signature, spec.hidden, spec.seed) : buildDarknetStudent(signature, spec.widthMultiplier, spec.seed, spec.stages);
}

/**
 * The parameters a job trains by default: float initializers of rank 1 or more (weights, biases,
 * BatchNormalization scale and bias). Scalars (an input scale like the demo model's 1/255) and
 * running statistics stay as they are.
 */
export function defaultTrainable(source: Uint8Array | ModelProto): string[] {
  const proto = source instanceof Uint8Array ? decodeModel(source) : source;
  const g = proto.graph as OnnxTypes.GraphProto;
  const statistics = new Set(g.node.filter((n) => n.opType === 'BatchNormalization').flatMap((n) => (n.input ?? []).slice(3)));
  return g.initializer.filter((t) => (t.dataType === 1 || t.dataType === 11) && (t.dims ?? []).length > 0 && !statistics.has(t.name ?? '')).map((t) => t.name ?? '');
}
