import type { Tensor } from '../onnx/ort.ts';
import { ortTensor } from '../sessions/model-sessions.ts';
import type { CombineMethod, ConditionOp } from './spec.ts';

/**
 * The tensor arithmetic of ensembles and switches, on onnxruntime tensors as the steps return them.
 * A problem is returned as a message; the executor names the step and the tensor.
 */

const toNumber = (v: number | bigint | boolean | string) => (typeof v === 'bigint' ? Number(v) : Number(v));

function sameShape(tensors: readonly Tensor[]): string | undefined {
  const first = tensors[0]!.dims.join(',');
  const other = tensors.find((t) => t.dims.join(',') !== first);
  return other ? `members answered shapes [${first}] and [${other.dims.join(',')}]` : undefined;
}

/** Index of the highest value of each row (last axis); the first one on a tie. */
export function argmaxRows(tensor: Tensor): number[] {
  const data = tensor.data as ArrayLike<number | bigint>;
  const width = Number(tensor.dims.at(-1) ?? 1);
  const rows = width === 0 ? 0 : data.length / width;
  const out: number[] = [];
  for (let r = 0; r < rows; r += 1) {
    let best = 0;
    let bestValue = toNumber(data[r * width]!);
    for (let c = 1; c < width; c += 1) {
      const value = toNumber(data[r * width + c]!);
      if (value > bestValue) {
        best = c;
        bestValue = value;
      }
    }
    out.push(best);
  }
  return out;
}

function weightedMean(tensors: readonly Tensor[], weights: readonly number[]): Tensor {
  const total = weights.reduce((a, b) => a + b, 0);
  const length = tensors[0]!.data.length;
  const sums = new Float64Array(length);
  tensors.forEach((t, k) => {
    const data = t.data as Float32Array | Float64Array;
    const w = weights[k]!;
    for (let i = 0; i < length; i += 1) sums[i]! += w * data[i]!;
  });
  const out = tensors[0]!.type === 'float64' ? new Float64Array(length) : new Float32Array(length);
  for (let i = 0; i < length; i += 1) out[i] = sums[i]! / total;
  return ortTensor(tensors[0]!.type, out, tensors[0]!.dims);
}

/** The most frequent vote of each row; a tie goes to the smallest label, so the answer is deterministic. */
function majorityVote(tensors: readonly Tensor[]): Tensor {
  const float = tensors[0]!.type.startsWith('float');
  const votes = tensors.map((t) => (float ? argmaxRows(t) : Array.from(t.data as ArrayLike<number | bigint>, toNumber)));
  const rows = votes[0]!.length;
  const out = new BigInt64Array(rows);
  for (let r = 0; r < rows; r += 1) {
    const counts = new Map<number, number>();
    for (const v of votes) counts.set(v[r]!, (counts.get(v[r]!) ?? 0) + 1);
    let best = Infinity;
    let bestCount = 0;
    for (const [label, count] of counts) {
      if (count > bestCount || (count === bestCount && label < best)) {
        best = label;
        bestCount = count;
      }
    }
    out[r] = BigInt(best);
  }
  return ortTensor('int64', out, float ? tensors[0]!.dims.slice(0, -1) : tensors[0]!.dims);
}

/** Joined along the last axis, row by row, members in their order. */
function concatLast(tensors: readonly Tensor[]): Tensor | string {
  const lead = tensors[0]!.dims.slice(0, -1).join(',');
  const other = tensors.find((t) => t.dims.slice(0, -1).join(',') !== lead);
  if (other) return `members answered shapes [${tensors[0]!.dims.join(',')}] and [${other.dims.join(',')}], which differ before the last axis`;
  const widths = tensors.map((t) => Number(t.dims.at(-1)));
  const width = widths.reduce((a, b) => a + b, 0);
  const rows = widths[0] === 0 ? 0 : tensors[0]!.data.length / widths[0]!;
  const type = tensors[0]!.type;
  const sample = tensors[0]!.data as unknown as { constructor: new (n: number) => { set?: unknown } & ArrayLike<unknown> };
  const out = Array.isArray(tensors[0]!.data) ? new Array<string>(rows * width) : new sample.constructor(rows * width);
  const target = out as unknown as { [i: number]: unknown };
  for (let r = 0; r < rows; r += 1) {
    let at = r * width;
    tensors.forEach((t, k) => {
      const data = t.data as ArrayLike<unknown>;
      for (let c = 0; c < widths[k]!; c += 1) target[at + c] = data[r * widths[k]! + c];
      at += widths[k]!;
    });
  }
  return ortTensor(type, out as Tensor.DataType, [...tensors[0]!.dims.slice(0, -1), width]);
}

/** One output of an ensemble's members combined; a string says why they cannot be. */
export function combineTensors(method: CombineMethod, tensors: readonly Tensor[], weights: readonly number[]): Tensor | string {
  const types = new Set(tensors.map((t) => t.type));
  if (types.size > 1) return `members answered different types (${[...types].join(', ')})`;
  switch (method) {
    case 'mean':
    case 'weighted_mean': {
      if (tensors[0]!.type !== 'float32' && tensors[0]!.type !== 'float64') return `${method} combines float32 or float64 tensors, got ${tensors[0]!.type}`;
      return sameShape(tensors) ?? weightedMean(tensors, method === 'mean' ? tensors.map(() => 1) : weights);
    }
    case 'majority_vote':
      return sameShape(tensors) ?? majorityVote(tensors);
    case 'concat':
      return concatLast(tensors);
  }
}

export function conditionHolds(op: ConditionOp, left: number, right: number): boolean {
  switch (op) {
    case 'eq': return left === right;
    case 'ne': return left !== right;
    case 'gt': return left > right;
    case 'gte': return left >= right;
    case 'lt': return left < right;
    case 'lte': return left <= right;
  }
}

/** The values a switch tests: each row's argmax, or each element. */
export function conditionValues(tensor: Tensor, reduce: 'argmax' | 'value'): number[] {
  if (reduce === 'argmax') return argmaxRows(tensor);
  return Array.from(tensor.data as ArrayLike<number | bigint | boolean>, toNumber);
}
