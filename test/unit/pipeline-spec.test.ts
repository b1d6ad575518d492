import { describe, expect, it } from 'vitest';
import ort, { type Tensor } from '../../functions/core/onnx/ort.ts';
import { argmaxRows, combineTensors, conditionValues } from '../../functions/core/pipelines/combine.ts';
import { fuseRefusal } from '../../functions/core/pipelines/fuse.ts';
import { parsePipelineSpec, parseSource, PIPELINE_EXAMPLES } from '../../functions/core/pipelines/spec.ts';
import { executionOrder, shapeContradiction } from '../../functions/core/pipelines/validate.ts';

const f32 = (data: number[], dims: number[]) => new ort.Tensor('float32', Float32Array.from(data), dims);

describe('the pipeline spec', () => {
  it('parses every documented example, a step without kind being a model step', () => {
    const chain = parsePipelineSpec(PIPELINE_EXAMPLES.chain);
    expect(chain.steps.map((s) => s.kind)).toEqual(['model', 'model', 'model']);
    expect(executionOrder(chain)).toEqual(['pre', 'classify', 'top3']);
    expect(parsePipelineSpec(PIPELINE_EXAMPLES.ensemble).steps[0]).toMatchObject({ kind: 'ensemble', combine: 'mean' });
    expect(executionOrder(parsePipelineSpec(PIPELINE_EXAMPLES.switch))).toEqual(['gate', 'route']);
    expect(parsePipelineSpec(PIPELINE_EXAMPLES.splitter).steps[0]).toMatchObject({ kind: 'splitter' });
  });

  it('refuses a bad spec with the path and the step id', () => {
    expect(() => parsePipelineSpec({ ...PIPELINE_EXAMPLES.chain, steps: [{ id: 'Pre', model: 'm', inputs: {} }] })).toThrow(
      'invalid pipeline (step "Pre") at steps.0.id: must match [a-z0-9][a-z0-9_-]{0,63}',
    );
    expect(() => parsePipelineSpec({ ...PIPELINE_EXAMPLES.chain, fuse: 'yes' })).toThrow(/^invalid pipeline at fuse: /);
    expect(() => parsePipelineSpec({ ...PIPELINE_EXAMPLES.chain, extra: 1 })).toThrow(/^invalid pipeline: Unrecognized key: "extra"/);
  });

  it('splits a source at its first dot', () => {
    expect(parseSource('$request.image')).toEqual({ step: '$request', tensor: 'image' });
    expect(parseSource('a.output.1')).toEqual({ step: 'a', tensor: 'output.1' });
  });

  it('orders a DAG and refuses a cycle and a duplicate id', () => {
    const spec = parsePipelineSpec({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }],
      outputs: [{ name: 'y', source: 'c.y' }],
      steps: [
        { id: 'c', model: 'm', inputs: { a: 'a.y', b: 'b.y' } },
        { id: 'a', model: 'm', inputs: { x: '$request.x' } },
        { id: 'b', model: 'm', inputs: { x: '$request.x' } },
      ],
    });
    expect(executionOrder(spec)).toEqual(['a', 'b', 'c']);
    const cyclic = parsePipelineSpec({ ...spec, steps: [{ id: 'c', model: 'm', inputs: { a: 'a.y' } }, { id: 'a', model: 'm', inputs: { x: 'c.y' } }] });
    expect(() => executionOrder(cyclic)).toThrow("invalid pipeline: the graph has a cycle through steps 'c', 'a'");
    expect(() => executionOrder({ ...spec, steps: [spec.steps[1]!, spec.steps[1]!] })).toThrow("invalid pipeline: step 'a': the step id appears twice");
  });

  it('says why shapes contradict, -1 fitting any size', () => {
    expect(shapeContradiction([-1, 784], [-1, 784])).toBeUndefined();
    expect(shapeContradiction([4, 784], [-1, 784])).toBeUndefined();
    expect(shapeContradiction([-1, 10], [-1, 784])).toBe('dimension 1 is 10 against 784');
    expect(shapeContradiction([-1], [-1, 784])).toBe('rank 1 against rank 2');
  });

  it('fuses only model steps with pinned versions', () => {
    expect(fuseRefusal(parsePipelineSpec(PIPELINE_EXAMPLES.chain))).toBeUndefined();
    expect(fuseRefusal(parsePipelineSpec(PIPELINE_EXAMPLES.switch))).toBe("step 'route' is a switch; fused mode takes model steps only (a static chain or DAG)");
    expect(fuseRefusal(parsePipelineSpec({ ...PIPELINE_EXAMPLES.chain, steps: [{ ...PIPELINE_EXAMPLES.chain.steps[0], version: 'prod' }] }))).toBe("step 'pre' follows alias 'prod'; fused mode needs pinned versions");
  });
});

describe('combining ensemble outputs', () => {
  const a = f32([0.1, 0.7, 0.2, 0.5, 0.5, 0], [2, 3]);
  const b = f32([0.3, 0.3, 0.4, 0.2, 0.1, 0.7], [2, 3]);
  const c = f32([0.6, 0.2, 0.2, 0.1, 0.8, 0.1], [2, 3]);

  it('averages, plainly and by weight', () => {
    expect(Array.from((combineTensors('mean', [a, b], [1, 1]) as Tensor).data as Float32Array)).toEqual([0.2, 0.5, 0.3, 0.35, 0.3, 0.35].map(Math.fround));
    const av = [0.1, 0.7, 0.2, 0.5, 0.5, 0].map(Math.fround);
    const bv = [0.3, 0.3, 0.4, 0.2, 0.1, 0.7].map(Math.fround);
    const weighted = combineTensors('weighted_mean', [a, b], [3, 1]) as Tensor;
    expect(Array.from(weighted.data as Float32Array)).toEqual(av.map((x, i) => Math.fround((3 * x + bv[i]!) / 4)));
  });

  it('votes by argmax, a tie going to the smallest label, and votes integer labels as they are', () => {
    expect(argmaxRows(a)).toEqual([1, 0]); // 0.5 and 0.5: the first
    const vote = combineTensors('majority_vote', [a, b, c], [1, 1, 1]) as Tensor;
    // Row 0: 1, 2, 0 (a three-way tie: 0); row 1: 0, 2, 1 (tie: 0).
    expect([vote.type, vote.dims, Array.from(vote.data as BigInt64Array)]).toEqual(['int64', [2], [0n, 0n]]);
    const labels = (values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), [values.length]);
    const counted = combineTensors('majority_vote', [labels([3, 1]), labels([3, 2]), labels([4, 2])], [1, 1, 1]) as Tensor;
    expect(Array.from(counted.data as BigInt64Array)).toEqual([3n, 2n]);
  });

  it('concatenates along the last axis, and says why it cannot', () => {
    const joined = combineTensors('concat', [f32([1, 2, 3, 4], [2, 2]), f32([5, 6], [2, 1])], [1, 1]) as Tensor;
    expect([joined.dims, Array.from(joined.data as Float32Array)]).toEqual([[2, 3], [1, 2, 5, 3, 4, 6]]);
    expect(combineTensors('concat', [f32([1, 2], [1, 2]), f32([1, 2], [2, 1])], [1, 1])).toBe('members answered shapes [1,2] and [2,1], which differ before the last axis');
    expect(combineTensors('mean', [a, f32([1, 2], [1, 2])], [1, 1])).toBe('members answered shapes [2,3] and [1,2]');
  });

  it('reads a switch condition per row or per element', () => {
    expect(conditionValues(a, 'argmax')).toEqual([1, 0]);
    expect(conditionValues(new ort.Tensor('int64', BigInt64Array.from([5n, -2n]), [2]), 'value')).toEqual([5, -2]);
  });
});
