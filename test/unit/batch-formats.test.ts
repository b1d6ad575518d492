import { parquetMetadata } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';
import { conversionProblem, toElements } from '../../functions/core/batch/formats/elements.ts';
import { parseNpyHeader } from '../../functions/core/batch/formats/npy.ts';
import { describeParquet } from '../../functions/core/batch/formats/parquet.ts';
import { decodeColumnChunk, UnsupportedPageError } from '../../functions/core/batch/formats/parquet-pages.ts';
import { formatOfKey, isColumnarInput } from '../../functions/core/batch/formats/plan.ts';
import { inputSpecs, writeJsonlRowInto } from '../../functions/core/batch/rows.ts';
import { duckdbParquet } from '../helpers/columnar-files.ts';

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

  it.each([
    // 300 distinct values: 9-bit indices, the width DuckDB writes for uint8 pixels; 140,000: 18-bit
    // indices, past the width read from three bytes at once.
    [300, 5000],
    [140_000, 150_000],
  ])('reads bit-packed dictionary indices of %i distinct values into float32 values exactly', (distinct, length) => {
    const ints = Array.from({ length }, (_, i) => (i * 37) % distinct);
    const buffer = parquetWriteBuffer({ columnData: [{ name: 'p', data: Int32Array.from(ints), type: 'INT32', encoding: 'RLE_DICTIONARY', nullable: false }] as never, rowGroupSize: 1_000_000 });
    const metadata = parquetMetadata(buffer);
    const meta = metadata.row_groups[0]!.columns[0]!.meta_data!;
    expect(meta.encodings).toContain('RLE_DICTIONARY');
    const bytes = new Uint8Array(buffer, Number(meta.dictionary_page_offset ?? meta.data_page_offset), Number(meta.total_compressed_size));
    const decoded = decodeColumnChunk(bytes, { physical: 'INT32', codec: meta.codec, maxDefinition: 0, maxRepetition: 0, numValues: length }, Float32Array);
    expect(decoded.values).toBeInstanceOf(Float32Array);
    expect(decoded.values).toEqual(Float32Array.from(ints));
  });

  /** A one-column INT32 chunk of these values, dictionary-encoded, uncompressed (its index bytes can be changed). */
  const dictionaryChunk = (ints: number[]) => {
    const buffer = parquetWriteBuffer({ columnData: [{ name: 'p', data: Int32Array.from(ints), type: 'INT32', encoding: 'RLE_DICTIONARY', nullable: false }] as never, rowGroupSize: 1_000_000, codec: 'UNCOMPRESSED' });
    const meta = parquetMetadata(buffer).row_groups[0]!.columns[0]!.meta_data!;
    const bytes = new Uint8Array(buffer, Number(meta.dictionary_page_offset ?? meta.data_page_offset), Number(meta.total_compressed_size)).slice();
    return { bytes, leaf: { physical: 'INT32' as const, codec: meta.codec, maxDefinition: 0, maxRepetition: 0, numValues: ints.length } };
  };

  it('reads dictionary indices of every width from 1 to 20 bits into float32 values exactly, runs of either kind and any tail', () => {
    const mismatches: number[] = [];
    for (let width = 1; width <= 20; width++) {
      // 2^(width-1)+1 distinct values need `width` bits; a repeated stretch makes an RLE run among the
      // packed ones, and 1,003 + width values end the page partway through a group of eight.
      const distinct = 2 ** (width - 1) + 1;
      const ints = Array.from({ length: Math.max(1003 + width, distinct) }, (_, i) => (i > 200 && i < 260 ? 5 % distinct : (i * 7919) % distinct));
      const { bytes, leaf } = dictionaryChunk(ints);
      const decoded = decodeColumnChunk(bytes, leaf, Float32Array);
      if (decoded.values.length !== ints.length || decoded.values.some((v, i) => v !== ints[i])) mismatches.push(width);
    }
    expect(mismatches).toEqual([]);
  });

  it('refuses a dictionary index past the dictionary, inside the page and at its end', () => {
    // 300 distinct values: 9-bit indices, so all ones (511) is past the dictionary.
    const ints = Array.from({ length: 5000 }, (_, i) => (i * 37) % 300);
    for (const at of [2500, 5]) {
      const { bytes, leaf } = dictionaryChunk(ints);
      bytes.fill(0xff, bytes.length - at - 5, bytes.length - at);
      expect(() => decodeColumnChunk(bytes, leaf, Float32Array), `${at} bytes from the end`).toThrow('parquet dictionary index 511 is out of range (300 entries)');
    }
  });

  describe('checking levels instead of storing them (regularRows)', () => {
    const schema = [
      { name: 'root', num_children: 1 },
      { name: 'l', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
    ];
    const chunkOf = (rows: unknown[]) => {
      const buffer = parquetWriteBuffer({ columnData: [{ name: 'l', data: rows }] as never, schema: schema as never, rowGroupSize: 1_000_000 });
      const metadata = parquetMetadata(buffer);
      const column = [...describeParquet(metadata).columns.values()][0]!;
      const meta = metadata.row_groups[0]!.columns[column.chunkIndex]!.meta_data!;
      const bytes = new Uint8Array(buffer, Number(meta.dictionary_page_offset ?? meta.data_page_offset), Number(meta.total_compressed_size));
      return { bytes, leaf: { physical: column.leaf, codec: meta.codec, maxDefinition: column.maxDefinition, maxRepetition: column.maxRepetition, numValues: Number(meta.num_values) } };
    };
    /** The verdict the stored levels give: every entry present and each row exactly perRow long. */
    const storedVerdict = (levels: { definition?: Uint8Array; repetition?: Uint8Array }, max: number, perRow: number) =>
      levels.definition!.every((d) => d === max) && levels.repetition!.every((r, i) => (r === 0) === (i % perRow === 0));

    it('takes the checked path on a list column as DuckDB writes it (packed and run-length repetition levels, 9-bit indices)', async () => {
      // MNIST-like rows: 784 uint8 pixels a row, 256 distinct values, as the batch benchmark's file.
      const file = await duckdbParquet('SELECT i AS id, list_transform(range(784), k -> ((i * 31 + k * 7) % 256)::UTINYINT) AS input FROM range(300) t(i)');
      const metadata = parquetMetadata(file.buffer.slice(file.byteOffset, file.byteOffset + file.length) as ArrayBuffer);
      const column = describeParquet(metadata).columns.get('input')!;
      const meta = metadata.row_groups[0]!.columns[column.chunkIndex]!.meta_data!;
      const start = Number(meta.dictionary_page_offset ?? meta.data_page_offset);
      const bytes = file.subarray(start, start + Number(meta.total_compressed_size));
      const leaf = { physical: column.leaf, codec: meta.codec, maxDefinition: column.maxDefinition, maxRepetition: column.maxRepetition, numValues: Number(meta.num_values) };
      const checked = decodeColumnChunk(bytes, leaf, Float32Array, undefined, 784);
      expect(checked).toBeDefined();
      const expected = Float32Array.from({ length: 300 * 784 }, (_, n) => (Math.floor(n / 784) * 31 + (n % 784) * 7) % 256);
      expect(checked!.values).toEqual(expected);
      expect(decodeColumnChunk(bytes, leaf, Float32Array, undefined, 392)).toBeUndefined();
    });

    it('gives the same values as the stored levels for full rows, and no levels', () => {
      const rows = Array.from({ length: 400 }, (_, r) => Array.from({ length: 9 }, (_, k) => (r * 9 + k) % 50));
      const { bytes, leaf } = chunkOf(rows);
      const checked = decodeColumnChunk(bytes, leaf, undefined, undefined, 9)!;
      expect(checked.values).toEqual(Float64Array.from(rows.flat()));
      expect(checked.definition).toBeUndefined();
      expect(checked.repetition).toBeUndefined();
    });

    it('says undefined exactly when the stored levels find a null, an empty list, a null element or a row of another length', () => {
      // Rows of 1, 3, 8 and 20 values (packed and run-length level runs), each case a different fault at a different place.
      let seed = 7;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      let faulty = 0;
      for (const perRow of [1, 3, 8, 20]) {
        for (let trial = 0; trial < 12; trial++) {
          const rows: unknown[] = Array.from({ length: 150 }, (_, r) => Array.from({ length: perRow }, (_, k) => (r + k) % 7));
          const fault = trial % 6;
          const at = Math.floor(random() * rows.length);
          if (fault === 1) rows[at] = null;
          if (fault === 2) rows[at] = [];
          if (fault === 3) (rows[at] as unknown[])[Math.floor(random() * perRow)] = null;
          if (fault === 4) rows[at] = [...(rows[at] as number[]), 1];
          if (fault === 5 && perRow > 1) rows[at] = (rows[at] as number[]).slice(1);
          const { bytes, leaf } = chunkOf(rows);
          const full = decodeColumnChunk(bytes, leaf);
          const regular = storedVerdict(full as never, leaf.maxDefinition, perRow);
          const checked = decodeColumnChunk(bytes, leaf, undefined, undefined, perRow);
          expect(checked !== undefined).toBe(regular);
          if (checked) expect(checked.values).toEqual(full.values);
          if (!regular) faulty++;
        }
      }
      expect(faulty).toBeGreaterThan(30);
    });
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

  it('refuses a snappy page whose stream is malformed, naming the fault, and reads the intact chunk after it', () => {
    // One PLAIN page, snappy-compressed; its stream's length, which opens the page body, is changed.
    const buffer = parquetWriteBuffer({ columnData: [{ name: 'v', data: Float32Array.from(values), type: 'FLOAT', nullable: false }] as never, rowGroupSize: 100_000 });
    const meta = parquetMetadata(buffer).row_groups[0]!.columns[0]!.meta_data!;
    expect(meta.codec).toBe('SNAPPY');
    const chunk = new Uint8Array(buffer, Number(meta.data_page_offset), Number(meta.total_compressed_size)).slice();
    const leaf = { physical: 'FLOAT' as const, codec: meta.codec, maxDefinition: 0, maxRepetition: 0, numValues: 3000 };
    // The page header's sizes are zigzag varints, so these two bytes first occur as the body's length.
    const length = values.length * 4;
    const at = chunk.findIndex((b, i) => b === ((length & 0x7f) | 0x80) && chunk[i + 1] === length >> 7);
    expect(at).toBeGreaterThan(0);
    const compressed = chunk.slice();
    compressed[at + 1]! += 1;
    expect(() => decodeColumnChunk(compressed, leaf)).toThrow(/snappy data is malformed: its length header is not the page size/);
    expect(decodeColumnChunk(chunk, leaf).values).toEqual(Float32Array.from(values));
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
