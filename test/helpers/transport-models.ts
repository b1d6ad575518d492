/**
 * Tiny models for the V2 transport tests (functions/core/onnx/builder.ts), each registered like an
 * upload: y = x + x in FP32 (with and without class labels in metadata_props) and FP16, a model
 * whose warm-up with dynamic dimensions of 1 fails, and a model without inputs.
 */
import { attr, graph, model, node, tensorFromFloat32, tensorFromInt64, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';

const opset = { irVersion: 8, opset: 17, producerName: 'ai-mass-test' };

function doubling(elemType: 'float32' | 'float16', shape: (number | string)[], metadata?: Record<string, string>): Uint8Array {
  return encodeModel(model({
    ...opset,
    ...(metadata ? { metadata } : {}),
    graph: graph({ name: 'double', nodes: [node('Add', ['x', 'x'], ['y'])], inputs: [valueInfo('x', elemType, shape)], outputs: [valueInfo('y', elemType, shape)] }),
  }));
}

export const LABELS = ['cat', 'dog', 'bird', 'fish'];

export const TRANSPORT_MODELS: Record<string, Uint8Array> = {
  /** y = x + x, FP32 [batch, 4]: exact values are easy to check. */
  double: doubling('float32', ['batch', 4]),
  /** The same with class labels in metadata_props. */
  scores: doubling('float32', ['batch', 4], { labels: JSON.stringify(LABELS) }),
  /** y = x + x, FP32 of any shape: a response as large as the request allows. */
  'double-any': doubling('float32', ['n', 'm']),
  /** y = Expand(x, shape): an answer many times the size of its request. */
  expand: encodeModel(model({
    ...opset,
    graph: graph({
      name: 'expand',
      nodes: [node('Expand', ['x', 'shape'], ['y'])],
      inputs: [valueInfo('x', 'float32', [1, 'n']), valueInfo('shape', 'int64', [2])],
      outputs: [valueInfo('y', 'float32', ['rows', 'n'])],
    }),
  })),
  /** y = x + x in FP16 [1, 3]. */
  half: doubling('float16', [1, 3]),
  /** Reshape to [2]: a warm-up with a dynamic dimension of 1 fails; a request with 2 elements runs. */
  'reshape-two': encodeModel(model({
    ...opset,
    graph: graph({
      name: 'reshape-two',
      nodes: [node('Reshape', ['x', 'shape'], ['y'])],
      inputs: [valueInfo('x', 'float32', ['n'])],
      outputs: [valueInfo('y', 'float32', [2])],
      initializers: [tensorFromInt64('shape', [1], [2])],
    }),
  })),
  /** No inputs: a Constant output. */
  constant: encodeModel(model({
    ...opset,
    graph: graph({
      name: 'constant',
      nodes: [node('Constant', [], ['y'], { value: attr.tensor(tensorFromFloat32('c', [2], [1.5, -2.25])) })],
      inputs: [],
      outputs: [valueInfo('y', 'float32', [2])],
    }),
  })),
};

export async function registerTransportModels(store: ModelRepository): Promise<void> {
  for (const [name, bytes] of Object.entries(TRANSPORT_MODELS)) await pushModel(store, { name, version: '1', bytes });
}
