import { describe, expect, it } from 'vitest';
import ort from 'onnxruntime-node';
import { BadRequestError, InferenceRuntimeError } from '../../functions/core/platform/errors.ts';
import { runtimeFailure } from '../../functions/core/serving/inference-service.ts';
import { TRANSPORT_MODELS } from '../helpers/transport-models.ts';

const model = { name: 'm', version: '1' };

async function failureOf(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<unknown> {
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  return session.run(feeds).then(() => undefined, (error: unknown) => error);
}

describe('runtimeFailure', () => {
  it("takes onnxruntime's own input check as the input's fault (400)", async () => {
    // The service checks declared shapes before running; onnxruntime's check, reached here directly, says the same.
    const error = await failureOf(TRANSPORT_MODELS.double!, { x: new ort.Tensor('float32', new Float32Array(3), [1, 3]) });
    const mapped = runtimeFailure(model, error);
    expect(mapped).toBeInstanceOf(BadRequestError);
    expect(mapped.message).toBe("model 'm' version '1' rejected the input: Got invalid dimensions for input: x for the following indices\n index: 1 Got: 3 Expected: 4\n Please fix either the inputs/outputs or the model.");
  });

  it("takes a failure inside the graph on input its signature allows as the server's (500), without source paths", async () => {
    const error = await failureOf(TRANSPORT_MODELS['reshape-two']!, { x: new ort.Tensor('float32', new Float32Array(3), [3]) });
    expect((error as Error).message).toMatch(/reshape_helper\.h:\d+ onnxruntime::ReshapeHelper::/);
    const mapped = runtimeFailure(model, error);
    expect(mapped).toBeInstanceOf(InferenceRuntimeError);
    expect(mapped.message).toBe(
      "model 'm' version '1' failed while running: Non-zero status code returned while running Reshape node. Name:'' Status Message: " +
        'input_shape_size == requested_shape_size was false. The input tensor cannot be reshaped to the requested shape. Input shape:{3}, requested shape:{2}',
    );
  });
});
