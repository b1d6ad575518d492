/**
 * The Darknet-53 classifier (Redmon & Farhadi, YOLOv3): 52 3x3/1x1 convolutions, each with batch
 * normalization and leaky ReLU (0.1), in residual stages of 1, 2, 8, 8 and 4 blocks, then global
 * average pooling, a fully connected layer and softmax. Written with our own builder, weights random
 * but seeded, so benchmarks and tests get the same conv-heavy model every time.
 *
 * Random filters alone let activations drift over 52 layers, and a random head sends every image to
 * the same class. So the batch norms get the statistics a trained network's would have: one pass of
 * onnxruntime over seeded sample images, with every BN normalising by its batch's mean and variance,
 * records those as the running statistics; the head is centred the same way on the pooled features.
 * Activations then stay near unit scale everywhere and the predicted class depends on the image.
 * Residual branches end with gamma 0.5 so eight blocks in a row do not blow up the sum.
 * `batchNorm: 'folded'` folds the BNs into the convolutions, as exporters do for inference.
 */
import ort from '../../ort.ts';
import { attr, graph, model, node, tensorFromFloat32, tensorFromInt64, valueInfo } from '../builder.ts';
import { decodeModel, encodeModel, type ModelProtoInit, type NodeProtoInit, type TensorProtoInit } from '../model-proto.ts';
import { foldBatchNormalization } from '../graph-toolkit.ts';

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
}

const LEAKY_ALPHA = 0.1;
const STAGES = [1, 2, 8, 8, 4] as const;
const BN_EPSILON = 1e-5;

/** mulberry32: small, fast and the same on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

interface HeadStats {
  mean: Float32Array;
  std: Float32Array;
  /** [classes, C]: each class's mean standardised feature. */
  classMeans: Float32Array;
}

function buildGraph(options: Darknet53Options, stats: Builder['stats'], head: HeadStats | undefined): { model: ModelProtoInit; measured: string[] } {
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
      const expand = convBlock(b, squeeze, channels(32 * 2 ** stage), out, 3, 1, 0.5);
      const sum = `stage${stage + 1}.block${block}.residual`;
      b.nodes.push(node('Add', [current, expand], [sum], {}, sum));
      current = sum;
    }
  });

  // The head is a nearest-class-mean classifier on standardised features, z = (f - mean) / std:
  // logit_k = m_k . z - |m_k|^2 / 2, folded into w' = m_k / std, bias = -w' . mean - |m_k|^2 / 2.
  // The measuring graph has no statistics yet and gets random directions.
  const fcWeights = new Float32Array(classes * inChannels);
  const fcBias = new Float32Array(classes);
  for (let k = 0; k < classes; k++) {
    let norm = 0;
    for (let c = 0; c < inChannels; c++) {
      const m = head ? head.classMeans[k * inChannels + c]! : b.normal() / Math.sqrt(inChannels);
      const w = m / (head?.std[c] ?? 1);
      fcWeights[k * inChannels + c] = w;
      fcBias[k] = fcBias[k]! - w * (head?.mean[c] ?? 0);
      norm += m * m;
    }
    fcBias[k] = fcBias[k]! - norm / 2;
  }
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
  // BN statistics from one mixed batch; the head from every class's mean pooled feature.
  const perClass = Math.max(1, Math.ceil((options.calibrationImages ?? 16) / classes));
  const count = Math.max(options.calibrationImages ?? 16, classes * perClass);
  const sample = darknetSampleImages(count, size, (options.seed ?? 53) + 1000, classes);
  const pixels = 3 * size * size;
  const statsBatch = Math.min(count, options.calibrationImages ?? 16);
  const stats = new Map<string, { mean: Float32Array; variance: Float32Array }>();
  const measuringSession = await ort.InferenceSession.create(encodeModel(measuring), { logSeverityLevel: 3 });
  try {
    const images = new ort.Tensor('float32', sample.images.subarray(0, statsBatch * pixels), [statsBatch, 3, size, size]);
    const outputs = await measuringSession.run({ input: images }, measured);
    for (let i = 0; i < measured.length; i += 2) {
      const prefix = measured[i]!.slice(0, measured[i]!.indexOf('.'));
      stats.set(prefix, { mean: Float32Array.from(outputs[measured[i]!]!.data as Float32Array), variance: Float32Array.from(outputs[measured[i + 1]!]!.data as Float32Array) });
    }
  } finally {
    await measuringSession.release();
  }
  // The network with those statistics, its pooled features as an extra output.
  const withStats = buildGraph({ ...options, batch: undefined }, stats, undefined).model;
  withStats.graph!.output!.push(valueInfo('features', 'float32'));
  const featureSession = await ort.InferenceSession.create(encodeModel(withStats), { logSeverityLevel: 3 });
  let featureData: Float32Array | undefined;
  try {
    for (let start = 0; start < count; start += 16) {
      const n = Math.min(16, count - start);
      const images = new ort.Tensor('float32', sample.images.subarray(start * pixels, (start + n) * pixels), [n, 3, size, size]);
      const f = (await featureSession.run({ input: images }, ['features'])).features!.data as Float32Array;
      featureData ??= new Float32Array(count * (f.length / n));
      featureData.set(f, start * (f.length / n));
    }
  } finally {
    await featureSession.release();
  }
  const c = featureData!.length / count;
  const head: HeadStats = { mean: new Float32Array(c), std: new Float32Array(c), classMeans: new Float32Array(classes * c) };
  for (let k = 0; k < c; k++) {
    let sum = 0;
    let squares = 0;
    for (let i = 0; i < count; i++) {
      sum += featureData![i * c + k]!;
      squares += featureData![i * c + k]! ** 2;
    }
    const mean = sum / count;
    head.mean[k] = mean;
    head.std[k] = Math.sqrt(Math.max(squares / count - mean * mean, 0));
  }
  // A feature that barely varies would get a huge weight and turn noise into the decision.
  const typical = [...head.std].sort((a, b) => a - b)[c >> 1]! || 1;
  for (let k = 0; k < c; k++) head.std[k] = Math.max(head.std[k]!, typical);
  for (let i = 0; i < count; i++) {
    const label = sample.labels[i]!;
    for (let k = 0; k < c; k++) head.classMeans[label * c + k] = head.classMeans[label * c + k]! + (featureData![i * c + k]! - head.mean[k]!) / head.std[k]! / perClass;
  }
  const built = buildGraph(options, stats, head).model;
  if (options.batchNorm === 'folded') {
    const decoded = decodeModel(encodeModel(built));
    foldBatchNormalization(decoded);
    return decoded;
  }
  return built;
}

export async function darknet53Bytes(options: Darknet53Options = {}): Promise<Uint8Array> {
  return encodeModel(await buildDarknet53(options));
}

export interface SampleImages {
  /** [count, 3, size, size], about zero mean and unit variance overall. */
  images: Float32Array;
  /** The class each image was drawn from (image n is class n % classes). */
  labels: Int32Array;
}

/**
 * Deterministic image-like inputs drawn from `classes` synthetic classes. A class is a colour cast,
 * a contrast and a few low-frequency waves per channel (the same for every seed); each image jitters
 * them and adds pixel noise. Image n is of class n % classes.
 */
export function darknetSampleImages(count: number, size: number, seed = 7, classes = 10): SampleImages {
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
    const label = n % classes;
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
