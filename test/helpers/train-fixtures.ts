/**
 * Tiny training fixtures shared by the training and tuning tests: 4x4 images whose bright quadrant is
 * the class, as IDX files, and an MLP (Gemm, Tanh, Gemm, Softmax) that reads their raw pixels.
 */
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';

export const rows = 240;

/** 4x4 images whose bright quadrant (by `contrast` over seeded noise of 100) is the class (0..3), as IDX files. */
export function quadrantIdx(count = rows, seed = 5, contrast = 150): { images: Uint8Array; labels: Uint8Array } {
  const random = seededRandom(seed);
  const header = (type: number[], dims: number[]) => {
    const bytes = new Uint8Array(4 + dims.length * 4);
    bytes.set(type);
    const view = new DataView(bytes.buffer);
    dims.forEach((dim, index) => view.setUint32(4 + index * 4, dim));
    return bytes;
  };
  const images = new Uint8Array(16 + count * 16);
  images.set(header([0, 0, 8, 3], [count, 4, 4]));
  const labels = new Uint8Array(8 + count);
  labels.set(header([0, 0, 8, 1], [count]));
  for (let row = 0; row < count; row++) {
    const label = row % 4;
    labels[8 + row] = label;
    for (let y = 0; y < 4; y++) {
      for (let x = 0; x < 4; x++) {
        const quadrant = (y >= 2 ? 2 : 0) + (x >= 2 ? 1 : 0);
        images[16 + row * 16 + y * 4 + x] = Math.floor((quadrant === label ? contrast : 0) + random() * 100);
      }
    }
  }
  return { images, labels };
}

/** An MLP over 16 pixels: Mul by 1/255, Gemm to `hidden`, Tanh, Gemm to 4 classes, Softmax. */
export function quadrantMlp(hidden = 64, seed = 9): Uint8Array {
  const random = seededRandom(seed);
  const uniform = (count: number) => Array.from({ length: count }, () => (random() * 2 - 1) * 0.3);
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'quadrant_mlp',
        nodes: [
          node('Mul', ['input', 'scale'], ['scaled']),
          node('Gemm', ['scaled', 'w1', 'b1'], ['h']),
          node('Tanh', ['h'], ['a']),
          node('Gemm', ['a', 'w2', 'b2'], ['logits']),
          node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(-1) }),
        ],
        inputs: [valueInfo('input', 'float32', ['batch', 16])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', 4])],
        initializers: [
          tensorFromFloat32('scale', [], [1 / 255]),
          tensorFromFloat32('w1', [16, hidden], uniform(16 * hidden)),
          tensorFromFloat32('b1', [hidden], new Array(hidden).fill(0)),
          tensorFromFloat32('w2', [hidden, 4], uniform(hidden * 4)),
          tensorFromFloat32('b2', [4], [0, 0, 0, 0]),
        ],
      }),
    }),
  );
}

/** The training tests' model: the 16-8-4 MLP. */
export function mlp(): Uint8Array {
  return quadrantMlp(8);
}

/**
 * Three blobs of 4 features (centres far apart, noise of +-60), row i of class i % 3: the federated
 * tests' data, the same rows for a given seed whether given as JSONL or as training columns.
 */
export function blobRows(count: number, seed: number): { features: number[][]; labels: number[] } {
  const random = seededRandom(seed);
  const centers = [
    [60, 60, 190, 190],
    [190, 60, 60, 190],
    [120, 200, 120, 40],
  ];
  const labels = Array.from({ length: count }, (_, row) => row % 3);
  return { features: labels.map((label) => centers[label]!.map((center) => center + (random() - 0.5) * 120)), labels };
}
