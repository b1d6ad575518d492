/**
 * Calibration for static quantization: run the fp32 model over sample inputs with every tensor of
 * interest added as a graph output, and turn what flows through each into a range.
 *
 * - minmax: the observed minimum and maximum.
 * - percentile: both tails clipped so that `percentile` % of the values lie inside.
 * - entropy: the clipping threshold that minimises the KL divergence between the histogram and its
 *   8-bit quantized version (TensorRT's method), over a 2048-bin histogram of |x|.
 *
 * Percentile and entropy need the range before they can bin, so they read the data twice.
 */
import ort, { type InferenceSession, type Tensor } from '../onnx/ort.ts';
import { valueInfo } from '../onnx/builder.ts';
import { decodeModel, encodeModel } from '../onnx/model-proto.ts';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';

/** Batches of model inputs by input name; called once per pass, so it must be re-readable. */
export type CalibrationBatches = () => AsyncIterable<Record<string, Tensor>>;

export interface TensorRange {
  min: number;
  max: number;
}

const BINS = 2048;

class Histogram {
  readonly counts = new Float64Array(BINS);
  readonly absMax: number;
  constructor(absMax: number) {
    this.absMax = absMax;
  }

  add(data: Float32Array): void {
    const width = this.absMax / BINS;
    if (width === 0) return;
    for (let i = 0; i < data.length; i++) {
      const bin = Math.min(BINS - 1, Math.floor(Math.abs(data[i]!) / width));
      this.counts[bin] = this.counts[bin]! + 1;
    }
  }
}

/** Signed histogram for percentile clipping: [min, max] in BINS bins. */
class SignedHistogram {
  readonly counts = new Float64Array(BINS);
  readonly min: number;
  readonly max: number;
  constructor(min: number, max: number) {
    this.min = min;
    this.max = max;
  }

  add(data: Float32Array): void {
    const width = (this.max - this.min) / BINS;
    if (width === 0) return;
    for (let i = 0; i < data.length; i++) {
      const bin = Math.min(BINS - 1, Math.max(0, Math.floor((data[i]! - this.min) / width)));
      this.counts[bin] = this.counts[bin]! + 1;
    }
  }

  quantile(q: number): number {
    const total = this.counts.reduce((a, b) => a + b, 0);
    const target = q * total;
    let seen = 0;
    const width = (this.max - this.min) / BINS;
    for (let i = 0; i < BINS; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return this.min + (i + 1) * width;
    }
    return this.max;
  }
}

function klDivergence(p: Float64Array, q: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) sum += p[i]! * Math.log(p[i]! / (q[i]! || 1e-12));
  return sum;
}

/** TensorRT's entropy calibration over a histogram of |x|: the threshold whose 8-bit version loses least information. */
export function entropyThreshold(hist: Float64Array, absMax: number, levels = 128): number {
  const width = absMax / hist.length;
  let best = hist.length;
  let bestDivergence = Infinity;
  const stride = Math.max(1, Math.floor((hist.length - levels) / 256));
  for (let i = levels; i <= hist.length; i += stride) {
    const p = new Float64Array(i);
    for (let k = 0; k < i; k++) p[k] = hist[k]!;
    let outliers = 0;
    for (let k = i; k < hist.length; k++) outliers += hist[k]!;
    p[i - 1] = p[i - 1]! + outliers;
    // Merge the first i bins into `levels` bins, then expand back, spreading over non-empty bins.
    const q = new Float64Array(i);
    const per = i / levels;
    for (let l = 0; l < levels; l++) {
      const start = Math.floor(l * per);
      const end = l === levels - 1 ? i : Math.floor((l + 1) * per);
      let sum = 0;
      let nonEmpty = 0;
      for (let k = start; k < end; k++) {
        sum += hist[k]!;
        if (hist[k]! > 0) nonEmpty++;
      }
      if (nonEmpty === 0) continue;
      for (let k = start; k < end; k++) if (hist[k]! > 0) q[k] = sum / nonEmpty;
    }
    const pSum = p.reduce((a, b) => a + b, 0);
    const qSum = q.reduce((a, b) => a + b, 0);
    if (pSum === 0 || qSum === 0) continue;
    for (let k = 0; k < i; k++) {
      p[k] = p[k]! / pSum;
      q[k] = q[k]! / qSum;
    }
    const divergence = klDivergence(p, q);
    if (divergence < bestDivergence) {
      bestDivergence = divergence;
      best = i;
    }
  }
  return (best + 0.5) * width;
}

export interface CalibrateOptions {
  method: CalibrationMethod;
  percentile: number;
  /** Whether a tensor is quantized to a signed symmetric type (entropy uses 128 levels then, else 256). */
  symmetric: boolean;
}

async function runAll(
  session: InferenceSession,
  batches: CalibrationBatches,
  tensors: readonly string[],
  each: (name: string, data: Float32Array) => void,
): Promise<number> {
  let count = 0;
  for await (const feeds of batches()) {
    const outputs = await session.run(feeds, [...tensors]);
    for (const name of tensors) {
      const value = outputs[name];
      if (!value || value.type !== 'float32') throw new Error(`calibration: tensor "${name}" did not come back as float32`);
      each(name, value.data as Float32Array);
    }
    count++;
  }
  return count;
}

/**
 * The range of every named tensor of the main graph over the calibration data. The model is run
 * as it is, plus those tensors as outputs.
 */
export async function calibrateRanges(modelBytes: Uint8Array, tensors: readonly string[], batches: CalibrationBatches, options: CalibrateOptions): Promise<Map<string, TensorRange>> {
  const model = decodeModel(modelBytes);
  const outputs = (model.graph!.output ??= []);
  const existing = new Set(outputs.map((o) => o.name));
  for (const name of tensors) if (!existing.has(name)) outputs.push(valueInfo(name, 'float32'));
  const session = await ort.InferenceSession.create(encodeModel(model), { logSeverityLevel: 3, graphOptimizationLevel: 'basic' });
  try {
    const ranges = new Map<string, TensorRange>();
    const passes = await runAll(session, batches, tensors, (name, data) => {
      const range = ranges.get(name) ?? { min: Infinity, max: -Infinity };
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!;
        if (v < range.min) range.min = v;
        if (v > range.max) range.max = v;
      }
      ranges.set(name, range);
    });
    if (passes === 0) throw new Error('calibration: the data set gave no batches');
    if (options.method === 'minmax') return ranges;

    if (options.method === 'percentile') {
      const histograms = new Map([...ranges].map(([name, r]) => [name, new SignedHistogram(r.min, r.max)]));
      await runAll(session, batches, tensors, (name, data) => histograms.get(name)!.add(data));
      const tail = (100 - options.percentile) / 100;
      for (const [name, h] of histograms) {
        const r = ranges.get(name)!;
        // A tensor with no negative values (ReLU) keeps 0 as its lower end; clip only the tails that exist.
        ranges.set(name, { min: r.min < 0 ? Math.min(0, h.quantile(tail)) : r.min, max: r.max > 0 ? Math.max(0, h.quantile(1 - tail)) : r.max });
      }
      return ranges;
    }

    const histograms = new Map([...ranges].map(([name, r]) => [name, new Histogram(Math.max(Math.abs(r.min), Math.abs(r.max)))]));
    await runAll(session, batches, tensors, (name, data) => histograms.get(name)!.add(data));
    for (const [name, h] of histograms) {
      const r = ranges.get(name)!;
      if (h.absMax === 0) continue;
      const oneSided = r.min >= -0.01 * h.absMax;
      const threshold = entropyThreshold(h.counts, h.absMax, options.symmetric || !oneSided ? 128 : 256);
      ranges.set(name, { min: Math.max(r.min, -threshold), max: Math.min(r.max, threshold) });
    }
    return ranges;
  } finally {
    await session.release();
  }
}
