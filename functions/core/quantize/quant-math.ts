/**
 * Linear quantization arithmetic, as ONNX defines it: q = saturate(round(x / scale) + zero_point),
 * x ≈ (q - zero_point) * scale, round half to even. The range always contains 0, so zero padding and
 * ReLU's zeros are exact.
 */
export type QuantType = 'int8' | 'uint8';

export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

export function quantRange(type: QuantType, reduceRange = false): { qmin: number; qmax: number } {
  if (type === 'int8') return reduceRange ? { qmin: -64, qmax: 63 } : { qmin: -128, qmax: 127 };
  return reduceRange ? { qmin: 0, qmax: 127 } : { qmin: 0, qmax: 255 };
}

/** Round half to even, as QuantizeLinear does. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Scale and zero point for a real range. Symmetric ranges put 0 on the zero point of a signed type
 * and on the middle of the range for uint8 (128, or 64 with reduceRange), and use ±(qmax) so that -x
 * and x quantize alike. The zero point depends only on the type and range for a symmetric tensor,
 * never on the values: an all-zero channel gets the same zero point as its neighbours, so kernels
 * that take one zero point for all channels (ConvInteger) stay right. An all-zero range gets scale 1.
 */
export function quantParams(min: number, max: number, type: QuantType, symmetric: boolean, reduceRange = false): QuantParams {
  const { qmin, qmax } = quantRange(type, reduceRange);
  let rmin = Math.min(min, 0);
  let rmax = Math.max(max, 0);
  if (symmetric) {
    const absMax = Math.max(Math.abs(rmin), Math.abs(rmax));
    rmin = -absMax;
    rmax = absMax;
    const zeroPoint = type === 'int8' ? 0 : Math.ceil((qmax + qmin) / 2);
    if (absMax === 0) return { scale: 1, zeroPoint };
    const half = type === 'int8' ? qmax : (qmax - qmin) / 2;
    return { scale: Math.fround(rmax / half), zeroPoint };
  }
  // The range holds 0, so an all-zero one is [0, 0]: 0 quantizes to qmin.
  if (rmax === rmin) return { scale: 1, zeroPoint: qmin };
  const scale = Math.fround((rmax - rmin) / (qmax - qmin));
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - rmin / scale)));
  return { scale, zeroPoint };
}

export function quantizeValue(x: number, params: QuantParams, type: QuantType, reduceRange = false): number {
  const { qmin, qmax } = quantRange(type, reduceRange);
  return Math.min(qmax, Math.max(qmin, roundHalfEven(x / params.scale) + params.zeroPoint));
}

export interface QuantizedTensor {
  values: Int8Array | Uint8Array;
  /** One per channel along `axis`, or one for the whole tensor. */
  scales: Float32Array;
  zeroPoints: Int32Array;
  axis: number | undefined;
}

export interface WeightQuantOptions {
  type: QuantType;
  symmetric: boolean;
  /** The channel axis for per-channel scales; undefined quantizes the whole tensor with one scale. */
  axis?: number | undefined;
  reduceRange?: boolean;
}

/** Quantizes a weight tensor per tensor or per channel along `axis`. */
export function quantizeWeights(data: Float32Array, dims: readonly number[], options: WeightQuantOptions): QuantizedTensor {
  const axis = options.axis;
  const channels = axis === undefined ? 1 : dims[axis]!;
  // Elements are laid out [outer, channel, inner].
  const inner = axis === undefined ? data.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = axis === undefined ? 1 : dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const mins = new Float64Array(channels).fill(Infinity);
  const maxs = new Float64Array(channels).fill(-Infinity);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const base = (o * channels + c) * inner;
      for (let i = 0; i < inner; i++) {
        const v = data[base + i]!;
        if (v < mins[c]!) mins[c] = v;
        if (v > maxs[c]!) maxs[c] = v;
      }
    }
  }
  const scales = new Float32Array(channels);
  const zeroPoints = new Int32Array(channels);
  for (let c = 0; c < channels; c++) {
    const p = quantParams(mins[c]!, maxs[c]!, options.type, options.symmetric, options.reduceRange);
    scales[c] = p.scale;
    zeroPoints[c] = p.zeroPoint;
  }
  const { qmin, qmax } = quantRange(options.type, options.reduceRange);
  const values = options.type === 'int8' ? new Int8Array(data.length) : new Uint8Array(data.length);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const base = (o * channels + c) * inner;
      const scale = scales[c]!;
      const zp = zeroPoints[c]!;
      for (let i = 0; i < inner; i++) {
        values[base + i] = Math.min(qmax, Math.max(qmin, roundHalfEven(data[base + i]! / scale) + zp));
      }
    }
  }
  return { values, scales, zeroPoints, axis };
}
