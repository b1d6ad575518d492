import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { BadRequestError } from '../../platform/errors.ts';
import { keys } from '../../artifacts/keys.ts';
import type { TensorMetadata } from '../../v2/schemas.ts';
import { headInput, type InputObject } from '../input.ts';
import { inputSpecs, type InputSpec } from '../rows.ts';
import { MAX_SHARDS, type BatchFormat } from '../schemas.ts';
import { assertConvertible, type ElementType } from './elements.ts';
import { readNpy, readNpz, type NpyArray } from './npy.ts';
import { readParquetFile, rowGroupUnits, type ParquetFile } from './parquet.ts';
import type { ObjectRef } from './ranged.ts';

/**
 * Planning of a columnar job (Parquet, .npy, .npz): the input's files (one key, a prefix ending in
 * `/`, a `*` pattern in the last segment, or a list), their footers or headers read by range, the
 * column→input mapping checked against the model's metadata, and shards cut along the format's own
 * units: Parquet row groups, blocks of `.npy` rows. The plan is stored next to the job
 * (`batches/<job>/plan.json`): it is what enqueueing, the workers and the merge read.
 */
export const COLUMNAR_FORMATS = ['parquet', 'npy', 'npz'] as const;
export type ColumnarFormat = (typeof COLUMNAR_FORMATS)[number];
export const OUTPUT_FORMATS = ['jsonl', 'parquet'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function isColumnarFormat(format: string | undefined): format is ColumnarFormat {
  return (COLUMNAR_FORMATS as readonly string[]).includes(format ?? '');
}

/** The format a key's extension names; undefined for anything else. */
export function formatOfKey(key: string): BatchFormat | undefined {
  const ext = /\.(jsonl|csv|parquet|npy|npz)$/i.exec(key)?.[1]?.toLowerCase();
  return ext as BatchFormat | undefined;
}

/** Whether a submission's input is planned here: a columnar format, a prefix, a pattern or a list. */
export function isColumnarInput(input: string | undefined, inputs: readonly string[] | undefined, format: string | undefined): boolean {
  if (inputs !== undefined) return true;
  if (format !== undefined) return isColumnarFormat(format);
  return input !== undefined && (input.endsWith('/') || input.includes('*') || isColumnarFormat(formatOfKey(input)));
}

export interface PlannedShard {
  shard: number;
  /** Index into `files`. */
  file: number;
  /** Parquet: row groups [start, end). NumPy: rows [start, end). */
  start: number;
  end: number;
  rows: number;
}

export interface ColumnarPlan {
  v: 1;
  format: ColumnarFormat;
  outputFormat: OutputFormat;
  /** Model input → the column(s) or array feeding it: one (a tensor a row) or several (a tabular row). */
  columns: Record<string, string[]>;
  keyColumns: string[];
  files: ObjectRef[];
  shards: PlannedShard[];
  rows: number;
  bytes: number;
  /** The request hash of the job it was saved for: a step refuses a plan another submission under its id wrote. */
  requestHash?: string;
}

export interface PlanRequest {
  s3: S3Client;
  bucket: string;
  /** One key, a prefix ending in `/`, or a key pattern with `*` in its last segment. */
  input?: string | undefined;
  inputs?: readonly string[] | undefined;
  format?: BatchFormat | undefined;
  modelInputs: readonly TensorMetadata[];
  modelOutputs: readonly TensorMetadata[];
  columns?: Record<string, string | string[]> | undefined;
  keyColumns?: readonly string[] | undefined;
  outputFormat?: OutputFormat | undefined;
  shardBytes: number;
}

const MAX_FILES = 10_000;

async function listKeys(s3: S3Client, bucket: string, input: string): Promise<string[]> {
  const star = input.indexOf('*');
  const slash = input.lastIndexOf('/');
  if (star !== -1 && star < slash) throw new BadRequestError(`input '${input}': a '*' may appear in the last path segment only`);
  const prefix = star === -1 ? input : input.slice(0, star);
  const pattern = star === -1 ? undefined : new RegExp(`^${input.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replaceAll('*', '[^/]*')}$`);
  const found: string[] = [];
  let token: string | undefined;
  do {
    const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of out.Contents ?? []) {
      const key = o.Key!;
      if (key.endsWith('/') || (pattern && !pattern.test(key))) continue;
      // Data lake folders hold markers (_SUCCESS, .crc files) next to their parts.
      const base = key.slice(key.lastIndexOf('/') + 1);
      if (!pattern && (base.startsWith('_') || base.startsWith('.'))) continue;
      if (!pattern && star === -1 && input.endsWith('/') && key.slice(prefix.length).includes('/')) continue;
      found.push(key);
      if (found.length > MAX_FILES) throw new BadRequestError(`input '${input}' matches more than ${MAX_FILES} files`);
    }
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  if (found.length === 0) throw new BadRequestError(`input '${input}' matches no files`);
  return found.sort();
}

function formatOf(keysList: readonly string[], given: BatchFormat | undefined): ColumnarFormat {
  const formats = new Set(keysList.map((k) => formatOfKey(k)));
  const format = given ?? (formats.size === 1 ? [...formats][0] : undefined);
  if (!isColumnarFormat(format)) {
    if (given) throw new BadRequestError(`format '${given}' cannot be read from several files; use parquet, npy or npz`);
    throw new BadRequestError(`the input's files must all be .parquet, .npy or .npz (or name the format); found ${[...formats].map((f) => f ?? 'other').join(', ')}`);
  }
  return format;
}

const list = (names: Iterable<string>) => [...names].map((n) => `'${n}'`).join(', ');

interface FileInfo {
  ref: ObjectRef;
  units: { rows: number; bytes: number }[];
  /** Rows per unit for NumPy (units are cut later); Parquet's are row groups. */
  npyRows?: number;
  npyRowBytes?: number;
}

function tensorMapping(spec: InputSpec, where: string): number {
  if (spec.rowElements === undefined) throw new BadRequestError(`input '${spec.name}' has a dynamic row shape [${spec.rowShape.join(',')}]; columnar rows need a fixed one`);
  void where;
  return spec.rowElements;
}

/** Parquet: the columns feeding each input, checked against the model; every file must agree. */
function mapParquet(file: ParquetFile, where: string, specs: readonly InputSpec[], asked: PlanRequest['columns'], keyColumns: readonly string[]): Record<string, string[]> {
  const mapping: Record<string, string[]> = {};
  const names = [...file.columns.keys(), ...file.unsupported.keys()];
  for (const spec of specs) {
    const given = asked?.[spec.name];
    let columns: string[];
    if (given !== undefined) columns = typeof given === 'string' ? [given] : [...given];
    else if (file.columns.has(spec.name) || file.unsupported.has(spec.name)) columns = [spec.name];
    else if (specs.length === 1) {
      // A tabular model's single input: every numeric flat column that is not a key, in file order.
      columns = [...file.columns.values()].filter((c) => c.kind === 'flat' && !keyColumns.includes(c.name)).map((c) => c.name);
      if (columns.length !== spec.rowElements) {
        throw new BadRequestError(
          `${where} has no column named '${spec.name}' for input '${spec.name}', and its ${columns.length} numeric columns (${list(columns)}) do not make the ${spec.rowElements ?? '?'} values a row of that input needs; map columns to the input with "columns"`,
        );
      }
    } else throw new BadRequestError(`${where} has no column named '${spec.name}' for input '${spec.name}'; its columns are ${list(names)}; map one with "columns"`);
    const elements = tensorMapping(spec, where);
    for (const name of columns) {
      const column = file.columns.get(name);
      if (!column) {
        const why = file.unsupported.get(name);
        throw new BadRequestError(why ? `column '${name}' cannot feed input '${spec.name}': ${why}` : `column '${name}' (for input '${spec.name}') is not in ${where}; its columns are ${list(names)}`);
      }
      if (columns.length > 1 && column.kind !== 'flat') throw new BadRequestError(`column '${name}' is a list; input '${spec.name}' is given ${columns.length} columns, which must each hold one number a row`);
    }
    if (columns.length > 1 && columns.length !== elements) {
      throw new BadRequestError(`input '${spec.name}' needs ${elements} values a row but is given ${columns.length} columns (${list(columns)})`);
    }
    if (columns.length === 1 && file.columns.get(columns[0]!)!.kind === 'flat' && elements !== 1) {
      throw new BadRequestError(`column '${columns[0]}' holds one number a row but input '${spec.name}' needs ${elements} ([${spec.rowShape.join(',')}]); give a list column or ${elements} columns`);
    }
    for (const name of columns) assertConvertible(file.columns.get(name)!.element, spec.datatype, name, spec.name);
    mapping[spec.name] = columns;
  }
  for (const key of keyColumns) {
    if (!file.keyTypes.has(key)) throw new BadRequestError(`key column '${key}' is not a flat string or number column of ${where}; its columns are ${list(names)}`);
  }
  return mapping;
}

/** NumPy: the array feeding each input (an .npy has one, named after nothing; an .npz one per input). */
function mapNumpy(arrays: readonly NpyArray[], where: string, specs: readonly InputSpec[], asked: PlanRequest['columns'], npz: boolean): Record<string, string[]> {
  const mapping: Record<string, string[]> = {};
  if (!npz && specs.length !== 1) {
    throw new BadRequestError(`an .npy file holds one array, but the model has ${specs.length} inputs (${list(specs.map((s) => s.name))}); give an .npz with one array per input`);
  }
  let rows: number | undefined;
  for (const spec of specs) {
    const given = asked?.[spec.name];
    if (Array.isArray(given) && given.length !== 1) throw new BadRequestError(`input '${spec.name}' can be fed by one array only`);
    const name = (Array.isArray(given) ? given[0] : given) ?? (npz ? (arrays.some((a) => a.name === spec.name) || arrays.length !== 1 ? spec.name : arrays[0]!.name) : arrays[0]!.name);
    const array = arrays.find((a) => a.name === name);
    if (!array) throw new BadRequestError(`${where} has no array '${name}' for input '${spec.name}'; its arrays are ${list(arrays.map((a) => a.name))}`);
    const elements = tensorMapping(spec, where);
    if (array.rowElements !== elements) {
      throw new BadRequestError(`array '${name}' has rows of shape (${array.shape.slice(1).join(', ')}) but input '${spec.name}' needs [${spec.rowShape.join(',')}] (${elements} values)`);
    }
    assertConvertible(array.element as ElementType, spec.datatype, name, spec.name);
    if (rows !== undefined && array.rows !== rows) throw new BadRequestError(`${where}: array '${name}' has ${array.rows} rows, the others ${rows}`);
    rows = array.rows;
    mapping[spec.name] = [name];
  }
  return mapping;
}

function sameMapping(a: Record<string, string[]>, b: Record<string, string[]>): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export async function planColumnarJob(request: PlanRequest): Promise<ColumnarPlan> {
  const { s3, bucket } = request;
  const specs = inputSpecs(request.modelInputs);
  for (const name of Object.keys(request.columns ?? {})) {
    if (!specs.some((s) => s.name === name)) throw new BadRequestError(`"columns" names input '${name}', which the model does not have; its inputs are ${list(specs.map((s) => s.name))}`);
  }
  const keyList = request.inputs ? [...request.inputs] : request.input!.endsWith('/') || request.input!.includes('*') ? await listKeys(s3, bucket, request.input!) : [request.input!];
  const format = formatOf(keyList, request.format);
  const outputFormat = request.outputFormat ?? (format === 'parquet' ? 'parquet' : 'jsonl');
  if (outputFormat === 'parquet') {
    for (const o of request.modelOutputs) {
      if (!['FP32', 'FP64', 'INT32', 'INT64', 'BOOL', 'INT8', 'UINT8', 'INT16', 'UINT16'].includes(o.datatype)) {
        throw new BadRequestError(`output '${o.name}' is ${o.datatype}, which a Parquet result cannot hold; ask for output_format "jsonl"`);
      }
    }
  }
  if (format !== 'parquet' && request.keyColumns && request.keyColumns.length > 0) {
    throw new BadRequestError('key_columns apply to Parquet input; NumPy rows are identified by their number');
  }
  const heads: InputObject[] = await Promise.all(keyList.map((key) => headInput(s3, bucket, key)));
  let mapping: Record<string, string[]> | undefined;
  let keyColumns: string[] = [...(request.keyColumns ?? [])];
  const files: FileInfo[] = [];
  for (const head of heads) {
    const ref: ObjectRef = { bucket, key: head.key, etag: head.etag, size: head.size };
    const where = `s3://${bucket}/${head.key}`;
    let fileMapping: Record<string, string[]>;
    if (format === 'parquet') {
      const file = await readParquetFile(s3, ref);
      // By default the output keeps an `id` column when the input has one (and it feeds no input).
      if (request.keyColumns === undefined && files.length === 0 && file.keyTypes.has('id') && !(request.columns && Object.values(request.columns).flat().includes('id'))) keyColumns = ['id'];
      fileMapping = mapParquet(file, where, specs, request.columns, keyColumns);
      files.push({ ref, units: rowGroupUnits(file) });
    } else {
      const arrays = format === 'npy' ? [await readNpy(s3, ref, head.key)] : await readNpz(s3, ref);
      fileMapping = mapNumpy(arrays, where, specs, request.columns, format === 'npz');
      const used = arrays.filter((a) => Object.values(fileMapping).flat().includes(a.name));
      files.push({ ref, units: [], npyRows: used[0]!.rows, npyRowBytes: used.reduce((n, a) => n + a.rowBytes, 0) });
      if (format === 'npy') fileMapping = { [specs[0]!.name]: ['array'] };
    }
    if (mapping && !sameMapping(mapping, fileMapping)) throw new BadRequestError(`${where} maps its columns to the model's inputs differently from the first file`);
    mapping = fileMapping;
  }
  const bytes = heads.reduce((n, h) => n + h.size, 0);
  const shardBytes = Math.max(request.shardBytes, Math.ceil(bytes / MAX_SHARDS));
  const shards: PlannedShard[] = [];
  let rows = 0;
  files.forEach((file, index) => {
    if (file.npyRows !== undefined) {
      const perShard = Math.max(1, Math.floor(shardBytes / Math.max(1, file.npyRowBytes!)));
      for (let start = 0; start < file.npyRows; start += perShard) {
        const end = Math.min(file.npyRows, start + perShard);
        shards.push({ shard: shards.length, file: index, start, end, rows: end - start });
      }
      rows += file.npyRows;
      return;
    }
    for (let start = 0; start < file.units.length; ) {
      let end = start + 1;
      let size = file.units[start]!.bytes;
      while (end < file.units.length && size + file.units[end]!.bytes <= shardBytes) size += file.units[end++]!.bytes;
      const shardRows = file.units.slice(start, end).reduce((n, u) => n + u.rows, 0);
      if (shardRows > 0) shards.push({ shard: shards.length, file: index, start, end, rows: shardRows });
      rows += shardRows;
      start = end;
    }
  });
  if (shards.length > MAX_SHARDS) throw new BadRequestError(`the input has ${shards.length} row groups of data, more than the ${MAX_SHARDS} shards a job may have; write larger row groups`);
  return { v: 1, format, outputFormat, columns: mapping!, keyColumns, files: files.map((f) => f.ref), shards, rows, bytes };
}

/** Stands for the plan's files in the job record: their total size, and one ETag over all of theirs. */
export function planInputObject(plan: ColumnarPlan, bucket: string, inputKey: string): InputObject {
  // One file keeps its own ETag: a redelivered upload event compares it with a HEAD of the key.
  if (plan.files.length === 1 && plan.files[0]!.key === inputKey) return { bucket, key: inputKey, etag: plan.files[0]!.etag, size: plan.bytes, metadata: {} };
  const etag = createHash('sha256').update(plan.files.map((f) => `${f.key}\n${f.etag}`).join('\n')).digest('hex').slice(0, 32);
  return { bucket, key: inputKey, etag: `"${etag}"`, size: plan.bytes, metadata: {} };
}

export const planKey = (job: string) => `${keys.batchPrefix(job)}plan.json`;

export async function savePlan(s3: S3Client, bucket: string, job: string, plan: ColumnarPlan): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: planKey(job), Body: JSON.stringify(plan), ContentType: 'application/json' }));
}

export async function loadPlan(s3: S3Client, bucket: string, job: string): Promise<ColumnarPlan> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: planKey(job) }));
  return JSON.parse(await out.Body!.transformToString('utf8')) as ColumnarPlan;
}

/** What a shard message carries beyond the byte-range fields every format shares. */
export function columnarMessageFields(plan: ColumnarPlan, shard: PlannedShard) {
  const file = plan.files[shard.file]!;
  return {
    key: file.key,
    etag: file.etag,
    size: file.size,
    start: shard.start,
    end: shard.end,
    rows: shard.rows,
    columns: plan.columns,
    ...(plan.keyColumns.length > 0 ? { keyColumns: plan.keyColumns } : {}),
    outputFormat: plan.outputFormat,
  };
}
