import { describe, expect, it } from 'vitest';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { ModelRejectedError, validateModel } from '../../functions/core/artifacts/validation.ts';
import { scaleModel } from '../helpers/registry-stack.ts';

// Admission has no IR or opset window of its own: what the layer's onnxruntime (1.30) loads is
// admitted, what it refuses is refused with its reason.

async function rejection(bytes: Uint8Array): Promise<string> {
  const error = await validateModel(bytes).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ModelRejectedError);
  return (error as Error).message;
}

describe('validateModel: IR versions and opsets', () => {
  it.each([
    [1, 3],
    [7, 3],
    [17, 8],
    [26, 13],
  ])('admits ai.onnx opset %i at IR %i, which onnxruntime loads', async (opset, ir) => {
    // Relu has a kernel from opset 6 and Mul from 7; opset 1 uses Softmax (kernel from 1).
    const bytes = opset === 1
      ? encodeModel(model({ graph: graph({ name: 'softmax', nodes: [node('Softmax', ['x'], ['y'])], inputs: [valueInfo('x', 'float32', [1, 2])], outputs: [valueInfo('y', 'float32', [1, 2])] }), opset, irVersion: ir }))
      : scaleModel(2, opset, ir);
    const { signature } = await validateModel(bytes);
    expect([signature.opset, signature.irVersion]).toEqual([opset, ir]);
  });

  it('admits a model that imports only ai.onnx.ml (a scikit-learn pipeline without ai.onnx operators)', async () => {
    const m = model({
      graph: graph({ name: 'normalize', nodes: [node('Normalizer', ['x'], ['y'], {}, 'n', 'ai.onnx.ml')], inputs: [valueInfo('x', 'float32', [1, 2])], outputs: [valueInfo('y', 'float32', [1, 2])] }),
      opset: 1,
      irVersion: 8,
    });
    m.opsetImport = [{ domain: 'ai.onnx.ml', version: 1 }];
    const { signature } = await validateModel(encodeModel(m));
    expect([signature.opset, signature.outputs]).toEqual([0, [{ name: 'y', datatype: 'FP32', shape: [1, 2] }]]);
  });

  it('refuses an IR version onnxruntime does not read, with its reason', async () => {
    expect(await rejection(scaleModel(2, 17, 14))).toBe('onnxruntime cannot load the model: Unsupported model IR version: 14, max supported IR version: 13');
  });
});
