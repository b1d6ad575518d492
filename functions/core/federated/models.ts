/**
 * Models a federation can start from when the user has none yet: the FedAvg paper's MNIST "2NN"
 * (784-200-200-10, ReLU) and smaller MLPs of the same shape. Input `input` FP32 [batch, features]
 * of raw pixel intensities 0..255 (the IDX data sets' values); the 1/255 scale is a Constant node,
 * not an initializer, so it is not a parameter and never trains. Output `probabilities` (Softmax).
 */
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../onnx/builder.ts';
import { encodeModel, type NodeProtoInit, type TensorProtoInit } from '../onnx/model-proto.ts';
import { seededRandom } from '../platform/random.ts';
import { gaussianSource } from './privacy.ts';

/** An MLP with ReLU between layers, He-initialised under a seed: `sizes` [inputs, hidden..., classes]. */
export function mlpClassifier(sizes: readonly number[], seed: number, name = 'mlp'): Uint8Array {
  if (sizes.length < 2 || sizes.some((size) => !Number.isInteger(size) || size < 1)) throw new RangeError(`layer sizes [${sizes.join(', ')}] must be two or more positive integers`);
  const normal = gaussianSource(seededRandom(seed));
  const nodes: NodeProtoInit[] = [node('Constant', [], ['pixel_scale'], { value: attr.tensor(tensorFromFloat32('pixel_scale', [], [1 / 255])) }, 'pixel_scale')];
  nodes.push(node('Mul', ['input', 'pixel_scale'], ['input.scaled'], {}, 'scale_pixels'));
  const initializers: TensorProtoInit[] = [];
  let previous = 'input.scaled';
  for (let layer = 1; layer < sizes.length; layer++) {
    const fanIn = sizes[layer - 1] as number;
    const fanOut = sizes[layer] as number;
    const std = Math.sqrt(2 / fanIn);
    initializers.push(tensorFromFloat32(`dense${layer}.weight`, [fanIn, fanOut], Float32Array.from({ length: fanIn * fanOut }, () => normal() * std)));
    initializers.push(tensorFromFloat32(`dense${layer}.bias`, [fanOut], new Float32Array(fanOut)));
    const last = layer === sizes.length - 1;
    nodes.push(node('MatMul', [previous, `dense${layer}.weight`], [`dense${layer}.matmul`], {}, `dense${layer}_matmul`));
    nodes.push(node('Add', [`dense${layer}.matmul`, `dense${layer}.bias`], [last ? 'logits' : `dense${layer}.preactivation`], {}, `dense${layer}_add`));
    if (!last) {
      nodes.push(node('Relu', [`dense${layer}.preactivation`], [`dense${layer}.activation`], {}, `dense${layer}_relu`));
      previous = `dense${layer}.activation`;
    }
  }
  nodes.push(node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(1) }, 'softmax'));
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      docString: `MLP ${sizes.join('-')} (ReLU); input: raw intensities 0..255`,
      graph: graph({
        name,
        nodes,
        inputs: [valueInfo('input', 'float32', ['batch', sizes[0] as number])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', sizes.at(-1) as number])],
        initializers,
        // The training engine follows shapes from declared ones: the Constant's is a scalar.
        valueInfo: [valueInfo('pixel_scale', 'float32', [])],
      }),
    }),
  );
}

/** The FedAvg paper's MNIST 2NN: 784-200-200-10, 199,210 parameters. */
export const mnist2nn = (seed: number) => mlpClassifier([784, 200, 200, 10], seed, 'mnist_2nn');
