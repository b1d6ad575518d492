/**
 * Reverse-mode gradients, one rule per ONNX op, each written as ONNX nodes. A rule receives the
 * gradient of every output (undefined where nothing downstream needs it) and returns the gradient of
 * every input (undefined where that input needs none). Some ops also rewrite their forward node for
 * training (BatchNormalization on batch statistics, Dropout with its mask, MaxPool with its indices).
 */
import { attr } from '../onnx/builder.ts';
import { intsAttribute, numberAttribute } from '../onnx/graph-toolkit.ts';
import type { NodeProtoInit } from '../onnx/model-proto.ts';
import type { GraphWriter } from './graph-writer.ts';

export class TrainingGraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingGraphError';
  }
}

export interface GradientContext {
  writer: GraphWriter;
  /** Rank of a tensor when the graph says it, else undefined. */
  rank(name: string): number | undefined;
  /** Shape of a tensor as far as the graph says it (null for an unknown dim), else undefined. */
  shape(name: string): readonly (number | string | null)[] | undefined;
  /** Fixed dims of an initializer (parameter or constant), else undefined. */
  staticDims(name: string): number[] | undefined;
  requiresGrad(name: string): boolean;
  /** True when `name` is a trainable parameter (BatchNormalization trains on batch statistics then). */
  isTrainable(name: string): boolean;
  /** Running statistics a training-mode BatchNormalization updates: input name to updated output name. */
  addBuffer(input: string, updated: string): void;
}

export interface OpGradient {
  /** Writes the forward node (default: as it is) and returns what the backward rule needs saved. */
  forward?(context: GradientContext, node: NodeProtoInit): Record<string, string>;
  backward(context: GradientContext, node: NodeProtoInit, outputGrads: (string | undefined)[], saved: Record<string, string>): (string | undefined)[];
}

export function nodeLabel(node: NodeProtoInit): string {
  return `${node.opType} node "${node.name || (node.output ?? [])[0] || '?'}"`;
}

function stringAttribute(node: NodeProtoInit, name: string): string | undefined {
  const attribute = node.attribute?.find((a) => a.name === name);
  return attribute?.s ? new TextDecoder().decode(attribute.s) : undefined;
}

const inputOf = (node: NodeProtoInit, index: number): string => (node.input ?? [])[index] ?? '';

function requireRank(context: GradientContext, node: NodeProtoInit, name: string): number {
  const rank = context.rank(name);
  if (rank === undefined) throw new TrainingGraphError(`${nodeLabel(node)}: the rank of "${name}" is unknown; give the model's inputs shapes (at least their rank)`);
  return rank;
}

function sameKnownShape(a: readonly (number | string | null)[] | undefined, b: readonly (number | string | null)[] | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((dim, axis) => dim !== null && dim === b[axis]);
}

/**
 * Sums `grad` (shaped like the broadcast result `result`, of rank `resultRank`) back to the shape of
 * `operand`; nothing to do when both shapes are known and equal.
 */
export function unbroadcast(context: GradientContext, grad: string, operand: string, resultRank: number | undefined, result?: string): string {
  const w = context.writer;
  if (result !== undefined && sameKnownShape(context.shape(operand), context.shape(result))) return grad;
  const dims = context.staticDims(operand);
  if (dims && resultRank !== undefined && resultRank >= dims.length) {
    const lead = resultRank - dims.length;
    const axes = Array.from({ length: lead }, (_, axis) => axis);
    dims.forEach((dim, index) => {
      if (dim === 1) axes.push(lead + index);
    });
    if (axes.length === 0) return grad;
    if (axes.every((axis) => axis < lead)) return w.op('ReduceSum', [grad, w.ints(axes)], `${operand}.grad.part`, { keepdims: attr.int(0) });
    const summed = w.op('ReduceSum', [grad, w.ints(axes)], `${operand}.grad.summed`, { keepdims: attr.int(1) });
    return w.op('Reshape', [summed, w.ints(dims)], `${operand}.grad.part`);
  }
  // Shapes known only at run time: pad the operand's shape with leading ones to the gradient's rank,
  // sum over every axis where it is 1 (a no-op where the gradient's dim is 1 too), reshape back.
  const gradShape = w.op('Shape', [grad], `${operand}.grad.shape`);
  const operandShape = w.op('Shape', [operand], `${operand}.shape`);
  const gradRank = w.op('Size', [gradShape], `${operand}.grad.rank`);
  const operandRank = w.op('Size', [operandShape], `${operand}.rank`);
  const missing = w.op('Sub', [gradRank, operandRank], `${operand}.missing_rank`);
  const missing1d = w.op('Reshape', [missing, w.ints([1])], `${operand}.missing_rank_1d`);
  const ones = w.op('ConstantOfShape', [missing1d], `${operand}.leading_ones`, { value: attr.tensor({ name: 'value', dims: [1], dataType: 7, int64Data: [1] }) });
  const padded = w.op('Concat', [ones, operandShape], `${operand}.padded_shape`, { axis: attr.int(0) });
  const isOne = w.op('Equal', [padded, w.ints([1])], `${operand}.is_one`);
  const positions = w.op('NonZero', [isOne], `${operand}.one_positions`);
  const axes = w.op('Reshape', [positions, w.ints([-1])], `${operand}.reduce_axes`);
  const summed = w.op('ReduceSum', [grad, axes], `${operand}.grad.summed`, { keepdims: attr.int(1), noop_with_empty_axes: attr.int(1) });
  return w.op('Reshape', [summed, operandShape], `${operand}.grad.part`);
}

function lastTwoSwapped(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, axis) => axis);
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return perm;
}

const binaryResultRank = (context: GradientContext, node: NodeProtoInit): number | undefined => {
  const a = context.rank(inputOf(node, 0));
  const b = context.rank(inputOf(node, 1));
  return a === undefined || b === undefined ? undefined : Math.max(a, b);
};

function elementwise(rule: (context: GradientContext, node: NodeProtoInit, dY: string) => [string | undefined, string | undefined]): OpGradient {
  return {
    backward(context, node, [dY]) {
      const [a, b] = [inputOf(node, 0), inputOf(node, 1)];
      const [dA, dB] = rule(context, node, dY as string);
      const resultRank = binaryResultRank(context, node);
      const result = (node.output ?? [])[0] as string;
      return [
        context.requiresGrad(a) && dA ? unbroadcast(context, dA, a, resultRank, result) : undefined,
        context.requiresGrad(b) && dB ? unbroadcast(context, dB, b, resultRank, result) : undefined,
      ];
    },
  };
}

/**
 * A ConvTranspose run with only the begin pads covers positions 0.. of the input; bring it to
 * `like`'s spatial size: drop what lies in the end padding, add zeros for rows no window reached.
 */
function fitSpatial(context: GradientContext, result: string, like: string, window: Window, base: string): string {
  const { strides, pads } = window;
  if (strides.every((stride) => stride === 1) && (pads[2] ?? 0) === 0 && (pads[3] ?? 0) === 0) return result;
  const w = context.writer;
  const target = w.op('Slice', [w.op('Shape', [like], `${base}.target_shape`), w.ints([2]), w.ints([4])], `${base}.target_hw`);
  const cropped = w.op('Slice', [result, w.ints([0, 0]), target, w.ints([2, 3])], `${base}.cropped`);
  const got = w.op('Slice', [w.op('Shape', [cropped], `${base}.got_shape`), w.ints([2]), w.ints([4])], `${base}.got_hw`);
  const missing = w.op('Sub', [target, got], `${base}.missing_hw`);
  const pads2 = w.op('Concat', [w.ints([0, 0, 0, 0, 0, 0]), missing], `${base}.tail_pads`, { axis: attr.int(0) });
  return w.op('Pad', [cropped, pads2], base);
}

const beginPads = (window: Window) => [window.pads[0] ?? 0, window.pads[1] ?? 0, 0, 0];

interface Window {
  strides: number[];
  pads: number[];
  dilations: number[];
  kernel?: number[];
}

function window2d(context: GradientContext, node: NodeProtoInit, kernelFrom?: string): Window {
  const autoPad = stringAttribute(node, 'auto_pad') ?? 'NOTSET';
  if (autoPad !== 'NOTSET' && autoPad !== 'VALID') {
    throw new TrainingGraphError(`${nodeLabel(node)}: auto_pad ${autoPad} is not supported for training; export the model with explicit pads`);
  }
  let kernel = intsAttribute(node, 'kernel_shape');
  if (!kernel && kernelFrom) kernel = context.staticDims(kernelFrom)?.slice(2);
  const spatial = kernel?.length ?? intsAttribute(node, 'strides')?.length ?? (context.rank(inputOf(node, 0)) ?? 0) - 2;
  if (spatial !== 2) throw new TrainingGraphError(`${nodeLabel(node)}: only 2-D ${node.opType} trains (this one has ${spatial > 0 ? spatial : 'unknown'} spatial dims)`);
  return {
    strides: intsAttribute(node, 'strides') ?? [1, 1],
    pads: autoPad === 'VALID' ? [0, 0, 0, 0] : (intsAttribute(node, 'pads') ?? [0, 0, 0, 0]),
    dilations: intsAttribute(node, 'dilations') ?? [1, 1],
    ...(kernel ? { kernel } : {}),
  };
}

const convGradient: OpGradient = {
  backward(context, node, [dY]) {
    const w = context.writer;
    const [x, weight, bias] = [inputOf(node, 0), inputOf(node, 1), inputOf(node, 2)];
    const window = window2d(context, node, weight);
    const { strides, pads, dilations } = window;
    const group = numberAttribute(node, 'group', 1);
    const grads: (string | undefined)[] = [undefined, undefined, undefined];
    const dy = dY as string;
    if (context.requiresGrad(x)) {
      const transposed = w.op('ConvTranspose', [dy, weight], `${x}.grad.convt`, {
        strides: attr.ints(strides),
        pads: attr.ints(beginPads(window)),
        dilations: attr.ints(dilations),
        group: attr.int(group),
      });
      grads[0] = fitSpatial(context, transposed, x, window, `${x}.grad.part`);
    }
    if (context.requiresGrad(weight)) {
      // dW[m, c, i, j] = sum over n, p, q of dY[n, m, p, q] * X[n, c, i*dilation + p*stride, ...]: a
      // convolution of X with channels and batch swapped by dY as kernel, strides and dilations swapped.
      let swapped: string;
      if (group === 1) {
        swapped = w.op('Transpose', [x], `${x}.channels_first`, { perm: attr.ints([1, 0, 2, 3]) });
      } else {
        const weightDims = context.staticDims(weight);
        if (!weightDims) throw new TrainingGraphError(`${nodeLabel(node)}: a grouped Conv trains only with its weight as an initializer`);
        const channelsPerGroup = weightDims[1] as number;
        const channelsFirst = w.op('Transpose', [x], `${x}.channels_first`, { perm: attr.ints([1, 0, 2, 3]) });
        const rest = w.op('Slice', [w.op('Shape', [channelsFirst], `${x}.cf_shape`), w.ints([1]), w.ints([4])], `${x}.cf_rest`);
        const grouped = w.op('Reshape', [channelsFirst, w.op('Concat', [w.ints([group, channelsPerGroup]), rest], `${x}.grouped_shape`, { axis: attr.int(0) })], `${x}.grouped`);
        const perGroupFirst = w.op('Transpose', [grouped], `${x}.group_batch`, { perm: attr.ints([1, 0, 2, 3, 4]) });
        const spatial = w.op('Slice', [w.op('Shape', [x], `${x}.shape_for_groups`), w.ints([2]), w.ints([4])], `${x}.hw`);
        swapped = w.op('Reshape', [perGroupFirst, w.op('Concat', [w.ints([channelsPerGroup, -1]), spatial], `${x}.swapped_shape`, { axis: attr.int(0) })], `${x}.swapped`);
      }
      const kernel = w.op('Transpose', [dy], `${weight}.grad.kernel`, { perm: attr.ints([1, 0, 2, 3]) });
      const correlated = w.op('Conv', [swapped, kernel], `${weight}.grad.correlated`, {
        strides: attr.ints(dilations),
        dilations: attr.ints(strides),
        pads: attr.ints(pads),
        group: attr.int(group),
      });
      const kernelHw = w.op('Slice', [w.op('Shape', [weight], `${weight}.shape`), w.ints([2]), w.ints([4])], `${weight}.hw`);
      const cropped = w.op('Slice', [correlated, w.ints([0, 0]), kernelHw, w.ints([2, 3])], `${weight}.grad.cropped`);
      grads[1] = w.op('Transpose', [cropped], `${weight}.grad.part`, { perm: attr.ints([1, 0, 2, 3]) });
    }
    if (bias && context.requiresGrad(bias)) grads[2] = w.op('ReduceSum', [dy, w.ints([0, 2, 3])], `${bias}.grad.part`, { keepdims: attr.int(0) });
    return grads;
  },
};

/** Softmax-style rules reduce over one axis; opset 13 and later give Softmax a plain axis attribute. */
const axisOf = (node: NodeProtoInit) => numberAttribute(node, 'axis', -1);

const batchNormalization: OpGradient = {
  forward(context, node): Record<string, string> {
    const w = context.writer;
    const [x, scale, bias, mean, variance] = [0, 1, 2, 3, 4].map((index) => inputOf(node, index)) as [string, string, string, string, string];
    const y = (node.output ?? [])[0] as string;
    const epsilon = numberAttribute(node, 'epsilon', 1e-5);
    const rank = requireRank(context, node, x);
    const axes = [0, ...Array.from({ length: rank - 2 }, (_, index) => index + 2)];
    const unsqueezeAxes = Array.from({ length: rank - 2 }, (_, index) => index + 1);
    const perChannel = (name: string, base: string) => (unsqueezeAxes.length ? w.op('Unsqueeze', [name, w.ints(unsqueezeAxes)], base) : name);
    if (!context.isTrainable(scale) && !context.isTrainable(bias)) {
      // Frozen: inference mode on the running statistics, a per-channel affine map.
      w.push(node);
      const inverseStd = w.op('Reciprocal', [w.op('Sqrt', [w.op('Add', [variance, w.float(epsilon)], `${y}.var_eps`)], `${y}.std`)], `${y}.inverse_std`);
      return { gain: perChannel(w.op('Mul', [scale, inverseStd], `${y}.gain_flat`), `${y}.gain`) };
    }
    // Training mode on batch statistics (population variance, as the ONNX spec defines running_var).
    const momentum = numberAttribute(node, 'momentum', 0.9);
    const batchMean = w.op('ReduceMean', [x], `${y}.batch_mean`, { axes: attr.ints(axes), keepdims: attr.int(1) });
    const centered = w.op('Sub', [x, batchMean], `${y}.centered`);
    const batchVariance = w.op('ReduceMean', [w.op('Mul', [centered, centered], `${y}.squared`)], `${y}.batch_var`, { axes: attr.ints(axes), keepdims: attr.int(1) });
    const inverseStd = w.op('Reciprocal', [w.op('Sqrt', [w.op('Add', [batchVariance, w.float(epsilon)], `${y}.var_eps`)], `${y}.std`)], `${y}.inverse_std`);
    const normalized = w.op('Mul', [centered, inverseStd], `${y}.normalized`);
    const gain = perChannel(scale, `${y}.scale`);
    w.reserve(y);
    w.nodes.push({ opType: 'Add', input: [w.op('Mul', [normalized, gain], `${y}.scaled`), perChannel(bias, `${y}.bias`)], output: [y], name: w.fresh(`Add:${y}`) });
    for (const [running, batch] of [[mean, batchMean], [variance, batchVariance]] as const) {
      const flat = w.op('Reshape', [batch, w.ints([-1])], `${batch}.flat`);
      const kept = w.op('Mul', [running, w.float(momentum)], `${running}.kept`);
      const updated = w.op('Add', [kept, w.op('Mul', [flat, w.float(1 - momentum)], `${running}.new_part`)], `${running}.next`);
      context.addBuffer(running, updated);
    }
    return { normalized, inverseStd, gain, training: 'yes' };
  },
  backward(context, node, [dY], saved) {
    const w = context.writer;
    const dy = dY as string;
    const [x, scale, bias] = [inputOf(node, 0), inputOf(node, 1), inputOf(node, 2)];
    if (saved.training !== 'yes') return [context.requiresGrad(x) ? w.op('Mul', [dy, saved.gain as string], `${x}.grad.part`) : undefined];
    const rank = requireRank(context, node, x);
    const axes = [0, ...Array.from({ length: rank - 2 }, (_, index) => index + 2)];
    const normalized = saved.normalized as string;
    const mean = (name: string, base: string) => w.op('ReduceMean', [name], base, { axes: attr.ints(axes), keepdims: attr.int(1) });
    const grads: (string | undefined)[] = [undefined, undefined, undefined];
    const dyNormalized = w.op('Mul', [dy, normalized], `${x}.dy_xhat`);
    if (context.requiresGrad(scale)) grads[1] = w.op('ReduceSum', [dyNormalized, w.ints(axes)], `${scale}.grad.part`, { keepdims: attr.int(0) });
    if (context.requiresGrad(bias)) grads[2] = w.op('ReduceSum', [dy, w.ints(axes)], `${bias}.grad.part`, { keepdims: attr.int(0) });
    if (context.requiresGrad(x)) {
      // dX = gain * inverse_std * (dY - mean(dY) - xhat * mean(dY * xhat))
      const centeredGrad = w.op('Sub', [dy, mean(dy, `${x}.mean_dy`)], `${x}.dy_centered`);
      const projection = w.op('Mul', [normalized, mean(dyNormalized, `${x}.mean_dy_xhat`)], `${x}.projection`);
      const inner = w.op('Sub', [centeredGrad, projection], `${x}.bn_inner`);
      grads[0] = w.op('Mul', [inner, w.op('Mul', [saved.gain as string, saved.inverseStd as string], `${x}.bn_factor`)], `${x}.grad.part`);
    }
    return grads;
  },
};

const ceilModeRefused = (node: NodeProtoInit) => {
  if (numberAttribute(node, 'ceil_mode', 0) !== 0) throw new TrainingGraphError(`${nodeLabel(node)}: ceil_mode 1 is not supported for training`);
};

export const opGradients: Record<string, OpGradient> = {
  Identity: { backward: (_context, _node, [dY]) => [dY] },
  Add: elementwise((_context, _node, dY) => [dY, dY]),
  Sub: elementwise((context, node, dY) => [dY, context.requiresGrad(inputOf(node, 1)) ? context.writer.op('Neg', [dY], `${inputOf(node, 1)}.grad.neg`) : undefined]),
  Mul: elementwise((context, node, dY) => {
    const [a, b] = [inputOf(node, 0), inputOf(node, 1)];
    return [
      context.requiresGrad(a) ? context.writer.op('Mul', [dY, b], `${a}.grad.full`) : undefined,
      context.requiresGrad(b) ? context.writer.op('Mul', [dY, a], `${b}.grad.full`) : undefined,
    ];
  }),
  Div: elementwise((context, node, dY) => {
    const w = context.writer;
    const [a, b] = [inputOf(node, 0), inputOf(node, 1)];
    const y = (node.output ?? [])[0] as string;
    const dA = w.op('Div', [dY, b], `${a}.grad.full`);
    return [
      context.requiresGrad(a) ? dA : undefined,
      // d(a/b)/db = -a/b^2 = -y/b
      context.requiresGrad(b) ? w.op('Neg', [w.op('Mul', [dY, w.op('Div', [y, b], `${b}.y_over_b`)], `${b}.grad.pos`)], `${b}.grad.full`) : undefined,
    ];
  }),
  MatMul: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const dy = dY as string;
      const [a, b] = [inputOf(node, 0), inputOf(node, 1)];
      const rankA = requireRank(context, node, a);
      const rankB = requireRank(context, node, b);
      if (rankA < 2 || rankB < 2) throw new TrainingGraphError(`${nodeLabel(node)}: MatMul of a 1-D operand is not supported for training`);
      const resultRank = Math.max(rankA, rankB);
      const grads: (string | undefined)[] = [undefined, undefined];
      if (context.requiresGrad(a)) {
        const full = w.op('MatMul', [dy, w.op('Transpose', [b], `${b}.T`, { perm: attr.ints(lastTwoSwapped(rankB)) })], `${a}.grad.full`);
        grads[0] = rankA === resultRank && rankB <= rankA && rankB === 2 ? full : unbroadcast(context, full, a, resultRank);
      }
      if (context.requiresGrad(b)) {
        if (rankB === 2) {
          // Fold every leading axis of A and dY into the rows: one matrix product, no reduction.
          const flatA = rankA === 2 ? a : w.op('Flatten', [a], `${a}.rows`, { axis: attr.int(rankA - 1) });
          const flatDy = rankA === 2 ? dy : w.op('Flatten', [dy], `${dy}.rows`, { axis: attr.int(rankA - 1) });
          grads[1] = w.op('MatMul', [w.op('Transpose', [flatA], `${a}.T`, { perm: attr.ints([1, 0]) }), flatDy], `${b}.grad.part`);
        } else {
          const full = w.op('MatMul', [w.op('Transpose', [a], `${a}.T`, { perm: attr.ints(lastTwoSwapped(rankA)) }), dy], `${b}.grad.full`);
          grads[1] = unbroadcast(context, full, b, resultRank);
        }
      }
      return grads;
    },
  },
  Gemm: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const dy = dY as string;
      const [a, b, c] = [inputOf(node, 0), inputOf(node, 1), inputOf(node, 2)];
      const alpha = numberAttribute(node, 'alpha', 1);
      const beta = numberAttribute(node, 'beta', 1);
      const transA = numberAttribute(node, 'transA', 0);
      const transB = numberAttribute(node, 'transB', 0);
      const gemm = (x: string, y: string, tA: number, tB: number, output: string) =>
        w.op('Gemm', [x, y], output, { alpha: attr.float(alpha), transA: attr.int(tA), transB: attr.int(tB) });
      return [
        context.requiresGrad(a) ? (transA ? gemm(b, dy, transB, 1, `${a}.grad.part`) : gemm(dy, b, 0, transB ? 0 : 1, `${a}.grad.part`)) : undefined,
        context.requiresGrad(b) ? (transB ? gemm(dy, a, 1, transA, `${b}.grad.part`) : gemm(a, dy, transA ? 0 : 1, 0, `${b}.grad.part`)) : undefined,
        c && context.requiresGrad(c)
          ? unbroadcast(context, beta === 1 ? dy : w.op('Mul', [dy, w.float(beta)], `${c}.grad.scaled`), c, 2, (node.output ?? [])[0] as string)
          : undefined,
      ];
    },
  },
  Relu: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const x = inputOf(node, 0);
      return [w.op('Where', [w.op('Greater', [x, w.float(0)], `${x}.positive`), dY as string, w.float(0)], `${x}.grad.part`)];
    },
  },
  LeakyRelu: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const x = inputOf(node, 0);
      const leaked = w.op('Mul', [dY as string, w.float(numberAttribute(node, 'alpha', 0.01))], `${x}.grad.leaked`);
      return [w.op('Where', [w.op('Greater', [x, w.float(0)], `${x}.positive`), dY as string, leaked], `${x}.grad.part`)];
    },
  },
  Sigmoid: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const [x, y] = [inputOf(node, 0), (node.output ?? [])[0] as string];
      const slope = w.op('Mul', [y, w.op('Sub', [w.float(1), y], `${y}.complement`)], `${y}.slope`);
      return [w.op('Mul', [dY as string, slope], `${x}.grad.part`)];
    },
  },
  Tanh: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const [x, y] = [inputOf(node, 0), (node.output ?? [])[0] as string];
      const slope = w.op('Sub', [w.float(1), w.op('Mul', [y, y], `${y}.squared`)], `${y}.slope`);
      return [w.op('Mul', [dY as string, slope], `${x}.grad.part`)];
    },
  },
  Softmax: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const [x, y] = [inputOf(node, 0), (node.output ?? [])[0] as string];
      const weighted = w.op('ReduceSum', [w.op('Mul', [dY as string, y], `${y}.dy_y`), w.ints([axisOf(node)])], `${y}.dy_dot_y`, { keepdims: attr.int(1) });
      return [w.op('Mul', [y, w.op('Sub', [dY as string, weighted], `${y}.dy_centered`)], `${x}.grad.part`)];
    },
  },
  LogSoftmax: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const [x, y] = [inputOf(node, 0), (node.output ?? [])[0] as string];
      const total = w.op('ReduceSum', [dY as string, w.ints([axisOf(node)])], `${y}.dy_sum`, { keepdims: attr.int(1) });
      const spread = w.op('Mul', [w.op('Exp', [y], `${y}.probabilities`), total], `${y}.spread`);
      return [w.op('Sub', [dY as string, spread], `${x}.grad.part`)];
    },
  },
  Conv: convGradient,
  BatchNormalization: batchNormalization,
  MaxPool: {
    forward(context, node) {
      const w = context.writer;
      if (numberAttribute(node, 'storage_order', 0) !== 0) throw new TrainingGraphError(`${nodeLabel(node)}: storage_order 1 is not supported for training`);
      window2d(context, node);
      const outputs = [...(node.output ?? [])];
      const indices = outputs[1] || w.fresh(`${outputs[0]}.argmax`);
      w.push({ ...node, output: [outputs[0] as string, indices] });
      return { indices };
    },
    backward(context, node, [dY], saved) {
      // Indices are flat positions in X (unpadded); overlapping windows add up.
      const w = context.writer;
      const x = inputOf(node, 0);
      const flatZeros = w.op('Reshape', [w.zerosLike(x, `${x}.grad.zeros`), w.ints([-1])], `${x}.grad.zeros_flat`);
      const flatIndices = w.op('Reshape', [saved.indices as string, w.ints([-1])], `${x}.argmax_flat`);
      const flatGrad = w.op('Reshape', [dY as string, w.ints([-1])], `${x}.pooled_grad_flat`);
      const scattered = w.op('ScatterElements', [flatZeros, flatIndices, flatGrad], `${x}.grad.scattered`, { axis: attr.int(0), reduction: attr.string('add') });
      return [w.op('Reshape', [scattered, w.op('Shape', [x], `${x}.shape`)], `${x}.grad.part`)];
    },
  },
  AveragePool: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const x = inputOf(node, 0);
      ceilModeRefused(node);
      const window = window2d(context, node);
      const { strides, pads, kernel } = window;
      const [kh, kw] = kernel as [number, number];
      let scaled: string;
      if (numberAttribute(node, 'count_include_pad', 0) === 1 || pads.every((pad) => pad === 0)) {
        scaled = w.op('Mul', [dY as string, w.float(1 / (kh * kw))], `${x}.pool_grad_scaled`);
      } else {
        // Border windows average fewer elements: divide by how many each really covered.
        const ones = w.op('Add', [w.zerosLike(x, `${x}.pool_zeros`), w.float(1)], `${x}.pool_ones`);
        const coverage = w.op('AveragePool', [ones], `${x}.pool_coverage`, { kernel_shape: attr.ints([kh, kw]), strides: attr.ints(strides), pads: attr.ints(pads), count_include_pad: attr.int(1) });
        scaled = w.op('Div', [dY as string, w.op('Mul', [coverage, w.float(kh * kw)], `${x}.pool_counts`)], `${x}.pool_grad_scaled`);
      }
      // One channel at a time: fold N and C together so a single ones kernel spreads every window.
      const pooledHw = w.op('Slice', [w.op('Shape', [scaled], `${x}.pooled_shape`), w.ints([2]), w.ints([4])], `${x}.pooled_hw`);
      const folded = w.op('Reshape', [scaled, w.op('Concat', [w.ints([-1, 1]), pooledHw], `${x}.folded_shape`, { axis: attr.int(0) })], `${x}.pool_grad_folded`);
      const spread = w.op('ConvTranspose', [folded, w.float(new Array(kh * kw).fill(1), [1, 1, kh, kw])], `${x}.pool_grad_spread`, { strides: attr.ints(strides), pads: attr.ints(beginPads(window)) });
      const full = fitSpatial(context, spread, x, window, `${x}.pool_grad_fitted`);
      return [w.op('Reshape', [full, w.op('Shape', [x], `${x}.shape`)], `${x}.grad.part`)];
    },
  },
  GlobalAveragePool: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const x = inputOf(node, 0);
      const shape = w.op('Shape', [x], `${x}.shape`);
      const area = w.op('ReduceProd', [w.op('Slice', [shape, w.ints([2]), w.ints([Number.MAX_SAFE_INTEGER])], `${x}.spatial`)], `${x}.area`, { keepdims: attr.int(1) });
      const areaFloat = w.op('Cast', [area], `${x}.area_float`, { to: attr.int(w.floatType === 'float32' ? 1 : 11) });
      return [w.op('Div', [w.op('Expand', [dY as string, shape], `${x}.grad.expanded`), areaFloat], `${x}.grad.part`)];
    },
  },
  Flatten: { backward: (context, node, [dY]) => [reshapeBack(context, dY as string, inputOf(node, 0))] },
  Reshape: { backward: (context, node, [dY]) => [reshapeBack(context, dY as string, inputOf(node, 0)), undefined] },
  Transpose: {
    backward(context, node, [dY]) {
      const x = inputOf(node, 0);
      const perm = intsAttribute(node, 'perm');
      const inverse = perm ? perm.map((_, axis) => perm.indexOf(axis)) : undefined;
      return [context.writer.op('Transpose', [dY as string], `${x}.grad.part`, inverse ? { perm: attr.ints(inverse) } : {})];
    },
  },
  Concat: {
    backward(context, node, [dY]) {
      const w = context.writer;
      const axis = numberAttribute(node, 'axis', 0);
      const inputs = node.input ?? [];
      const sizes = w.op('Concat', inputs.map((input) => w.dim(input, axis, `${input}.concat_size`)), `${(node.output ?? [])[0]}.split_sizes`, { axis: attr.int(0) });
      const parts = w.emit('Split', [dY as string, sizes], inputs.map((input) => `${input}.grad.part`), { axis: attr.int(axis) });
      return parts.map((part, index) => (context.requiresGrad(inputs[index] as string) ? part : undefined));
    },
  },
  Dropout: {
    forward(context, node) {
      const w = context.writer;
      const outputs = [...(node.output ?? [])];
      const mask = outputs[1] || w.fresh(`${outputs[0]}.mask`);
      const ratio = inputOf(node, 1);
      w.push({ ...node, input: [inputOf(node, 0), ratio, w.bool(true)], output: [outputs[0] as string, mask] });
      const keep = ratio ? w.op('Sub', [w.float(1), ratio], `${mask}.keep`) : w.float(0.5);
      return { mask, keepScale: w.op('Div', [w.float(1), keep], `${mask}.scale`) };
    },
    backward(context, node, [dY], saved) {
      const w = context.writer;
      const x = inputOf(node, 0);
      const kept = w.op('Where', [saved.mask as string, dY as string, w.float(0)], `${x}.grad.kept`);
      return [w.op('Mul', [kept, saved.keepScale as string], `${x}.grad.part`)];
    },
  },
};

function reshapeBack(context: GradientContext, dY: string, x: string): string {
  const w = context.writer;
  return w.op('Reshape', [dY, w.op('Shape', [x], `${x}.shape`)], `${x}.grad.part`);
}

export const supportedOps = Object.keys(opGradients).sort();
