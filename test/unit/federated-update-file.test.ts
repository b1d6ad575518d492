import { describe, expect, it } from 'vitest';
import ort from '../../functions/core/onnx/ort.ts';
import { mlpClassifier } from '../../functions/core/federated/models.ts';
import { readParameters, withParameters } from '../../functions/core/federated/parameters.ts';
import { checkUpdate, encodeMaskedUpdate, encodeUpdate, type UpdateExpectation } from '../../functions/core/federated/update-file.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

const modelBytes = mlpClassifier([4, 3, 2], 1);
const { layout, values } = readParameters(modelBytes);
const identity = { federation: 'fed-a', round: 2, client: 'c1', examples: 30 };
const expected: UpdateExpectation = { federation: 'fed-a', round: 2, client: 'c1', layout, maxBytes: 10_000, encoding: 'float' };

describe('federated parameters and update files', () => {
  it('reads every float initializer in graph order, and writes new values into a model the checker accepts', async () => {
    expect(layout.entries.map((e) => [e.name, e.dims, e.offset])).toEqual([
      ['dense1.weight', [4, 3], 0],
      ['dense1.bias', [3], 12],
      ['dense2.weight', [3, 2], 15],
      ['dense2.bias', [2], 21],
    ]);
    expect(layout.length).toBe(23);
    const next = Float64Array.from({ length: 23 }, (_, i) => i / 8);
    const written = withParameters(modelBytes, layout, next);
    expect([...readParameters(written).values]).toEqual([...next]);
    await checkOnnxModel(written);
    const session = await ort.InferenceSession.create(written);
    const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(4), [1, 4]) });
    expect(out.probabilities?.dims).toEqual([1, 2]);
    await session.release();
  });

  it('round-trips an update: manifest, tensors, values and the file hash', () => {
    const bytes = encodeUpdate(identity, layout, values);
    const checked = checkUpdate(bytes, expected);
    expect(checked.manifest).toMatchObject({ format: 1, ...identity, encoding: 'float' });
    expect(checked.manifest.tensors.map((t) => t.name)).toEqual(['dense1.weight', 'dense1.bias', 'dense2.weight', 'dense2.bias']);
    expect([...checked.weights!]).toEqual([...values]);
    expect(checked.fileSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(checkUpdate(encodeUpdate(identity, layout, values), expected).fileSha256).toBe(checked.fileSha256);
  });

  it('refuses another client (403), another round, a wrong shape, NaN, a bad hash and a file beyond the bound', () => {
    expect(() => checkUpdate(encodeUpdate({ ...identity, client: 'c2' }, layout, values), expected)).toThrow(
      expect.objectContaining({ statusCode: 403, message: 'the update is for client c2; this key and token belong to client c1' }),
    );
    expect(() => checkUpdate(encodeUpdate({ ...identity, round: 1 }, layout, values), expected)).toThrow(expect.objectContaining({ statusCode: 400 }));
    const wrongShape = { entries: layout.entries.map((e, i) => (i === 1 ? { ...e, dims: [1, 3] } : e)), length: layout.length };
    expect(() => checkUpdate(encodeUpdate(identity, wrongShape, values), expected)).toThrow('tensor "dense1.bias" has shape [1, 3]; the global model\'s is [3]');
    const nan = Float64Array.from(values);
    nan[13] = Number.NaN;
    expect(() => checkUpdate(encodeUpdate(identity, layout, nan), expected)).toThrow('tensor "dense1.bias" holds NaN at index 1; updates must be finite');
    const tampered = encodeUpdate(identity, layout, values);
    tampered[tampered.length - 1] = (tampered.at(-1) as number) ^ 0xff;
    expect(() => checkUpdate(tampered, expected)).toThrow('does not match the sha256');
    expect(() => checkUpdate(encodeUpdate(identity, layout, values), { ...expected, maxBytes: 50 })).toThrow(expect.objectContaining({ statusCode: 413 }));
    expect(() => checkUpdate(Buffer.from('{"not": "an update"}'), expected)).toThrow('not an update file');
    expect(() => checkUpdate(encodeMaskedUpdate(identity, new Uint32Array(23)), expected)).toThrow('this round takes float updates; the update is masked');
  });

  it('takes a masked update in a secure-aggregation round', () => {
    const masked = Uint32Array.from({ length: 23 }, (_, i) => 4_000_000_000 - i);
    const checked = checkUpdate(encodeMaskedUpdate(identity, masked), { ...expected, encoding: 'masked' });
    expect([...checked.masked!]).toEqual([...masked]);
  });
});
