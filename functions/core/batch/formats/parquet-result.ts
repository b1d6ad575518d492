import type { ColumnChunk, FileMetaData, SchemaElement } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer/src/bytewriter.js';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import type { NumericArray } from './elements.ts';
import type { KeyType } from './parquet.ts';

/**
 * A shard's result as one Parquet file, written column by column: its key columns as read, then one
 * column per output (a number per row, or a list of numbers); a failed row's outputs are null (its
 * error is in the errors file). Every column is one uncompressed PLAIN data page whose values are the
 * output tensor's own bytes, copied in runs of rows, and whose levels are RLE runs computed per row,
 * never per value (hyparquet-writer's general path walks every value of a list column; its page
 * header and footer writers are used as they are).
 */
export interface OutputColumn {
  name: string;
  element: 'f4' | 'f8' | 'i4' | 'i8' | 'b1';
  perRow: number;
  /** rows × perRow values; rows in `failed` are written as nulls. */
  data: NumericArray;
}

export interface KeyColumn {
  name: string;
  type: KeyType;
  values: unknown[];
}

const PHYSICAL = { f4: 'FLOAT', f8: 'DOUBLE', i4: 'INT32', i8: 'INT64', b1: 'BOOLEAN' } as const;

/** The RLE runs of one level stream, merged as they come: each run a varint header and a one-byte value. */
class LevelRuns {
  private readonly bytes: number[] = [];
  private value = -1;
  private count = 0;
  entries = 0;

  add(value: number, count: number): void {
    if (count === 0) return;
    this.entries += count;
    if (value === this.value) {
      this.count += count;
      return;
    }
    this.flush();
    this.value = value;
    this.count = count;
  }

  private flush(): void {
    if (this.count === 0) return;
    let header = this.count * 2;
    while (header >= 0x80) {
      this.bytes.push((header % 0x80) | 0x80);
      header = Math.floor(header / 0x80);
    }
    this.bytes.push(header, this.value);
    this.count = 0;
  }

  /** The stream as a page v1 holds it: a 4-byte little-endian length, then the runs. */
  encoded(): Uint8Array {
    this.flush();
    const out = new Uint8Array(4 + this.bytes.length);
    new DataView(out.buffer).setUint32(0, this.bytes.length, true);
    out.set(this.bytes, 4);
    return out;
  }
}

/** Present rows in runs: [first, end) ranges of consecutive rows not in `failed`. */
function presentRuns(rows: number, failed: ReadonlySet<number>): [number, number][] {
  const runs: [number, number][] = [];
  const sorted = [...failed].filter((r) => r >= 0 && r < rows).sort((a, b) => a - b);
  let from = 0;
  for (const row of sorted) {
    if (row > from) runs.push([from, row]);
    from = row + 1;
  }
  if (rows > from) runs.push([from, rows]);
  return runs;
}

/** PLAIN booleans: one bit each, least significant first. */
function plainBits(count: number, at: (i: number) => boolean): Uint8Array {
  const out = new Uint8Array(Math.ceil(count / 8));
  for (let i = 0; i < count; i++) if (at(i)) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

interface Page {
  /** Entries in the level streams (values plus nulls and empty lists). */
  entries: number;
  body: Uint8Array;
}

function outputPage(column: OutputColumn, rows: number, present: readonly [number, number][]): Page {
  const { perRow, data } = column;
  const width = column.element === 'b1' ? 0 : (data as Float32Array).BYTES_PER_ELEMENT;
  const definition = new LevelRuns();
  const repetition = perRow === 1 ? undefined : new LevelRuns();
  let presentRows = 0;
  let next = 0;
  for (const [from, to] of present) {
    // Failed rows before this run: one null entry each.
    definition.add(0, from - next);
    repetition?.add(0, from - next);
    if (!repetition) definition.add(1, to - from);
    else if (perRow === 0) definition.add(1, to - from); // an empty list: defined, no element
    else {
      definition.add(2, (to - from) * perRow);
      for (let r = from; r < to; r++) {
        repetition.add(0, 1);
        repetition.add(1, perRow - 1);
      }
    }
    presentRows += to - from;
    next = to;
  }
  definition.add(0, rows - next);
  repetition?.add(0, rows - next);
  let values: Uint8Array;
  if (column.element === 'b1') {
    const flat: number[] = [];
    for (const [from, to] of present) for (let i = from * perRow; i < to * perRow; i++) flat.push(data[i] as number);
    values = plainBits(flat.length, (i) => flat[i] !== 0);
  } else {
    values = new Uint8Array(presentRows * perRow * width);
    let at = 0;
    for (const [from, to] of present) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset + from * perRow * width, (to - from) * perRow * width);
      values.set(bytes, at);
      at += bytes.length;
    }
  }
  const levels = repetition ? [repetition.encoded(), definition.encoded()] : [definition.encoded()];
  return { entries: definition.entries, body: Buffer.concat([...levels, values]) };
}

const encoder = new TextEncoder();

function keyPage(key: KeyColumn, rows: number): Page {
  const definition = new LevelRuns();
  const present: unknown[] = [];
  for (let r = 0; r < rows; r++) {
    const v = key.values[r];
    const isNull = v === null || v === undefined;
    definition.add(isNull ? 0 : 1, 1);
    if (!isNull) present.push(v);
  }
  let values: Uint8Array;
  switch (key.type) {
    case 'STRING': {
      const parts = present.map((v) => encoder.encode(String(v)));
      values = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
      const view = new DataView(values.buffer);
      let at = 0;
      for (const p of parts) {
        view.setUint32(at, p.length, true);
        values.set(p, at + 4);
        at += 4 + p.length;
      }
      break;
    }
    case 'INT64':
      values = new Uint8Array(BigInt64Array.from(present, (v) => (typeof v === 'bigint' ? v : BigInt(v as number))).buffer);
      break;
    case 'INT32':
      values = new Uint8Array(Int32Array.from(present, (v) => Number(v)).buffer);
      break;
    case 'FLOAT':
      values = new Uint8Array(Float32Array.from(present, (v) => Number(v)).buffer);
      break;
    case 'DOUBLE':
      values = new Uint8Array(Float64Array.from(present, (v) => Number(v)).buffer);
      break;
    case 'BOOLEAN':
      values = plainBits(present.length, (i) => present[i] === true);
      break;
  }
  return { entries: rows, body: Buffer.concat([definition.encoded(), values]) };
}

export function writeParquetResult(rows: number, keys: readonly KeyColumn[], outputs: readonly OutputColumn[], failed: ReadonlySet<number>): Uint8Array {
  const schema: SchemaElement[] = [{ name: 'schema', num_children: keys.length + outputs.length }];
  const pages: { path: string[]; type: SchemaElement['type']; page: Page }[] = [];
  for (const key of keys) {
    const type = key.type === 'STRING' ? 'BYTE_ARRAY' : key.type;
    schema.push({ name: key.name, type, repetition_type: 'OPTIONAL', ...(key.type === 'STRING' ? { converted_type: 'UTF8' as const } : {}) });
    if (rows > 0) pages.push({ path: [key.name], type, page: keyPage(key, rows) });
  }
  const present = presentRuns(rows, failed);
  for (const output of outputs) {
    const type = PHYSICAL[output.element];
    if (output.perRow === 1) {
      schema.push({ name: output.name, type, repetition_type: 'OPTIONAL' });
    } else {
      schema.push({ name: output.name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 });
      schema.push({ name: 'list', repetition_type: 'REPEATED', num_children: 1 });
      schema.push({ name: 'element', type, repetition_type: 'REQUIRED' });
    }
    if (rows > 0) pages.push({ path: output.perRow === 1 ? [output.name] : [output.name, 'list', 'element'], type, page: outputPage(output, rows, present) });
  }
  const writer = new ByteWriter(pages.reduce((n, p) => n + p.page.body.length + 64, 4096));
  writer.appendUint32(0x31524150); // PAR1
  const columns: ColumnChunk[] = [];
  for (const { path, type, page } of pages) {
    const start = writer.offset;
    writePageHeader(writer, {
      type: 'DATA_PAGE',
      uncompressed_page_size: page.body.length,
      compressed_page_size: page.body.length,
      data_page_header: { num_values: page.entries, encoding: 'PLAIN', definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
    });
    writer.appendBytes(page.body);
    const size = BigInt(writer.offset - start);
    columns.push({
      file_offset: BigInt(start),
      meta_data: {
        type: type!,
        encodings: ['PLAIN', 'RLE'],
        path_in_schema: path,
        codec: 'UNCOMPRESSED',
        num_values: BigInt(page.entries),
        total_uncompressed_size: size,
        total_compressed_size: size,
        data_page_offset: BigInt(start),
      },
    });
  }
  const groupBytes = columns.reduce((n, c) => n + c.meta_data!.total_compressed_size, 0n);
  const metadata: Omit<FileMetaData, 'metadata_length'> = {
    version: 2,
    created_by: 'ai-mass batch',
    schema,
    num_rows: BigInt(rows),
    row_groups: rows > 0 ? [{ columns, total_byte_size: groupBytes, total_compressed_size: groupBytes, num_rows: BigInt(rows) }] : [],
  };
  // hyparquet-writer types its footer with its own copy of hyparquet's types; the shapes are the same.
  writeMetadata(writer, metadata as unknown as Parameters<typeof writeMetadata>[1]);
  writer.appendUint32(0x31524150);
  return writer.getBytes();
}
