import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';

/** y = data[int(x)]: answers for x in {0, 1}; onnxruntime fails (a 500) for any other value. */
export function gatherModel(): Uint8Array {
  return encodeModel(
    model({
      graph: graph({
        name: 'gather',
        nodes: [node('Cast', ['x'], ['i'], { to: attr.int(7) }), node('Gather', ['data', 'i'], ['y'], { axis: attr.int(0) })],
        inputs: [valueInfo('x', 'float32', ['n', 2])],
        outputs: [valueInfo('y', 'float32', ['n', 2])],
        initializers: [tensorFromFloat32('data', [2], [10, 20])],
      }),
      opset: 17,
      irVersion: 8,
    }),
  );
}
