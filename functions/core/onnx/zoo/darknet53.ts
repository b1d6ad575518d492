/**
 * The Darknet-53 classifier (Redmon & Farhadi, YOLOv3): 52 3x3/1x1 convolutions, each with batch
 * normalization and leaky ReLU (0.1), in residual stages of 1, 2, 8, 8 and 4 blocks, then global
 * average pooling, a fully connected layer and softmax. Written with our own builder, weights random
 * but seeded, so benchmarks and tests get the same conv-heavy model every time. It is not a trained
 * ImageNet model: its weights are random but conditioned the way a trained network's are, and its
 * head is fitted.
 *
 * - Data-dependent initialisation (LSUV with batch norm): one onnxruntime pass over seeded sample
 *   images, every BN normalising by its batch's mean and variance, records those as the running
 *   statistics, so every layer's activations are about unit variance per channel.
 * - Residual branches end with BN gamma 0.25 (`residualGamma`; zero-gamma / Fixup practice), so the
 *   identity path dominates and 23 residual blocks do not compound the noise of every branch.
 * - The head is a linear probe: ridge regression from the standardised pooled features of
 *   `probeImages` synthetic images (`darknetSampleImages`, a seed of their own) to one-hot labels,
 *   with a temperature fitted by label-smoothed cross-entropy, so the fp32 model has real class margins.
 *
 * `batchNorm: 'folded'` folds the BNs into the convolutions, as exporters do for inference.
 */
import ort from '../../ort.ts';
import { attr, graph, model, node, tensorFromFloat32, tensorFromInt64, valueInfo } from '../builder.ts';
import { decodeModel, encodeModel, type ModelProtoInit, type NodeProtoInit, type TensorProtoInit } from '../model-proto.ts';
import { foldBatchNormalization } from '../graph-toolkit.ts';
import { seededRandom } from '../../random.ts';

export interface Darknet53Options {
  /** Channel widths are multiplied by this (1 = the paper's 32..1024), at least 1 channel each. */
  widthMultiplier?: number;
  /** Square input side in pixels; a multiple of 32 keeps every stride-2 stage exact. */
  inputSize?: number;
  classes?: number;
  seed?: number;
  /** 'nodes' keeps BatchNormalization nodes; 'folded' folds them into the convolutions. */
  batchNorm?: 'nodes' | 'folded';
  /** Fixed batch size, or undefined for a dynamic "batch" dimension. */
  batch?: number;
  /** Sample images the BN statistics are measured on (default 16). */
  calibrationImages?: number;
  /** Sample images the linear-probe head is fitted on (default 64 per class, at most 1024, at least one per class). */
  probeImages?: number;
  /** Ridge penalty of the probe per training image, on standardised features (default 0.1). */
  probeRidge?: number;
  /** Gamma of the last BN in each residual branch (default 0.25): the identity path stays dominant, as with zero-gamma init. */
  residualGamma?: number;
}

const LEAKY_ALPHA = 0.1;
const STAGES = [1, 2, 8, 8, 4] as const;
const BN_EPSILON = 1e-5;

function gaussian(random: () => number): () => number {
  return () => {
    const u = Math.max(random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
}

interface Builder {
  nodes: NodeProtoInit[];
  initializers: TensorProtoInit[];
  normal: () => number;
  uniform: () => number;
  convCount: number;
  /** Measured per-layer statistics; undefined builds the measuring graph instead. */
  stats: Map<string, { mean: Float32Array; variance: Float32Array }> | undefined;
  /** Names the measuring graph outputs: each BN's batch mean and variance. */
  measured: string[];
}

/** conv → BN → leaky ReLU. */
function convBlock(b: Builder, input: string, inChannels: number, outChannels: number, kernel: number, stride: number, gamma: number): string {
  const index = b.convCount++;
  const prefix = `conv${index}`;
  const fanIn = inChannels * kernel * kernel;
  const std = Math.sqrt(2 / ((1 + LEAKY_ALPHA ** 2) * fanIn));
  const weights = new Float32Array(outChannels * fanIn);
  for (let i = 0; i < weights.length; i++) weights[i] = b.normal() * std;
  const scale = new Float32Array(outChannels);
  const bias = new Float32Array(outChannels);
  for (let c = 0; c < outChannels; c++) {
    scale[c] = gamma * (0.8 + 0.4 * b.uniform());
    bias[c] = 0.1 * b.normal();
  }
  const pad = (kernel - 1) / 2;
  b.initializers.push(
    tensorFromFloat32(`${prefix}.weight`, [outChannels, inChannels, kernel, kernel], weights),
  );
  b.nodes.push(
    node('Conv', [input, `${prefix}.weight`], [`${prefix}.out`], {
      kernel_shape: attr.ints([kernel, kernel]),
      strides: attr.ints([stride, stride]),
      pads: attr.ints([pad, pad, pad, pad]),
    }, prefix),
  );
  const stats = b.stats?.get(prefix);
  if (b.stats) {
    if (!stats) throw new Error(`no measured statistics for ${prefix}`);
    b.initializers.push(
      tensorFromFloat32(`${prefix}.bn.scale`, [outChannels], scale),
      tensorFromFloat32(`${prefix}.bn.bias`, [outChannels], bias),
      tensorFromFloat32(`${prefix}.bn.mean`, [outChannels], stats.mean),
      tensorFromFloat32(`${prefix}.bn.var`, [outChannels], stats.variance),
    );
    b.nodes.push(
      node('BatchNormalization', [`${prefix}.out`, `${prefix}.bn.scale`, `${prefix}.bn.bias`, `${prefix}.bn.mean`, `${prefix}.bn.var`], [`${prefix}.bn.out`], { epsilon: attr.float(BN_EPSILON) }, `${prefix}.bn`),
    );
  } else {
    // Batch statistics over N, H, W: what BN computes in training mode, spelled in inference ops.
    const shape = [1, outChannels, 1, 1];
    b.initializers.push(
      tensorFromFloat32(`${prefix}.bn.scale4d`, shape, scale),
      tensorFromFloat32(`${prefix}.bn.bias4d`, shape, bias),
    );
    // Opset 17's ReduceMean takes its axes as an attribute (an input only from opset 18).
    const axes = { axes: attr.ints([0, 2, 3]), keepdims: attr.int(1) };
    b.initializers.push(tensorFromFloat32(`${prefix}.bn.eps`, [], [BN_EPSILON]));
    b.nodes.push(
      node('ReduceMean', [`${prefix}.out`], [`${prefix}.bn.batch_mean`], axes),
      node('Sub', [`${prefix}.out`, `${prefix}.bn.batch_mean`], [`${prefix}.bn.centred`]),
      node('Mul', [`${prefix}.bn.centred`, `${prefix}.bn.centred`], [`${prefix}.bn.squared`]),
      node('ReduceMean', [`${prefix}.bn.squared`], [`${prefix}.bn.batch_var`], axes),
      node('Add', [`${prefix}.bn.batch_var`, `${prefix}.bn.eps`], [`${prefix}.bn.var_eps`]),
      node('Sqrt', [`${prefix}.bn.var_eps`], [`${prefix}.bn.std`]),
      node('Div', [`${prefix}.bn.centred`, `${prefix}.bn.std`], [`${prefix}.bn.normal`]),
      node('Mul', [`${prefix}.bn.normal`, `${prefix}.bn.scale4d`], [`${prefix}.bn.scaled`]),
      node('Add', [`${prefix}.bn.scaled`, `${prefix}.bn.bias4d`], [`${prefix}.bn.out`]),
    );
    b.measured.push(`${prefix}.bn.batch_mean`, `${prefix}.bn.batch_var`);
  }
  b.nodes.push(node('LeakyRelu', [`${prefix}.bn.out`], [`${prefix}.act`], { alpha: attr.float(LEAKY_ALPHA) }, `${prefix}.leaky`));
  return `${prefix}.act`;
}

/** The fitted classifier: logits = weight · features + bias, weight [classes, C]. */
export interface Head {
  weight: Float32Array;
  bias: Float32Array;
}

function buildGraph(options: Darknet53Options, stats: Builder['stats'], head: Head | undefined): { model: ModelProtoInit; measured: string[] } {
  const width = options.widthMultiplier ?? 1;
  const size = options.inputSize ?? 256;
  const classes = options.classes ?? 1000;
  const random = seededRandom(options.seed ?? 53);
  const b: Builder = { nodes: [], initializers: [], normal: gaussian(random), uniform: random, convCount: 0, stats, measured: [] };
  const channels = (base: number) => Math.max(1, Math.round(base * width));

  let current = convBlock(b, 'input', 3, channels(32), 3, 1, 1);
  let inChannels = channels(32);
  STAGES.forEach((blocks, stage) => {
    const out = channels(64 * 2 ** stage);
    current = convBlock(b, current, inChannels, out, 3, 2, 1);
    inChannels = out;
    for (let block = 0; block < blocks; block++) {
      const squeeze = convBlock(b, current, out, channels(32 * 2 ** stage), 1, 1, 1);
      const expand = convBlock(b, squeeze, channels(32 * 2 ** stage), out, 3, 1, options.residualGamma ?? 0.25);
      const sum = `stage${stage + 1}.block${block}.residual`;
      b.nodes.push(node('Add', [current, expand], [sum], {}, sum));
      current = sum;
    }
  });

  // The head is the linear probe fitted on the pooled features (see fitLinearProbe); the measuring
  // graphs, which have no features yet, get random directions.
  const fcWeights = head?.weight ?? Float32Array.from({ length: classes * inChannels }, () => b.normal() / Math.sqrt(inChannels));
  const fcBias = head?.bias ?? new Float32Array(classes);
  b.initializers.push(
    tensorFromFloat32('fc.weight', [classes, inChannels], fcWeights),
    tensorFromFloat32('fc.bias', [classes], fcBias),
    tensorFromInt64('flatten.shape', [2], [0, -1]),
  );
  b.nodes.push(
    node('GlobalAveragePool', [current], ['pool'], {}, 'pool'),
    node('Reshape', ['pool', 'flatten.shape'], ['features'], {}, 'flatten'),
    node('Gemm', ['features', 'fc.weight', 'fc.bias'], ['logits'], { transB: attr.int(1) }, 'fc'),
    node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(1) }, 'softmax'),
  );
  const batch = options.batch ?? 'batch';
  const outputs = [valueInfo('probabilities', 'float32', [batch, classes])];
  if (!stats) outputs.push(valueInfo('features', 'float32'), ...b.measured.map((name) => valueInfo(name, 'float32')));
  const built = model({
    graph: graph({
      name: 'darknet53',
      nodes: b.nodes,
      inputs: [valueInfo('input', 'float32', [batch, 3, size, size])],
      outputs,
      initializers: b.initializers,
    }),
    opset: 17,
    irVersion: 8,
    producerName: 'ai-mass-darknet53',
    docString: `Darknet-53 classifier, width x${width}, ${size}x${size} input, ${classes} classes, seeded random weights (seed ${options.seed ?? 53})`,
    metadata: { architecture: 'darknet53', width_multiplier: String(width), input_size: String(size), classes: String(classes), conv_layers: String(b.convCount) },
  });
  return { model: built, measured: b.measured };
}

/** Builds Darknet-53 (IR 8, opset 17): input `input` [N,3,S,S] (standardised pixels), output `probabilities` [N,classes]. */
export async function buildDarknet53(options: Darknet53Options = {}): Promise<ModelProtoInit> {
  const width = options.widthMultiplier ?? 1;
  const size = options.inputSize ?? 256;
  if (!(width > 0)) throw new RangeError(`widthMultiplier must be positive, got ${width}`);
  if (!Number.isInteger(size) || size < 32) throw new RangeError(`inputSize must be an integer of at least 32, got ${size}`);
  const { model: measuring, measured } = buildGraph({ ...options, batch: undefined }, undefined, undefined);
  const classes = options.classes ?? 1000;
  const seed = options.seed ?? 53;
  // BN statistics from one mixed batch of sample images.
  const statsBatch = Math.max(1, options.calibrationImages ?? 16);
  const statsImages = darknetSampleImages(statsBatch, size, seed + 1000, classes);
  const stats = new Map<string, { mean: Float32Array; variance: Float32Array }>();
  const measuringSession = await ort.InferenceSession.create(encodeModel(measuring), { logSeverityLevel: 3 });
  try {
    const images = new ort.Tensor('float32', statsImages.images, [statsBatch, 3, size, size]);
    const outputs = await measuringSession.run({ input: images }, measured);
    for (let i = 0; i < measured.length; i += 2) {
      const prefix = measured[i]!.slice(0, measured[i]!.indexOf('.'));
      stats.set(prefix, { mean: Float32Array.from(outputs[measured[i]!]!.data as Float32Array), variance: Float32Array.from(outputs[measured[i + 1]!]!.data as Float32Array) });
    }
  } finally {
    await measuringSession.release();
  }
  // The network with those statistics, its pooled features as an extra output, run over the probe's
  // images (a seed of their own, generated a chunk at a time so that large inputs stay in memory).
  const withStats = buildGraph({ ...options, batch: undefined }, stats, undefined).model;
  withStats.graph!.output!.push(valueInfo('features', 'float32'));
  const count = options.probeImages ?? Math.max(classes, Math.min(1024, 64 * classes));
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`probeImages must be a positive integer, got ${count}`);
  const labels = new Int32Array(count);
  const featureSession = await ort.InferenceSession.create(encodeModel(withStats), { logSeverityLevel: 3 });
  let features: Float32Array | undefined;
  try {
    for (let start = 0, chunk = 0; start < count; start += 16, chunk++) {
      const n = Math.min(16, count - start);
      const sample = darknetSampleImages(n, size, seed + 2000 + chunk, classes, start);
      labels.set(sample.labels, start);
      const images = new ort.Tensor('float32', sample.images, [n, 3, size, size]);
      const f = (await featureSession.run({ input: images }, ['features'])).features!.data as Float32Array;
      features ??= new Float32Array(count * (f.length / n));
      features.set(f, start * (f.length / n));
    }
  } finally {
    await featureSession.release();
  }
  const head = fitLinearProbe(features!, labels, classes, options.probeRidge ?? 0.1);
  const built = buildGraph(options, stats, head).model;
  if (options.batchNorm === 'folded') {
    const decoded = decodeModel(encodeModel(built));
    foldBatchNormalization(decoded);
    return decoded;
  }
  return built;
}

/**
 * A linear probe on the pooled features: ridge regression from standardised features to centred
 * one-hot labels, then one temperature fitted by cross-entropy with label smoothing 0.1 (so that
 * separable classes still get a finite temperature) so the softmax reads as probabilities.
 * Folded back to raw features: logits = T (W (f - mean) / std + b).
 */
export function fitLinearProbe(features: Float32Array, labels: Int32Array, classes: number, ridge: number): Head {
  const n = labels.length;
  const c = features.length / n;
  const mean = new Float64Array(c);
  const std = new Float64Array(c);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) mean[k] = mean[k]! + features[i * c + k]! / n;
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) std[k] = std[k]! + (features[i * c + k]! - mean[k]!) ** 2 / n;
  for (let k = 0; k < c; k++) std[k] = Math.sqrt(std[k]!);
  // A feature that barely varies would get a huge weight and turn noise into the decision.
  const typical = [...std].sort((x, y) => x - y)[c >> 1]! || 1;
  for (let k = 0; k < c; k++) std[k] = Math.max(std[k]!, typical);
  const z = new Float64Array(n * c);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) z[i * c + k] = (features[i * c + k]! - mean[k]!) / std[k]!;
  const prior = new Float64Array(classes);
  for (let i = 0; i < n; i++) prior[labels[i]!] = prior[labels[i]!]! + 1 / n;
  // Normal equations (ZᵀZ + λ n I) W = Zᵀ(Y - prior), by Cholesky.
  const a = new Float64Array(c * c);
  for (let i = 0; i < n; i++) {
    const row = i * c;
    for (let p = 0; p < c; p++) {
      const zp = z[row + p]!;
      if (zp === 0) continue;
      const base = p * c;
      for (let q = p; q < c; q++) a[base + q] = a[base + q]! + zp * z[row + q]!;
    }
  }
  for (let p = 0; p < c; p++) {
    a[p * c + p] = a[p * c + p]! + ridge * n;
    for (let q = 0; q < p; q++) a[p * c + q] = a[q * c + p]!;
  }
  const rhs = new Float64Array(c * classes);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < c; p++) {
      const zp = z[i * c + p]!;
      for (let k = 0; k < classes; k++) rhs[p * classes + k] = rhs[p * classes + k]! + zp * ((labels[i] === k ? 1 : 0) - prior[k]!);
    }
  }
  choleskySolve(a, rhs, c, classes);
  // Raw scores of the training images, for the temperature.
  const scores = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < classes; k++) {
      let s = prior[k]!;
      for (let p = 0; p < c; p++) s += z[i * c + p]! * rhs[p * classes + k]!;
      scores[i * classes + k] = s;
    }
  }
  const crossEntropy = (t: number) => {
    let loss = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let k = 0; k < classes; k++) max = Math.max(max, t * scores[i * classes + k]!);
      let sum = 0;
      for (let k = 0; k < classes; k++) sum += Math.exp(t * scores[i * classes + k]! - max);
      const logSum = max + Math.log(sum);
      // Smoothed target: 0.9 on the label, 0.1 spread over all classes.
      let mean = 0;
      for (let k = 0; k < classes; k++) mean += scores[i * classes + k]! / classes;
      loss += logSum - t * (0.9 * scores[i * classes + labels[i]!]! + 0.1 * mean);
    }
    return loss / n;
  };
  // Golden-section search over log T in [0, ln 1000].
  let lo = 0;
  let hi = Math.log(1000);
  const phi = (Math.sqrt(5) - 1) / 2;
  for (let step = 0; step < 40; step++) {
    const m1 = hi - phi * (hi - lo);
    const m2 = lo + phi * (hi - lo);
    if (crossEntropy(Math.exp(m1)) < crossEntropy(Math.exp(m2))) hi = m2;
    else lo = m1;
  }
  const temperature = Math.exp((lo + hi) / 2);
  const weight = new Float32Array(classes * c);
  const bias = new Float32Array(classes);
  for (let k = 0; k < classes; k++) {
    let b = prior[k]!;
    for (let p = 0; p < c; p++) {
      const w = rhs[p * classes + k]! / std[p]!;
      weight[k * c + p] = temperature * w;
      b -= w * mean[p]!;
    }
    bias[k] = temperature * b;
  }
  return { weight, bias };
}

/** Solves A X = B in place (X into b) for symmetric positive definite A [n, n], B [n, m]. */
function choleskySolve(a: Float64Array, b: Float64Array, n: number, m: number): void {
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let k = 0; k < j; k++) d -= a[j * n + k]! ** 2;
    if (!(d > 0)) throw new Error('linear probe: normal equations are not positive definite');
    const l = Math.sqrt(d);
    a[j * n + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let k = 0; k < j; k++) s -= a[i * n + k]! * a[j * n + k]!;
      a[i * n + j] = s / l;
    }
  }
  for (let col = 0; col < m; col++) {
    for (let i = 0; i < n; i++) {
      let s = b[i * m + col]!;
      for (let k = 0; k < i; k++) s -= a[i * n + k]! * b[k * m + col]!;
      b[i * m + col] = s / a[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = b[i * m + col]!;
      for (let k = i + 1; k < n; k++) s -= a[k * n + i]! * b[k * m + col]!;
      b[i * m + col] = s / a[i * n + i]!;
    }
  }
}

export async function darknet53Bytes(options: Darknet53Options = {}): Promise<Uint8Array> {
  return encodeModel(await buildDarknet53(options));
}

export interface SampleImages {
  /** [count, 3, size, size], about zero mean and unit variance overall. */
  images: Float32Array;
  /** The class each image was drawn from (image n is class (firstIndex + n) % classes). */
  labels: Int32Array;
}

/**
 * Deterministic image-like inputs drawn from `classes` synthetic classes. A class is a colour cast,
 * a contrast and a few low-frequency waves per channel (the same for every seed); each image jitters
 * them and adds pixel noise. Image n is of class (firstIndex + n) % classes.
 */
export function darknetSampleImages(count: number, size: number, seed = 7, classes = 10, firstIndex = 0): SampleImages {
  const random = seededRandom(seed);
  const normal = gaussian(random);
  const images = new Float32Array(count * 3 * size * size);
  const labels = new Int32Array(count);
  const prototypes = Array.from({ length: classes }, (_, k) => {
    const r = seededRandom(0x5eed + k);
    const g = gaussian(r);
    return Array.from({ length: 3 }, () => ({
      cast: 0.7 * g(),
      contrast: 0.4 + r(),
      waves: Array.from({ length: 4 }, () => ({ fx: r() * 6, fy: r() * 6, phase: r() * 6.28, amp: 0.5 + r() })),
    }));
  });
  for (let n = 0; n < count; n++) {
    const label = (firstIndex + n) % classes;
    labels[n] = label;
    for (let c = 0; c < 3; c++) {
      const p = prototypes[label]![c]!;
      const cast = p.cast + 0.1 * normal();
      const contrast = p.contrast * (0.85 + 0.3 * random());
      const waves = p.waves.map((w) => ({ ...w, phase: w.phase + 0.25 * normal(), amp: w.amp * (0.9 + 0.2 * random()) }));
      const base = (n * 3 + c) * size * size;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          let v = 0;
          for (const w of waves) v += w.amp * Math.sin(((w.fx * x + w.fy * y) / size) * 6.28 + w.phase);
          images[base + y * size + x] = cast + contrast * (v * 0.5 + 0.3 * normal());
        }
      }
    }
  }
  return { images, labels };
}
