import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { findExternalData } from '../../functions/core/onnx/external-data.ts';
import { assertNoExternalData } from '../../functions/core/onnx/graph-toolkit.ts';
import { decodeModel, OnnxFormatError } from '../../functions/core/onnx/model-proto.ts';
import { functionAttributeDefaultModel, functionBodyModel, nestedSubgraphModel, sparseConstantModel, sparseInitializerModel } from '../helpers/hostile-models.ts';

describe('findExternalData (the raw bytes) and assertNoExternalData (a decoded model, for the quantizer)', () => {
  it.each([
    ['sparse initializer', sparseInitializerModel, 'sparse initializer "s" in graph main'],
    ['sparse Constant', sparseConstantModel, 'attribute "sparse_value" of node "c" (Constant) in graph main'],
    ['function body', functionBodyModel, 'attribute "value" of node "fc" (Constant) in function "leak"'],
    ['nested subgraph', nestedSubgraphModel, 'initializer "k" in graph main/outer.then_branch/inner.then_branch'],
  ])('%s: both name the same place', (_case, build, where) => {
    const bytes = build('x.bin');
    expect(findExternalData(bytes)).toEqual([{ where }]);
    expect(() => assertNoExternalData(decodeModel(bytes))).toThrow(
      `${where} uses external data; save the model with its weights inside the .onnx file (onnx.save(model, path, save_as_external_data=False)) and upload that`,
    );
  });

  it('sees a function attribute default, which the decoder drops', () => {
    const bytes = functionAttributeDefaultModel('x.bin');
    expect(findExternalData(bytes)).toEqual([{ where: 'the default of attribute "weights" in function "withdefault"' }]);
    expect(() => assertNoExternalData(decodeModel(bytes))).not.toThrow();
  });

  it('finds nothing in a real self-contained model, and refuses bytes whose wire format is broken', async () => {
    const mnist = new Uint8Array(await readFile('fixtures/models/mnist/model.onnx'));
    expect(findExternalData(mnist)).toEqual([]);
    expect(() => findExternalData(mnist.subarray(0, 50_000))).toThrow(OnnxFormatError);
  });
});
