import { attr, graph, model, node, scalarFloat32, tensorFromInt64, valueInfo } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/model-proto.ts';
import { PIPELINE_EXAMPLES } from './spec.ts';

/**
 * The step graphs of the demo pipeline `mnist-top3` (and of the tests' chains), written with our
 * ONNX builder: opset 17, IR 8, what the reference checker and onnxruntime accept.
 */
const OPSET = 17;
const IR_VERSION = 8;

/**
 * Pre-processing: `image` UINT8 [n, 28, 28] -> `input` FP32 [n, 784], the MNIST model's input.
 * `scale` multiplies the pixels (normalisation); the demo keeps raw pixels, which the model expects.
 */
export function mnistPreprocessModel(options: { scale?: number } = {}): Uint8Array {
  const scaled = options.scale !== undefined;
  return encodeModel(
    model({
      graph: graph({
        name: 'mnist-pre',
        nodes: [
          node('Cast', ['image'], ['pixels'], { to: attr.int(1) }),
          node('Reshape', ['pixels', 'flat_shape'], [scaled ? 'flat' : 'input']),
          ...(scaled ? [node('Mul', ['flat', 'scale'], ['input'])] : []),
        ],
        inputs: [valueInfo('image', 'uint8', ['n', 28, 28])],
        outputs: [valueInfo('input', 'float32', ['n', 784])],
        initializers: [tensorFromInt64('flat_shape', [2], [-1, 784]), ...(scaled ? [scalarFloat32('scale', options.scale!)] : [])],
      }),
      opset: OPSET,
      irVersion: IR_VERSION,
      docString: 'AI Mass demo pipeline step: UINT8 images to the MNIST model input',
    }),
  );
}

/** Post-processing: `probabilities` FP32 [n, classes] -> the k highest `scores` FP32 [n, k] and their `labels` INT64 [n, k], highest first. */
export function topKModel(k: number, classes: number): Uint8Array {
  return encodeModel(
    model({
      graph: graph({
        name: `top${k}`,
        nodes: [node('TopK', ['probabilities', 'k'], ['scores', 'labels'], { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(1) })],
        inputs: [valueInfo('probabilities', 'float32', ['n', classes])],
        outputs: [valueInfo('scores', 'float32', ['n', k]), valueInfo('labels', 'int64', ['n', k])],
        initializers: [tensorFromInt64('k', [1], [k])],
      }),
      opset: OPSET,
      irVersion: IR_VERSION,
      docString: `AI Mass demo pipeline step: top-${k} classes`,
    }),
  );
}

/** The demo's step models (registered as version 1 each) and the pipeline that chains them with `mnist`. */
export const MNIST_TOP3 = {
  steps: {
    'mnist-pre': { build: () => mnistPreprocessModel(), notes: 'mnist-top3 pipeline step: UINT8 [n,28,28] to FP32 [n,784]' },
    'mnist-top3-post': { build: () => topKModel(3, 10), notes: 'mnist-top3 pipeline step: top-3 of 10 probabilities' },
  },
  // The chain docs/pipelines.md shows (spec.ts), under the demo's description (first: the stored spec keeps its key order).
  spec: {
    description: 'MNIST digits from UINT8 images: the three most probable classes, highest first',
    inputs: PIPELINE_EXAMPLES.chain.inputs,
    outputs: PIPELINE_EXAMPLES.chain.outputs,
    steps: PIPELINE_EXAMPLES.chain.steps,
  },
} as const;
