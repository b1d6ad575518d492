import { describe, expect, it } from 'vitest';
import { augmentImages } from '../../functions/core/evaluate/augment.ts';
import { matchDatasetToModel, parseIdxDataset, parseJsonlDataset, type DatasetManifest } from '../../functions/core/evaluate/datasets.ts';
import type { ModelManifest } from '../../functions/core/artifacts/manifest.ts';

const row = (data: number[], extra: Record<string, unknown>) =>
  JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, data.length], data }], ...extra });
const text = (...lines: string[]) => new TextEncoder().encode(lines.join('\n') + '\n');

function idx(dims: number[], data: number[]): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint8(2, 0x08);
  view.setUint8(3, dims.length);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

describe('JSONL data sets', () => {
  it('decodes rows into columns with labels and the class count', () => {
    const ds = parseJsonlDataset('tiny', text(row([1, 2], { label: 0 }), row([3, 4], { label: 2 })));

    expect(ds.rows).toBe(2);
    expect(ds.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [1, 2] }]);
    expect(Array.from(ds.columns[0]!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(Array.from(ds.labels!)).toEqual([0, 2]);
    expect(ds.classes).toBe(3);
  });

  it('reads regression targets', () => {
    const ds = parseJsonlDataset('reg', text(row([1], { target: [0.5, 1] }), row([2], { target: [1.5, 2] })));

    expect(ds.labelKind).toBe('target');
    expect(Array.from(ds.targets!)).toEqual([0.5, 1, 1.5, 2]);
    expect(ds.targetSize).toBe(2);
  });

  it('refuses a row with its label missing, naming the line', () => {
    expect(() => parseJsonlDataset('tiny', text(row([1, 2], { label: 0 }), row([3, 4], {})))).toThrow(
      "data set 'tiny' line 2 has neither label nor target (push with --unlabelled for agreement-only data)",
    );
  });

  it('refuses rows whose inputs differ from the first row', () => {
    expect(() => parseJsonlDataset('tiny', text(row([1, 2], { label: 0 }), row([3, 4, 5], { label: 1 })))).toThrow(
      "data set 'tiny' line 2 has inputs x FP32 [1,3] but line 1 has x FP32 [1,2]; every row must match",
    );
  });

  it('refuses a line that is not JSON and data that does not fill its shape', () => {
    expect(() => parseJsonlDataset('tiny', text('{nope'))).toThrow(/^data set 'tiny' line 1 is not valid JSON: /);
    expect(() =>
      parseJsonlDataset('tiny', text(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2] }], label: 1 }))),
    ).toThrow("data set 'tiny' line 1: input 'x' has 2 elements but its shape needs 3");
  });

  it('reads values as the online endpoint does: NaN and Infinity tokens, exact 64-bit integers; a literal past the range is refused, not Infinity', () => {
    const ds = parseJsonlDataset('tok', text(
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[NaN,-Infinity,0.5]},{"name":"n","datatype":"INT64","shape":[1,1],"data":[9007199254740993]}],"label":1}',
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2,3]},{"name":"n","datatype":"INT64","shape":[1,1],"data":[-9223372036854775808]}],"label":0}',
    ));
    expect(Array.from(ds.columns[0]!.data as Float32Array)).toEqual([Number.NaN, -Infinity, 0.5, 1, 2, 3]);
    expect(Array.from(ds.columns[1]!.data as BigInt64Array)).toEqual([9007199254740993n, -9223372036854775808n]);
    expect(() => parseJsonlDataset('big', text('{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,1e400]}],"label":0}'))).toThrow(
      "data set 'big' line 1: input 'x': element 1 is 1e400, beyond the range of FP32",
    );
    expect(() => parseJsonlDataset('bad', text('{"inputs":[{"name":"x","data":[NaN'))).toThrow(/^data set 'bad' line 1 is not valid JSON: /);
  });
});

describe('IDX data sets', () => {
  it('pairs images with labels as FP32 rows of [1, height*width] and keeps the image layout', () => {
    const ds = parseIdxDataset('pair', idx([2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 255]), idx([2], [7, 3]));

    expect(ds.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [1, 4] }]);
    expect(Array.from(ds.columns[0]!.data as Float32Array)).toEqual([0, 1, 2, 3, 4, 5, 6, 255]);
    expect(Array.from(ds.labels)).toEqual([7, 3]);
    expect(ds.image).toEqual({ height: 2, width: 2, channels: 1, maxValue: 255 });
  });

  it('refuses a labels file of another length', () => {
    expect(() => parseIdxDataset('pair', idx([2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7]), idx([3], [1, 2, 3]))).toThrow(
      "data set 'pair': 2 images but 3 labels; an IDX data set needs one label per image",
    );
  });
});

describe('matching rows to a model', () => {
  const dataset = { name: 'd', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784] }] } as DatasetManifest;
  const model = (shape: number[], datatype = 'FP32', name = 'input') =>
    ({ name: 'mnist', version: '1', inputs: [{ name, datatype, shape }] }) as ModelManifest;

  it('accepts rows that fit and says whether they can be batched', () => {
    expect(matchDatasetToModel(dataset, model([-1, 784]))).toEqual({ batchable: true });
    expect(matchDatasetToModel(dataset, model([1, 784]))).toEqual({ batchable: false });
  });

  it('refuses a shape, a datatype or a name that does not match, with the first mismatch', () => {
    expect(() => matchDatasetToModel(dataset, model([-1, 10]))).toThrow(
      "rows of data set 'd' do not match model 'mnist' version '1': input 'input' has shape [1,784] but the model expects [-1,10] (-1 is any size)",
    );
    expect(() => matchDatasetToModel(dataset, model([-1, 784], 'INT64'))).toThrow(
      "rows of data set 'd' do not match model 'mnist' version '1': input 'input' is FP32 but the model expects INT64",
    );
    expect(() => matchDatasetToModel(dataset, model([-1, 784], 'FP32', 'pixels'))).toThrow(
      "rows of data set 'd' do not match model 'mnist' version '1': the model needs input 'pixels', the rows have 'input'",
    );
  });
});

describe('robustness augmentations', () => {
  const image = { height: 3, width: 3, channels: 1, maxValue: 255 };
  const src = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);

  it('shifts right and down, filling with black', () => {
    expect(Array.from(augmentImages(src, 1, image, 'shift', 1, 0))).toEqual([0, 0, 0, 0, 1, 2, 0, 4, 5]);
  });

  it('mirrors left to right', () => {
    expect(Array.from(augmentImages(src, 1, image, 'flip', 1, 0))).toEqual([3, 2, 1, 6, 5, 4, 9, 8, 7]);
  });

  it('rotates 90 degrees clockwise about the centre', () => {
    expect(Array.from(augmentImages(src, 1, image, 'rotation', 90, 0)).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([7, 4, 1, 8, 5, 2, 9, 6, 3]);
  });

  it('scales brightness and contrast, clamped to the full scale', () => {
    expect(Array.from(augmentImages(Float32Array.from([100, 200]), 1, { ...image, height: 1, width: 2 }, 'brightness', 1.5, 0))).toEqual([150, 255]);
    expect(Array.from(augmentImages(Float32Array.from([100, 200]), 1, { ...image, height: 1, width: 2 }, 'contrast', 0.5, 0))).toEqual([125, 175]);
  });

  it('blurs a constant image into itself and adds reproducible noise', () => {
    const flat = new Float32Array(9).fill(50);
    expect(Array.from(augmentImages(flat, 1, image, 'blur', 1, 0)).map((v) => Math.round(v * 1e4) / 1e4)).toEqual(new Array(9).fill(50));
    const a = augmentImages(flat, 1, image, 'noise', 0.1, 3);
    expect(Array.from(a)).toEqual(Array.from(augmentImages(flat, 1, image, 'noise', 0.1, 3)));
    expect(Array.from(a)).not.toEqual(Array.from(flat));
  });
});
