/**
 * Pruning. Unstructured: the smallest-magnitude weights of MatMul, Gemm and Conv set to zero, per
 * layer or against one global threshold (masks are kept, so fine-tuning keeps them zero).
 * Structured: whole hidden units removed, so the model really gets smaller and faster: a MatMul or
 * Gemm column (or a Conv output channel), its bias, the BatchNormalization entries of that channel
 * and the matching inputs of the next MatMul, Gemm or Conv. A unit chain runs from one such layer
 * through per-channel ops to the next one, every tensor on the way read by that chain alone.
 */
import { tensorFromFloat32 } from '../onnx/builder.ts';
import { tensorDims } from '../onnx/graph-toolkit.ts';
import { decodeModel, encodeModel, int64ToNumber, readFloat32Tensor, type ModelProto, type NodeProtoInit } from '../onnx/model-proto.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { TrainingGraphError } from './gradients.ts';

const LAYER_OPS = new Set(['MatMul', 'Gemm', 'Conv']);
/** Ops a channel passes through unchanged in position (their output channel c depends on input channel c only). */
const PER_CHANNEL_OPS = new Set(['Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Identity', 'Dropout', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Add']);

type Graph = OnnxTypes.GraphProto;

function attributeInt(node: NodeProtoInit, name: string, fallback: number): number {
  const a = node.attribute?.find((x) => x.name === name);
  return a ? int64ToNumber(a.i) : fallback;
}

class Weights {
  readonly byName: Map<string, { dims: number[]; values: Float32Array; index: number }>;
  private readonly graph: Graph;
  constructor(graph: Graph) {
    this.graph = graph;
    this.byName = new Map(
      graph.initializer.flatMap((t, index) => (t.dataType === 1 && t.name ? [[t.name, { dims: tensorDims(t), values: readFloat32Tensor(t), index }] as const] : [])),
    );
  }
  get(name: string | undefined) {
    return name === undefined ? undefined : this.byName.get(name);
  }
  set(name: string, dims: number[], values: Float32Array): void {
    const entry = this.byName.get(name)!;
    entry.dims = dims;
    entry.values = values;
    this.graph.initializer[entry.index] = tensorFromFloat32(name, dims, values) as OnnxTypes.TensorProto;
  }
}

/** The initializer a layer's weight lives in, and the axis along which its output units run. */
function layerWeight(node: NodeProtoInit): { name: string; outAxis: number; inAxis: number } | undefined {
  const input = node.input ?? [];
  switch (node.opType) {
    case 'MatMul':
      return { name: input[1] as string, outAxis: 1, inAxis: 0 };
    case 'Gemm': {
      const transB = attributeInt(node, 'transB', 0);
      return { name: input[1] as string, outAxis: transB ? 0 : 1, inAxis: transB ? 1 : 0 };
    }
    case 'Conv':
      return { name: input[1] as string, outAxis: 0, inAxis: 1 };
  }
  return undefined;
}

// ---------------------------------------------------------------- unstructured

export interface MagnitudeOptions {
  /** Share of each layer's weights (per-layer) or of all of them (global) set to zero, in [0, 1). */
  sparsity: number;
  scope: 'layer' | 'global';
}

export interface MagnitudeResult {
  bytes: Uint8Array;
  /** 1 where a weight is kept, by initializer name: apply after every fine-tuning step. */
  masks: Map<string, Uint8Array>;
  zeroed: number;
  total: number;
}

/** The k-th smallest |value| (k from 0), by sorting a copy: exact, and fast enough for weight tensors. */
function magnitudeThreshold(values: Float32Array[], sparsity: number): number {
  const total = values.reduce((n, v) => n + v.length, 0);
  const count = Math.floor(total * sparsity);
  if (count === 0) return -1;
  const all = new Float32Array(total);
  let at = 0;
  for (const v of values) for (let i = 0; i < v.length; i++) all[at++] = Math.abs(v[i] as number);
  all.sort();
  return all[count - 1] as number;
}

/** Zeroes weights at or below the threshold, at most `budget` of them (ties broken by position). */
function maskBelow(values: Float32Array, threshold: number, budget: { left: number }): Uint8Array {
  const mask = new Uint8Array(values.length).fill(1);
  for (let i = 0; i < values.length && budget.left > 0; i++) {
    if (Math.abs(values[i] as number) <= threshold) {
      mask[i] = 0;
      values[i] = 0;
      budget.left--;
    }
  }
  return mask;
}

export function magnitudePrune(source: Uint8Array, options: MagnitudeOptions): MagnitudeResult {
  if (!(options.sparsity >= 0 && options.sparsity < 1)) throw new RangeError(`sparsity must be in [0, 1), got ${options.sparsity}`);
  const proto = decodeModel(source);
  const g = proto.graph as Graph;
  const weights = new Weights(g);
  const names = [...new Set(g.node.filter((n) => LAYER_OPS.has(n.opType ?? '')).map((n) => layerWeight(n)?.name).filter((n): n is string => !!n && weights.byName.has(n)))];
  if (names.length === 0) throw new TrainingGraphError('the model has no MatMul, Gemm or Conv weight stored as an FP32 initializer to prune');
  const masks = new Map<string, Uint8Array>();
  let zeroed = 0;
  let total = 0;
  const prune = (group: string[]) => {
    const values = group.map((name) => Float32Array.from(weights.get(name)!.values));
    const size = values.reduce((n, v) => n + v.length, 0);
    const budget = { left: Math.floor(size * options.sparsity) };
    const threshold = magnitudeThreshold(values, options.sparsity);
    group.forEach((name, i) => {
      const v = values[i]!;
      const mask = maskBelow(v, threshold, budget);
      masks.set(name, mask);
      weights.set(name, weights.get(name)!.dims, v);
    });
    zeroed += Math.floor(size * options.sparsity) - budget.left;
    total += size;
  };
  if (options.scope === 'global') prune(names);
  else for (const name of names) prune([name]);
  return { bytes: encodeModel(proto), masks, zeroed, total };
}

/** Multiplies values by a mask in place (after a fine-tuning step, so pruned weights stay zero). */
export function applyMask(values: Float32Array | Float64Array, mask: Uint8Array): void {
  for (let i = 0; i < values.length; i++) if (mask[i] === 0) values[i] = 0;
}

// ---------------------------------------------------------------- structured

export interface UnitChain {
  producer: NodeProtoInit;
  consumer: NodeProtoInit;
  /** Per-channel nodes between them, in order. */
  between: NodeProtoInit[];
  width: number;
}

function slice(values: Float32Array, dims: number[], axis: number, keep: readonly number[]): { values: Float32Array; dims: number[] } {
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const size = dims[axis] as number;
  const out = new Float32Array(outer * keep.length * inner);
  let at = 0;
  for (let o = 0; o < outer; o++) for (const k of keep) {
    out.set(values.subarray((o * size + k) * inner, (o * size + k + 1) * inner), at);
    at += inner;
  }
  return { values: out, dims: dims.map((d, i) => (i === axis ? keep.length : d)) };
}

/** The unit chains of a model: producer layer, per-channel ops, consumer layer; each a candidate for structured pruning. */
export function unitChains(proto: ModelProto): UnitChain[] {
  const g = proto.graph as Graph;
  const weights = new Weights(g);
  const consumers = new Map<string, NodeProtoInit[]>();
  for (const n of g.node) for (const input of n.input ?? []) if (input) consumers.set(input, [...(consumers.get(input) ?? []), n]);
  const uses = (name: string) => (consumers.get(name) ?? []).length;
  const outputs = new Set(g.output.map((o) => o.name));
  const chains: UnitChain[] = [];
  for (const producer of g.node) {
    const w = LAYER_OPS.has(producer.opType ?? '') ? layerWeight(producer) : undefined;
    const wt = weights.get(w?.name);
    if (!w || !wt || uses(w.name) !== 1) continue;
    if (producer.opType === 'Conv' && attributeInt(producer, 'group', 1) !== 1) continue;
    if (producer.opType === 'MatMul' && wt.dims.length !== 2) continue;
    const width = wt.dims[w.outAxis] as number;
    const between: NodeProtoInit[] = [];
    let tensor = producer.output?.[0] as string;
    let consumer: NodeProtoInit | undefined;
    for (;;) {
      if (outputs.has(tensor) || uses(tensor) !== 1) break;
      const next = consumers.get(tensor)![0]!;
      if (LAYER_OPS.has(next.opType ?? '')) {
        const nw = layerWeight(next);
        const nwt = weights.get(nw?.name);
        const fits = nw && nwt && next.input?.[0] === tensor && uses(nw.name) === 1 && nwt.dims[nw.inAxis] === width && (next.opType !== 'Conv' || attributeInt(next, 'group', 1) === 1);
        if (fits) consumer = next;
        break;
      }
      if (next.opType === 'Flatten' && between.some((n) => n.opType === 'GlobalAveragePool')) {
        between.push(next);
        tensor = next.output?.[0] as string;
        continue;
      }
      if (!PER_CHANNEL_OPS.has(next.opType ?? '')) break;
      if (next.opType === 'Add') {
        // A bias only: a per-channel initializer, not a second activation (a residual joins two chains).
        const other = next.input?.find((i) => i !== tensor);
        const bias = weights.get(other);
        if (!bias || !other || uses(other) !== 1 || bias.values.length !== width) break;
      }
      if (next.opType === 'BatchNormalization' && (next.input ?? []).slice(1).some((name) => !weights.get(name) || uses(name) !== 1)) break;
      between.push(next);
      tensor = next.output?.[0] as string;
    }
    if (consumer) chains.push({ producer, consumer, between, width });
  }
  return chains;
}

export interface StructuredOptions {
  /** Units each chain keeps, from its producer's node name and current width (at least 1). */
  keep: (producer: string, width: number) => number;
}

export interface StructuredResult {
  bytes: Uint8Array;
  /** Width before and after, by producer node name. */
  layers: { producer: string; consumer: string; before: number; after: number }[];
  parametersBefore: number;
  parametersAfter: number;
}

const parameterCount = (g: Graph) => g.initializer.reduce((n, t) => n + tensorDims(t).reduce((a, b) => a * b, 1), 0);

/**
 * Removes the least important units of every unit chain. A unit's importance is the L2 norm of its
 * incoming weights times that of its outgoing weights (times |gamma| / sqrt(var + eps) through a
 * BatchNormalization), so a unit the next layer barely reads goes first.
 */
export function structuredPrune(source: Uint8Array, options: StructuredOptions): StructuredResult {
  const proto = decodeModel(source);
  const g = proto.graph as Graph;
  const parametersBefore = parameterCount(g);
  const chains = unitChains(proto);
  if (chains.length === 0) throw new TrainingGraphError('the model has no hidden units to prune: no MatMul, Gemm or Conv feeds another through per-channel ops only');
  const weights = new Weights(g);
  const changed = new Set<string>();
  const layers: StructuredResult['layers'] = [];
  for (const chain of chains) {
    const pw = layerWeight(chain.producer)!;
    const cw = layerWeight(chain.consumer)!;
    const p = weights.get(pw.name)!;
    const c = weights.get(cw.name)!;
    const width = p.dims[pw.outAxis] as number;
    const target = Math.max(1, Math.min(width, Math.round(options.keep(chain.producer.name || pw.name, width))));
    const score = new Float64Array(width);
    const norms = (values: Float32Array, dims: number[], axis: number) => {
      const out = new Float64Array(dims[axis] as number);
      const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
      for (let i = 0; i < values.length; i++) {
        const unit = Math.floor(i / inner) % (dims[axis] as number);
        out[unit] = (out[unit] as number) + (values[i] as number) ** 2;
      }
      return out.map(Math.sqrt);
    };
    const incoming = norms(p.values, p.dims, pw.outAxis);
    const outgoing = norms(c.values, c.dims, cw.inAxis);
    for (let u = 0; u < width; u++) score[u] = (incoming[u] as number) * (outgoing[u] as number);
    for (const bn of chain.between.filter((n) => n.opType === 'BatchNormalization')) {
      const gamma = weights.get(bn.input?.[1])!.values;
      const variance = weights.get(bn.input?.[4])!.values;
      const epsilon = bn.attribute?.find((a) => a.name === 'epsilon')?.f ?? 1e-5;
      for (let u = 0; u < width; u++) score[u] = (score[u] as number) * (Math.abs(gamma[u] as number) / Math.sqrt((variance[u] as number) + epsilon));
    }
    const keep = Array.from({ length: width }, (_, u) => u)
      .sort((a, b) => (score[b] as number) - (score[a] as number) || a - b)
      .slice(0, target)
      .sort((a, b) => a - b);
    layers.push({ producer: chain.producer.name || pw.name, consumer: chain.consumer.name || cw.name, before: width, after: target });
    if (target === width) continue;
    const cut = (name: string | undefined, axis: number) => {
      const t = weights.get(name);
      if (!name || !t) return;
      const sliced = slice(t.values, t.dims, axis, keep);
      weights.set(name, sliced.dims, sliced.values);
      changed.add(name);
    };
    cut(pw.name, pw.outAxis);
    // The producer's own bias (Gemm C, Conv B).
    if (chain.producer.opType !== 'MatMul') cut(chain.producer.input?.[2], 0);
    for (const n of chain.between) {
      if (n.opType === 'BatchNormalization') for (const name of n.input!.slice(1)) cut(name, 0);
      if (n.opType === 'Add') {
        const bias = n.input!.find((name) => weights.get(name) && !n.output?.includes(name) && weights.get(name)!.values.length === width);
        const dims = weights.get(bias)?.dims ?? [];
        cut(bias, dims.findIndex((d) => d === width));
      }
    }
    cut(cw.name, cw.inAxis);
  }
  // Shapes recorded for tensors inside the pruned chains no longer hold; onnxruntime infers them again.
  const inside = new Set(chains.flatMap((c) => [c.producer, ...c.between].flatMap((n) => n.output ?? [])));
  g.valueInfo = g.valueInfo.filter((v) => !inside.has(v.name ?? ''));
  return { bytes: encodeModel(proto), layers, parametersBefore, parametersAfter: parameterCount(g) };
}

/** The keep rule that takes every chain to `fraction` of its width in `originalWidths` (iterative schedules prune toward it in rounds). */
export function keepFraction(fraction: number, originalWidths?: ReadonlyMap<string, number>): StructuredOptions['keep'] {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`the share of units kept must be in (0, 1], got ${fraction}`);
  return (producer, width) => Math.max(1, Math.round((originalWidths?.get(producer) ?? width) * fraction));
}
