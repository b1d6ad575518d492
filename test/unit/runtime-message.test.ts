import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import ort from '../../functions/core/onnx/ort.ts';
import { runtimeMessage } from '../../functions/core/onnx/runtime-message.ts';

describe('runtimeMessage', () => {
  it('removes the source path and the C++ signature that follows it, keeping the explanation', () => {
    const raw =
      "Non-zero status code returned while running MatMul node. Name:'/MatMul' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/math/matmul_helper.h:61 onnxruntime::common::Status onnxruntime::MatMulComputeHelper::Compute(const onnxruntime::TensorShape&, const onnxruntime::TensorShape&, bool, bool, bool, bool) left operand cannot broadcast on dim 0";
    expect(runtimeMessage(new Error(raw))).toBe(
      "Non-zero status code returned while running MatMul node. Name:'/MatMul' Status Message: left operand cannot broadcast on dim 0",
    );
  });

  it('removes a path with a pointer-returning signature, a bare file name with its function, and a const member function', () => {
    expect(runtimeMessage('/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 100000000000')).toBe(
      'Failed to allocate memory for requested buffer of size 100000000000',
    );
    expect(runtimeMessage("Non-zero status code returned while running ConcatFromSequence node. Name:'c' Status Message: concatbase.h:39 PrepareForComputeImpl Must have 1 or more inputs")).toBe(
      "Non-zero status code returned while running ConcatFromSequence node. Name:'c' Status Message: Must have 1 or more inputs",
    );
    expect(runtimeMessage('D:\\a\\_work\\1\\s\\onnxruntime\\core\\providers\\cpu\\rnn\\deep_cpu_gru.h:56 onnxruntime::DeepCpuGruOp::DeepCpuGruOp(const onnxruntime::OpKernelInfo&) const [with T = float] bad attribute')).toBe(
      'bad attribute',
    );
  });

  it('reads no drive letter inside a word ("failed:/path")', () => {
    expect(runtimeMessage('Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/graph/model.cc:181 onnxruntime::Model::Model(...) Unsupported model IR version: 14')).toBe(
      'Load model from m.onnx failed: Unsupported model IR version: 14',
    );
  });

  it('leaves a message without paths as it is', () => {
    expect(runtimeMessage(new Error('Got invalid dimensions for input: input'))).toBe('Got invalid dimensions for input: input');
  });

  it('cleans a real message of the runtime', async () => {
    const session = await ort.InferenceSession.create(readFileSync('fixtures/models/mnist/model.onnx'));
    const failure = await session.run({ input: new ort.Tensor('float32', new Float32Array(783), [1, 783]) }).catch((e: unknown) => e);
    expect(runtimeMessage(failure)).toBe('Got invalid dimensions for input: input for the following indices\n index: 1 Got: 783 Expected: 784\n Please fix either the inputs/outputs or the model.');
    await session.release();
  });
});
