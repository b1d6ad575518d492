import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { float32ToFloat16Bits } from '../../functions/core/onnx/builder.ts';
import { outputValues } from '../../functions/core/evaluate/runner.ts';

describe('reading an output of any datatype', () => {
  it('reads an INT64 label output as classes without losing it to Float64Array.from', () => {
    const tensor = new ort.Tensor('int64', BigInt64Array.from([2n, 0n, 1n]), [3]);

    const out = outputValues(tensor);

    expect([out.labels, Array.from(out.values), out.unmapped]).toEqual([true, [2, 0, 1], undefined]);
  });

  it('refuses, row by row and with the reason, an int64 label no data set can hold', () => {
    const out = outputValues(new ort.Tensor('int64', BigInt64Array.from([1n, 2n ** 60n]), [2]));

    expect(Array.from(out.values)).toEqual([1, Number.NaN]);
    expect(out.unmapped).toEqual([undefined, 'label 1152921504606846976 is beyond the classes a data set can hold']);
  });

  it('maps string labels through classLabels, or reads them as class indices', () => {
    const names = new ort.Tensor('string', ['versicolor', 'setosa', 'rose'], [3]);
    const indices = new ort.Tensor('string', ['2', '0'], [2]);

    const named = outputValues(names, ['setosa', 'versicolor', 'virginica']);
    const bare = outputValues(names);

    expect([Array.from(named.values), named.unmapped]).toEqual([[1, 0, Number.NaN], [undefined, undefined, "label 'rose' is not one of options.classLabels"]]);
    expect(bare.unmapped![0]).toBe("label 'versicolor' is not a class index; give options.classLabels (the class names in class order)");
    expect(Array.from(outputValues(indices).values)).toEqual([2, 0]);
  });

  it('reads float outputs as scores and integer or bool outputs as classes', () => {
    const half = new ort.Tensor('float16', Uint16Array.from([0.5, 0.25].map(float32ToFloat16Bits)), [1, 2]);

    expect(outputValues(new ort.Tensor('float32', Float32Array.from([0.1, 0.9]), [1, 2]))).toMatchObject({ labels: false });
    expect([Array.from(outputValues(half).values), outputValues(half).labels]).toEqual([[0.5, 0.25], false]);
    expect([Array.from(outputValues(new ort.Tensor('int32', Int32Array.from([3]), [1])).values), outputValues(new ort.Tensor('bool', Uint8Array.from([1]), [1])).labels]).toEqual([[3], true]);
  });
});
