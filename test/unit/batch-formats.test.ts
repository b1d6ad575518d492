import { parquetMetadata } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { conversionProblem, toElements } from '../../functions/core/batch/formats/elements.ts';
import { parseNpyHeader } from '../../functions/core/batch/formats/npy.ts';
import { describeParquet } from '../../functions/core/batch/formats/parquet.ts';
import { decodeColumnChunk, UnsupportedPageError } from '../../functions/core/batch/formats/parquet-pages.ts';
import { formatOfKey, isColumnarInput } from '../../functions/core/batch/formats/plan.ts';
import { inputSpecs, writeJsonlRowInto } from '../../functions/core/batch/rows.ts';

/** The first column chunk of a one-column file hyparquet-writer wrote, decoded by our page decoder. */
function decodeFirstChunk(columnData: Record<string, unknown>[], schema?: Record<string, unknown>[]) {
  const buffer = parquetWriteBuffer({ columnData: columnData as never, rowGroupSize: 100_000, ...(schema ? { schema: schema as never } : {}) });
  const metadata = parquetMetadata(buffer);
  const file = describeParquet(metadata);
  const column = [...file.columns.values()][0]!;
  const meta = metadata.row_groups[0]!.columns[column.chunkIndex]!.meta_data!;
  const start = Number(meta.dictionary_page_offset ?? meta.data_page_offset);
  const bytes = new Uint8Array(buffer, start, Number(meta.total_compressed_size));
  return { column, decoded: decodeColumnChunk(bytes, { physical: column.leaf, codec: meta.codec, maxDefinition: column.maxDefinition, maxRepetition: column.maxRepetition, numValues: Number(meta.num_values) }) };
}

describe('the Parquet page decoder', () => {
  const values = Array.from({ length: 3000 }, (_, i) => Math.fround(Math.sin(i) * 1000));

  it('reads PLAIN and BYTE_STREAM_SPLIT float pages into one typed array, value for value', () => {
    for (const encoding of ['PLAIN', 'BYTE_STREAM_SPLIT']) {
      const { decoded } = decodeFirstChunk([{ name: 'v', data: Float32Array.from(values), type: 'FLOAT', encoding, nullable: false }]);
      expect(decoded.values).toEqual(Float32Array.from(values));
      expect(decoded.definition).toBeUndefined();
    }
  });

  it('reads dictionary pages of a list column with its levels, and leaves out nulls', () => {
    // Five distinct values, so the writer uses a dictionary; row 1 is null, row 2 an empty list.
    const rows = [[1, 2, 3], null, [], [4, 5, 1]];
    const schema = [
      { name: 'root', num_children: 1 },
      { name: 'l', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', type: 'DOUBLE', repetition_type: 'REQUIRED' },
    ];
    const { column, decoded } = decodeFirstChunk([{ name: 'l', data: rows }], schema);
    expect(column).toMatchObject({ kind: 'list', leaf: 'DOUBLE', element: 'f8', maxDefinition: 2, maxRepetition: 1 });
    expect(decoded.values).toEqual(Float64Array.from([1, 2, 3, 4, 5, 1]));
    expect(Array.from(decoded.repetition!)).toEqual([0, 1, 1, 0, 0, 0, 1, 1]);
    expect(Array.from(decoded.definition!)).toEqual([2, 2, 2, 0, 1, 2, 2, 2]);
  });

  it('reads byte-wide dictionary indices (up to 256 distinct values, as uint8 pixels give) value for value', () => {
    const pixels = Array.from({ length: 3000 }, (_, i) => (i * 7) % 200);
    const { decoded } = decodeFirstChunk([{ name: 'p', data: Int32Array.from(pixels), type: 'INT32', nullable: false }]);
    expect(decoded.values).toEqual(Int32Array.from(pixels));
  });

  it('hands encodings it does not know to the caller (which reads them through hyparquet)', () => {
    expect(() => decodeFirstChunk([{ name: 'v', data: Int32Array.from(values, Math.round), type: 'INT32', encoding: 'DELTA_BINARY_PACKED', nullable: false }])).toThrow(UnsupportedPageError);
  });

  it('refuses a chunk that ends before its values do', () => {
    const buffer = parquetWriteBuffer({ columnData: [{ name: 'v', data: Float32Array.from(values), type: 'FLOAT', nullable: false }] as never, rowGroupSize: 100_000 });
    const metadata = parquetMetadata(buffer);
    const meta = metadata.row_groups[0]!.columns[0]!.meta_data!;
    const bytes = new Uint8Array(buffer, Number(meta.data_page_offset), Number(meta.total_compressed_size) - 100);
    expect(() => decodeColumnChunk(bytes, { physical: 'FLOAT', codec: meta.codec, maxDefinition: 0, maxRepetition: 0, numValues: 3000 })).toThrow(/runs past the column chunk|fewer values/);
  });
});

describe('.npy headers', () => {
  const header = (dict: string) => {
    const text = `${dict}`.padEnd(117, ' ') + '\n';
    return new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, text.length, 0, ...new TextEncoder().encode(text)]);
  };

  it('gives the element type, the shape, and where the rows start', () => {
    const array = parseNpyHeader(header("{'descr': '<f4', 'fortran_order': False, 'shape': (7, 2, 3), }"), 'x.npy', 'x', 0);
    expect(array).toEqual({ name: 'x', element: 'f4', shape: [7, 2, 3], dataOffset: 128, rowElements: 6, rowBytes: 24, rows: 7 });
  });

  it('refuses what cannot be read by row ranges, saying why', () => {
    expect(() => parseNpyHeader(header("{'descr': '>f4', 'fortran_order': False, 'shape': (7,), }"), 'x.npy', 'x', 0)).toThrow("x.npy: dtype '>f4' is not supported");
    expect(() => parseNpyHeader(header("{'descr': '<f8', 'fortran_order': True, 'shape': (7, 2), }"), 'x.npy', 'x', 0)).toThrow(/Fortran order/);
    expect(() => parseNpyHeader(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 'x.npy', 'x', 0)).toThrow(/not a NumPy .npy array/);
  });
});

describe('element conversions', () => {
  it('allows exact widenings only, as one typed-array copy', () => {
    expect(conversionProblem('u1', 'FP32')).toBeUndefined();
    expect(conversionProblem('f8', 'FP32')).toBe('a column of f8 values cannot be converted to FP32 exactly');
    expect(conversionProblem('i4', 'FP32')).toBeDefined();
    expect(conversionProblem('i4', 'FP64')).toBeUndefined();
    expect(toElements(Uint8Array.from([0, 255]), 'FP32')).toEqual(Float32Array.from([0, 255]));
  });
});

describe('the JSONL fast path', () => {
  const specs = inputSpecs([{ name: 'x', datatype: 'FP32', shape: [-1, 4] }]);
  const target = [new Float32Array(8)];

  it('writes a plain row into its slot of the batch tensor', () => {
    expect(writeJsonlRowInto('{"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,0.1]}]}', specs, target, 1)).toEqual({ id: 'a' });
    expect(Array.from(target[0]!)).toEqual([0, 0, 0, 0, 1, 2, 3, Math.fround(0.1)]);
  });

  it('leaves every other row to the full decoder', () => {
    for (const line of [
      'not json',
      '{"inputs":[{"name":"x","data":[[1,2],[3,4]]}]}',
      '{"inputs":[{"name":"x","data":[1,"2",3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,null,3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,1e39,3,4]}]}',
      '{"inputs":[{"name":"x","datatype":"FP64","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","shape":[2,2],"data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"y","data":[1,2,3,4]}]}',
      '{"id":[1],"inputs":[{"name":"x","data":[1,2,3,4]}]}',
    ]) {
      expect(writeJsonlRowInto(line, specs, target, 0), line).toBeUndefined();
    }
  });
});

describe('which inputs are planned as columnar', () => {
  it('goes by the format, the extension, a folder, a pattern or a list', () => {
    expect(formatOfKey('batches/inputs/a/part-0.PARQUET')).toBe('parquet');
    expect(isColumnarInput('batches/inputs/a.jsonl', undefined, undefined)).toBe(false);
    expect(isColumnarInput('batches/inputs/a.npy', undefined, undefined)).toBe(true);
    expect(isColumnarInput('batches/inputs/lake/', undefined, undefined)).toBe(true);
    expect(isColumnarInput('batches/inputs/lake/part-*.parquet', undefined, undefined)).toBe(true);
    expect(isColumnarInput('batches/inputs/x', ['batches/inputs/x'], undefined)).toBe(true);
    expect(isColumnarInput('batches/inputs/data.bin', undefined, 'npz')).toBe(true);
  });
});
