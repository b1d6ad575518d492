import type { S3Client } from '@aws-sdk/client-s3';
import { parquetMetadataAsync, parquetRead, parquetSchema, type FileMetaData, type SchemaTree } from 'hyparquet';
import { BadRequestError } from '../../platform/errors.ts';
import { ELEMENT_ARRAYS, type ElementType, type NumericArray, type NumericArrayConstructor } from './elements.ts';
import { decodeColumnChunk, UnsupportedPageError, type LeafColumn } from './parquet-pages.ts';
import { getBytes, readOncePerVersion, s3AsyncBuffer, type ObjectRef } from './ranged.ts';
import type { ScratchArena } from './scratch.ts';

/**
 * Parquet as batch input and output. Metadata comes from the footer through hyparquet over ranged
 * GETs; a shard is a run of row groups; each input column chunk is one ranged GET decoded by
 * parquet-pages.ts into a typed array. Columns a model reads are numeric: a flat column (one value
 * a row) or a list column (one tensor a row, every row the same length).
 */
export interface ParquetColumn {
  name: string;
  kind: 'flat' | 'list';
  leaf: LeafColumn['physical'];
  /** The values' logical type (UINT_8 in an INT32 column is u1), which decides exact conversions. */
  element: ElementType;
  /** Index of the leaf in each row group's column chunks. */
  chunkIndex: number;
  maxDefinition: number;
  maxRepetition: number;
}

export interface ParquetFile {
  metadata: FileMetaData;
  /** Top-level columns this reader can feed to a model, by name. */
  columns: Map<string, ParquetColumn>;
  /** Every top-level column's name, with why it cannot feed a model where it cannot. */
  unsupported: Map<string, string>;
  /** Top-level flat columns that can be copied to the output as keys, with their writer type. */
  keyTypes: Map<string, KeyType>;
}

export type KeyType = 'STRING' | 'INT32' | 'INT64' | 'FLOAT' | 'DOUBLE' | 'BOOLEAN';

function logicalElement(tree: SchemaTree): ElementType | undefined {
  const e = tree.element;
  const converted = e.converted_type;
  switch (e.type) {
    case 'BOOLEAN':
      return 'b1';
    case 'FLOAT':
      return 'f4';
    case 'DOUBLE':
      return 'f8';
    case 'INT32':
      if (converted === 'INT_8') return 'i1';
      if (converted === 'UINT_8') return 'u1';
      if (converted === 'INT_16') return 'i2';
      if (converted === 'UINT_16') return 'u2';
      if (converted === 'UINT_32') return 'u4';
      if (converted === undefined || converted === 'INT_32') return 'i4';
      return undefined;
    case 'INT64':
      if (converted === 'UINT_64') return 'u8';
      if (converted === undefined || converted === 'INT_64') return 'i8';
      return undefined;
    default:
      return undefined;
  }
}

function keyTypeOf(tree: SchemaTree): KeyType | undefined {
  const e = tree.element;
  if (tree.children.length > 0) return undefined;
  if (e.type === 'BYTE_ARRAY' && (e.converted_type === 'UTF8' || e.logical_type?.type === 'STRING')) return 'STRING';
  if (e.type === 'INT32' || e.type === 'INT64' || e.type === 'FLOAT' || e.type === 'DOUBLE' || e.type === 'BOOLEAN') return e.type;
  return undefined;
}

export function describeParquet(metadata: FileMetaData): ParquetFile {
  const root = parquetSchema(metadata);
  const columns = new Map<string, ParquetColumn>();
  const unsupported = new Map<string, string>();
  const keyTypes = new Map<string, KeyType>();
  let chunkIndex = 0;
  for (const child of root.children) {
    const name = child.element.name;
    const leaves: SchemaTree[][] = [];
    const walk = (node: SchemaTree, path: SchemaTree[]) => {
      if (node.children.length === 0) leaves.push([...path, node]);
      for (const c of node.children) walk(c, [...path, node]);
    };
    walk(child, []);
    const first = chunkIndex;
    chunkIndex += leaves.length;
    const keyType = keyTypeOf(child);
    if (keyType && child.element.repetition_type !== 'REPEATED') keyTypes.set(name, keyType);
    if (leaves.length !== 1) {
      unsupported.set(name, 'it is a struct or map, not a numeric column or a list of numbers');
      continue;
    }
    const path = leaves[0]!;
    const leaf = path[path.length - 1]!;
    const element = logicalElement(leaf);
    const physical = leaf.element.type;
    if (!element || (physical !== 'BOOLEAN' && physical !== 'INT32' && physical !== 'INT64' && physical !== 'FLOAT' && physical !== 'DOUBLE')) {
      unsupported.set(name, `its values are ${leaf.element.type}${leaf.element.converted_type ? ` (${leaf.element.converted_type})` : ''}, not numbers`);
      continue;
    }
    const maxRepetition = path.filter((n) => n.element.repetition_type === 'REPEATED').length;
    const maxDefinition = path.filter((n) => n.element.repetition_type !== 'REQUIRED').length;
    if (maxRepetition > 1) {
      unsupported.set(name, 'it is a list of lists; give each row as one flat list of its tensor in row-major order');
      continue;
    }
    columns.set(name, { name, kind: maxRepetition === 0 ? 'flat' : 'list', leaf: physical, element, chunkIndex: first, maxDefinition, maxRepetition });
  }
  return { metadata, columns, unsupported, keyTypes };
}

/** The file's footer, described; read once per object version (the submission's plan and every shard need it). */
export function readParquetFile(s3: S3Client, object: ObjectRef): Promise<ParquetFile> {
  return readOncePerVersion(object, 'parquet footer', () => readFooter(s3, object));
}

async function readFooter(s3: S3Client, object: ObjectRef): Promise<ParquetFile> {
  const where = `s3://${object.bucket}/${object.key}`;
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(s3AsyncBuffer(s3, object), { initialFetchSize: 64 * 1024 });
  } catch (error) {
    if ((error as { name?: string }).name === 'BadRequestError' || (error as { $metadata?: unknown }).$metadata) throw error;
    throw new BadRequestError(`${where} is not a readable Parquet file: ${(error as Error).message}`, { cause: error });
  }
  return describeParquet(metadata);
}

/** One row group's rows and compressed bytes: the units shards are made of. */
export function rowGroupUnits(file: ParquetFile): { rows: number; bytes: number }[] {
  return file.metadata.row_groups.map((g) => ({
    rows: Number(g.num_rows),
    bytes: g.columns.reduce((n, c) => n + Number(c.meta_data?.total_compressed_size ?? 0), 0),
  }));
}

/** A column's values over a run of rows, in row-major order, with the rows that could not be read. */
export interface ColumnValues {
  values: NumericArray;
  /** Row (within the run) → why its value is unusable; those rows' slots hold zeros. */
  rowErrors: Map<number, string>;
}

function chunkRange(file: ParquetFile, group: number, column: ParquetColumn): { start: number; end: number; numValues: number; codec: string } {
  const meta = file.metadata.row_groups[group]!.columns[column.chunkIndex]!.meta_data;
  if (!meta) throw new Error(`column '${column.name}' of row group ${group} has no metadata`);
  const data = Number(meta.data_page_offset);
  const dictionary = meta.dictionary_page_offset !== undefined ? Number(meta.dictionary_page_offset) : undefined;
  // Some writers record a dictionary offset of 0 for chunks without one.
  const start = dictionary !== undefined && dictionary > 0 && dictionary < data ? dictionary : data;
  return { start, end: start + Number(meta.total_compressed_size), numValues: Number(meta.num_values), codec: meta.codec };
}

/** Checks the levels of a chunk the fast way (native indexOf scans); false when any row needs a closer look. */
function regular(definition: Uint8Array | undefined, repetition: Uint8Array | undefined, column: ParquetColumn, rows: number, perRow: number, values: number): boolean {
  if (values !== rows * perRow) return false;
  if (definition) for (let d = 0; d < column.maxDefinition; d++) if (definition.indexOf(d) !== -1) return false;
  if (repetition) {
    if (repetition.length !== rows * perRow) return false;
    for (let r = 0; r < rows; r++) {
      if (repetition[r * perRow] !== 0) return false;
      const next = repetition.indexOf(0, r * perRow + 1);
      if (next !== (r + 1 < rows ? (r + 1) * perRow : -1)) return false;
    }
  }
  return true;
}

/**
 * The slow path for a chunk with nulls or rows of the wrong length: walks its levels once, copying
 * each good row's values with one `set` and naming each bad row.
 */
function irregular(decoded: { values: NumericArray; definition: Uint8Array | undefined; repetition: Uint8Array | undefined }, column: ParquetColumn, rows: number, perRow: number, out: NumericArray, at: number, rowErrors: Map<number, string>, rowBase: number): void {
  const { values, definition, repetition } = decoded;
  const entries = definition?.length ?? repetition?.length ?? values.length;
  let row = -1;
  let rowStartValue = 0;
  let rowValues = 0;
  let rowNull = false;
  let valueAt = 0;
  const finish = () => {
    if (row < 0) return;
    if (rowNull) rowErrors.set(rowBase + row, column.kind === 'flat' ? `column '${column.name}' is null` : `column '${column.name}' is null, empty or has a null element in this row`);
    else if (rowValues !== perRow) rowErrors.set(rowBase + row, `column '${column.name}' has ${rowValues} values in this row; the input needs ${perRow}`);
    else (out as Float64Array).set((values as Float64Array).subarray(rowStartValue, rowStartValue + perRow), at + row * perRow);
  };
  for (let i = 0; i < entries; i++) {
    if (!repetition || repetition[i] === 0) {
      finish();
      row++;
      rowStartValue = valueAt;
      rowValues = 0;
      rowNull = false;
    }
    const present = !definition || definition[i] === column.maxDefinition;
    if (present) {
      valueAt++;
      rowValues++;
    } else {
      rowNull = true;
    }
  }
  finish();
  if (row + 1 !== rows) throw new Error(`column '${column.name}' has ${row + 1} rows in a row group of ${rows}`);
}

/**
 * Values of one column over row groups [from, to): one ranged GET per chunk, decoded into one
 * typed array of the column's physical type (or `target`), `perRow` values a row. With an arena the
 * bytes and values live in memory the shard borrows, and a shard of one row group gets the decoded
 * chunk itself, with no copy.
 */
export async function readParquetColumn(s3: S3Client, object: ObjectRef, file: ParquetFile, column: ParquetColumn, from: number, to: number, perRow: number, target?: NumericArrayConstructor, arena?: ScratchArena): Promise<ColumnValues> {
  const groups = file.metadata.row_groups.slice(from, to);
  const rows = groups.reduce((n, g) => n + Number(g.num_rows), 0);
  const physical = column.leaf === 'BOOLEAN' ? Uint8Array : ELEMENT_ARRAYS[({ INT32: 'i4', INT64: 'i8', FLOAT: 'f4', DOUBLE: 'f8' } as const)[column.leaf]];
  const Ctor = column.leaf === 'BOOLEAN' || column.leaf === 'INT64' ? physical : (target ?? physical);
  const rowErrors = new Map<number, string>();
  const chunks = await Promise.all(groups.map((_, g) => {
    const range = chunkRange(file, from + g, column);
    return getBytes(s3, object, range.start, range.end, arena).then((bytes) => ({ bytes, range }));
  }));
  let out: NumericArray | undefined;
  const whole = () => (out ??= arena ? arena.array(Ctor, rows * perRow) : new Ctor(rows * perRow));
  let rowBase = 0;
  for (let g = 0; g < groups.length; g++) {
    const groupRows = Number(groups[g]!.num_rows);
    const { bytes, range } = chunks[g]!;
    const leaf = { physical: column.leaf, codec: range.codec, maxDefinition: column.maxDefinition, maxRepetition: column.maxRepetition, numValues: range.numValues };
    let decoded;
    try {
      // First with the levels only checked (the common case: no nulls, every row full); a chunk
      // that fails the check is decoded again with its levels, to name the rows at fault.
      const checked = decodeColumnChunk(bytes, leaf, Ctor, arena, perRow);
      decoded = checked && checked.values.length === groupRows * perRow ? checked : decodeColumnChunk(bytes, leaf, Ctor, arena);
    } catch (error) {
      if (!(error instanceof UnsupportedPageError)) throw error;
      await readGeneric(s3, object, file, column, from + g, groupRows, perRow, whole(), rowBase * perRow, rowErrors, rowBase);
      rowBase += groupRows;
      continue;
    }
    if (regular(decoded.definition, decoded.repetition, column, groupRows, perRow, decoded.values.length)) {
      if (groups.length === 1 && decoded.values instanceof Ctor) out = decoded.values;
      else (whole() as Float64Array).set(decoded.values as Float64Array, rowBase * perRow);
    } else {
      irregular(decoded, column, groupRows, perRow, whole(), rowBase * perRow, rowErrors, rowBase);
    }
    rowBase += groupRows;
  }
  const values = out ?? whole();
  // Unread rows' slots hold zeros, whatever the borrowed memory held before.
  for (const row of rowErrors.keys()) {
    if (values instanceof BigInt64Array || values instanceof BigUint64Array) values.fill(0n, row * perRow, (row + 1) * perRow);
    else values.fill(0, row * perRow, (row + 1) * perRow);
  }
  return { values, rowErrors };
}

/** Encodings the page decoder does not know (delta, byte-stream-split): hyparquet reads the row group. */
async function readGeneric(s3: S3Client, object: ObjectRef, file: ParquetFile, column: ParquetColumn, group: number, rows: number, perRow: number, out: NumericArray, at: number, rowErrors: Map<number, string>, rowBase: number): Promise<void> {
  const groupStart = file.metadata.row_groups.slice(0, group).reduce((n, g) => n + Number(g.num_rows), 0);
  let data: unknown[] = [];
  await parquetRead({
    file: s3AsyncBuffer(s3, object),
    metadata: file.metadata,
    columns: [column.name],
    rowStart: groupStart,
    rowEnd: groupStart + rows,
    onComplete: (result: unknown[][]) => {
      data = result.map((r) => r[0]);
    },
  });
  for (let r = 0; r < rows; r++) {
    const value = data[r];
    const list = column.kind === 'flat' ? (value === null || value === undefined ? undefined : [value]) : (value as ArrayLike<unknown> | null | undefined);
    if (list === null || list === undefined) rowErrors.set(rowBase + r, `column '${column.name}' is null`);
    else if (list.length !== perRow) rowErrors.set(rowBase + r, `column '${column.name}' has ${list.length} values in this row; the input needs ${perRow}`);
    else if (Array.from(list).some((v) => v === null || v === undefined)) rowErrors.set(rowBase + r, `column '${column.name}' has a null element`);
    else (out as Float64Array).set(Array.from(list, (v) => (typeof v === 'boolean' ? Number(v) : v)) as number[], at + r * perRow);
  }
}

/** Flat key columns over row groups [from, to), as hyparquet reads them (typed arrays or arrays of strings). */
export async function readKeyColumns(s3: S3Client, object: ObjectRef, file: ParquetFile, names: readonly string[], from: number, to: number): Promise<Map<string, unknown[]>> {
  const keys = new Map<string, unknown[]>(names.map((n) => [n, []]));
  if (names.length === 0) return keys;
  const rowStart = file.metadata.row_groups.slice(0, from).reduce((n, g) => n + Number(g.num_rows), 0);
  const rowEnd = rowStart + file.metadata.row_groups.slice(from, to).reduce((n, g) => n + Number(g.num_rows), 0);
  await parquetRead({
    file: s3AsyncBuffer(s3, object),
    metadata: file.metadata,
    columns: [...names],
    rowStart,
    rowEnd,
    onComplete: (rows: unknown[][]) => {
      names.forEach((name, i) => keys.set(name, rows.map((r) => r[i])));
    },
  });
  return keys;
}
