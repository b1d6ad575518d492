import { describe, expect, it } from 'vitest';
import ort from 'onnxruntime-node';
import { RUNTIME_WARMUP_MODEL } from '../../functions/core/sessions/model-sessions.ts';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

describe('the runtime warm-up model', () => {
  it('is y = x + x as the builder writes it, passes the ONNX checker and runs in onnxruntime', async () => {
    const built = encodeModel(model({
      irVersion: 8, opset: 17, producerName: 'ai-mass',
      graph: graph({ name: 'runtime-warmup', nodes: [node('Add', ['x', 'x'], ['y'])], inputs: [valueInfo('x', 'float32', [1])], outputs: [valueInfo('y', 'float32', [1])] }),
    }));
    expect(Buffer.from(RUNTIME_WARMUP_MODEL).toString('base64')).toBe(Buffer.from(built).toString('base64'));
    await checkOnnxModel(RUNTIME_WARMUP_MODEL);
    const session = await ort.InferenceSession.create(RUNTIME_WARMUP_MODEL);
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1.5), [1]) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([3]);
  });
});
