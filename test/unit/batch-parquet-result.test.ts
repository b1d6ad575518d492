import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { describe, expect, it } from 'vitest';
import { writeParquetResult } from '../../functions/core/batch/formats/parquet-result.ts';
import { decodeColumnChunk } from '../../functions/core/batch/formats/parquet-pages.ts';
import { describeParquet } from '../../functions/core/batch/formats/parquet.ts';
import { ScratchArena } from '../../functions/core/batch/formats/scratch.ts';

/** Rows of a result file as DuckDB reads it (another reader than the one this code is built on). */
async function duckdbRows(bytes: Uint8Array, select: string): Promise<unknown[][]> {
  const dir = await mkdtemp(join(tmpdir(), 'ai-mass-result-'));
  try {
    const path = join(dir, 'result.parquet');
    await writeFile(path, bytes);
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    try {
      const reader = await connection.runAndReadAll(select.replace('$file', `'${path}'`));
      return reader.getRowsJS() as unknown[][];
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('the columnar result writer', () => {
  // Five rows; rows 1 and 2 failed (two in a row) and row 4 (the last) failed.
  const rows = 5;
  const failed = new Set([1, 2, 4]);
  const probs = Float32Array.from({ length: rows * 3 }, (_, i) => Math.fround(i / 7 - 1));
  const labels = BigInt64Array.from([7n, -1n, 2n ** 62n, -(2n ** 63n), 5n]);
  const flags = Uint8Array.from([1, 0, 1, 0, 1, 1, 0, 0, 1, 1]);
  const score = Float64Array.from([0.1, 0.2, 0.3, Number.MIN_VALUE, -0]);
  const file = () =>
    writeParquetResult(
      rows,
      [
        { name: 'name', type: 'STRING', values: ['a', null, 'ünï', 'd', ''] },
        { name: 'id', type: 'INT64', values: [10n, 11n, undefined, 13n, 14n] },
      ],
      [
        { name: 'probs', element: 'f4', perRow: 3, data: probs },
        { name: 'label', element: 'i8', perRow: 1, data: labels },
        { name: 'flags', element: 'b1', perRow: 2, data: flags },
        { name: 'score', element: 'f8', perRow: 1, data: score },
      ],
      failed,
    );

  it('writes key columns as read and each output column-wise, failed rows null, as hyparquet reads it', async () => {
    const bytes = file();
    const read = await parquetReadObjects({ file: bytes.slice().buffer });
    expect(read).toEqual([
      { name: 'a', id: 10n, probs: Array.from(probs.subarray(0, 3)), label: 7n, flags: [true, false], score: 0.1 },
      { name: null, id: 11n, probs: null, label: null, flags: null, score: null },
      { name: 'ünï', id: null, probs: null, label: null, flags: null, score: null },
      { name: 'd', id: 13n, probs: Array.from(probs.subarray(9, 12)), label: -(2n ** 63n), flags: [false, false], score: Number.MIN_VALUE },
      { name: '', id: 14n, probs: null, label: null, flags: null, score: null },
    ]);
    // One uncompressed PLAIN page per column, in one row group.
    const metadata = parquetMetadata(bytes.slice().buffer);
    expect(metadata.row_groups).toHaveLength(1);
    expect(metadata.row_groups[0]!.columns.map((c) => [c.meta_data!.path_in_schema.join('.'), c.meta_data!.codec])).toEqual([
      ['name', 'UNCOMPRESSED'],
      ['id', 'UNCOMPRESSED'],
      ['probs.list.element', 'UNCOMPRESSED'],
      ['label', 'UNCOMPRESSED'],
      ['flags.list.element', 'UNCOMPRESSED'],
      ['score', 'UNCOMPRESSED'],
    ]);
  });

  it('is read the same by DuckDB', async () => {
    const rowsRead = await duckdbRows(file(), 'SELECT name, id, probs, label, flags, score FROM read_parquet($file)');
    expect(rowsRead).toEqual([
      ['a', 10n, Array.from(probs.subarray(0, 3)), 7n, [true, false], 0.1],
      [null, 11n, null, null, null, null],
      ['ünï', null, null, null, null, null],
      ['d', 13n, Array.from(probs.subarray(9, 12)), -(2n ** 63n), [false, false], Number.MIN_VALUE],
      ['', 14n, null, null, null, null],
    ]);
  });

  it('writes long runs of rows (level runs over the one-byte varint) and an empty shard', async () => {
    const many = 300;
    const data = Float32Array.from({ length: many * 2 }, (_, i) => i);
    const bytes = writeParquetResult(many, [], [{ name: 'y', element: 'f4', perRow: 2, data }], new Set([150]));
    const read = (await parquetReadObjects({ file: bytes.slice().buffer })) as { y: number[] | null }[];
    expect(read).toHaveLength(many);
    expect(read[150]!.y).toBeNull();
    expect(read.filter((_, r) => r !== 150).map((r) => r.y)).toEqual(Array.from({ length: many }, (_, r) => [2 * r, 2 * r + 1]).filter((_, r) => r !== 150));
    const empty = writeParquetResult(0, [], [{ name: 'y', element: 'f4', perRow: 2, data: new Float32Array(0) }], new Set());
    expect(await parquetReadObjects({ file: empty.slice().buffer })).toEqual([]);
  });
});

describe('borrowed shard memory', () => {
  it('hands a released buffer to the next shard, and decodes into it exactly what fresh memory holds', () => {
    // Prepare: a list column of 6,000 rows × 4 values (96 KB of values: pooled, not left to V8).
    const data = Float32Array.from({ length: 1200 * 20 }, (_, i) => (i % 97) - 40);
    const bytes = writeParquetResult(6000, [], [{ name: 'x', element: 'f4', perRow: 4, data }], new Set());
    const metadata = parquetMetadata(bytes.slice().buffer);
    const column = [...describeParquet(metadata).columns.values()][0]!;
    const meta = metadata.row_groups[0]!.columns[0]!.meta_data!;
    const chunk = bytes.subarray(Number(meta.data_page_offset), Number(meta.data_page_offset) + Number(meta.total_compressed_size));
    const leaf = { physical: column.leaf, codec: meta.codec, maxDefinition: column.maxDefinition, maxRepetition: column.maxRepetition, numValues: Number(meta.num_values) };
    // Act: decode once into fresh memory, then twice through arenas, the second reusing the first's buffers (dirty).
    const fresh = decodeColumnChunk(chunk, leaf);
    const first = new ScratchArena();
    const a = decodeColumnChunk(chunk, leaf, undefined, first);
    a.values.fill(123 as never);
    first.release();
    const second = new ScratchArena();
    const b = decodeColumnChunk(chunk, leaf, undefined, second);
    // Assert: the same buffer came back, and every value and level is exact.
    expect(b.values.buffer).toBe(a.values.buffer);
    expect(b.values).toEqual(fresh.values);
    expect(b.definition).toEqual(fresh.definition);
    expect(b.repetition).toEqual(fresh.repetition);
    second.release();
    expect(() => second.array(Float32Array, 1)).toThrow(/after release/);
  });
});
