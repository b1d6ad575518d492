import type { S3Client } from '@aws-sdk/client-s3';
import ort from 'onnxruntime-node';
import { BadRequestError } from '../../platform/errors.ts';
import { keys } from '../../artifacts/keys.ts';
import type { LoadedModel } from '../../sessions/model-sessions.ts';
import { DATATYPES, v2DatatypeOf, type V2Datatype } from '../../v2/datatypes.ts';
import type { TensorData } from '../../v2/codec.ts';
import { inputSpecs, type InputSpec, type RowId } from '../rows.ts';
import { NumberText } from '../../v2/json-numbers.ts';
import { addResultLine, errorLine, resultOutput, ShardAbortedError } from '../scoring.ts';
import type { ShardMessage } from '../schemas.ts';
import { JsonlWriter } from '../output.ts';
import { ELEMENT_ARRAYS, elementOf, toElements, type NumericArray } from './elements.ts';
import { readNpy, readNpyRows, readNpz } from './npy.ts';
import { readKeyColumns, readParquetColumn, readParquetFile, type KeyType } from './parquet.ts';
import { writeParquetResult, type OutputColumn } from './parquet-result.ts';
import type { OutputFormat } from './plan.ts';
import type { ObjectRef } from './ranged.ts';
import { ScratchArena } from './scratch.ts';

/**
 * Scoring a columnar shard: its rows arrive as one typed array per input (from column chunks or
 * `.npy` bytes, in memory the shard borrows from a ScratchArena), each batch's tensor is a
 * `subarray` view of it (or, for a narrower element type such as uint8 pixels, one `set` into a
 * batch tensor reused for the whole shard), and each output is gathered into one typed array with
 * `set`: no per-row parsing and no per-value loop where a view or a copy does.
 */
export interface ShardColumns {
  rows: number;
  /**
   * One per model input, in `inputSpecs` order: rows × rowElements values, of the input's element
   * type or of one that widens to it exactly (checked at submission; converted batch by batch).
   */
  inputs: NumericArray[];
  /** Row (within the shard) → why it cannot be scored (a null, a list of the wrong length). */
  rowErrors: Map<number, string>;
  keys: { name: string; type: KeyType; values: unknown[] }[];
}

export type ColumnarShardMessage = ShardMessage & { columns: Record<string, string[]>; keyColumns?: string[]; outputFormat?: OutputFormat; rows?: number };

function interleave(columns: readonly NumericArray[], rows: number, datatype: V2Datatype): NumericArray {
  // A tabular row is one value from each column: a transpose, which no typed-array copy can do.
  const out = new ELEMENT_ARRAYS[elementOf(datatype)!](rows * columns.length) as Float64Array;
  const k = columns.length;
  columns.forEach((column, c) => {
    const values = toElements(column, datatype) as Float64Array;
    for (let r = 0; r < rows; r++) out[r * k + c] = values[r]!;
  });
  return out;
}

export async function readColumnarShard(s3: S3Client, message: ColumnarShardMessage, specs: readonly InputSpec[], arena?: ScratchArena): Promise<ShardColumns> {
  const object: ObjectRef = { bucket: message.bucket, key: message.key, etag: message.etag, size: message.size };
  if (message.format === 'parquet') {
    const file = await readParquetFile(s3, object);
    if (message.end > file.metadata.row_groups.length) throw new BadRequestError(`s3://${object.bucket}/${object.key} has ${file.metadata.row_groups.length} row groups; the shard needs ${message.end}`);
    const rowErrors = new Map<number, string>();
    let rows = 0;
    const inputs = await Promise.all(
      specs.map(async (spec) => {
        const names = message.columns[spec.name] ?? [];
        const columns = names.map((name) => {
          const column = file.columns.get(name);
          if (!column) throw new BadRequestError(`column '${name}' (for input '${spec.name}') is not in s3://${object.bucket}/${object.key}`);
          return column;
        });
        const perRow = columns.length === 1 ? spec.rowElements! : 1;
        // A tensor column is decoded straight into the input's element type (checked exact at submission).
        const target = columns.length === 1 ? ELEMENT_ARRAYS[elementOf(spec.datatype)!] : undefined;
        const read = await Promise.all(columns.map((c) => readParquetColumn(s3, object, file, c, message.start, message.end, perRow, target, arena)));
        for (const r of read) for (const [row, why] of r.rowErrors) if (!rowErrors.has(row)) rowErrors.set(row, why);
        rows = read[0]!.values.length / perRow;
        return read.length === 1 ? read[0]!.values : interleave(read.map((r) => r.values), rows, spec.datatype);
      }),
    );
    const keyNames = message.keyColumns ?? [];
    const keyValues = await readKeyColumns(s3, object, file, keyNames, message.start, message.end);
    return { rows, inputs, rowErrors, keys: keyNames.map((name) => ({ name, type: file.keyTypes.get(name)!, values: keyValues.get(name)! })) };
  }
  const arrays = message.format === 'npy' ? [await readNpy(s3, object, 'array')] : await readNpz(s3, object);
  const inputs = await Promise.all(
    specs.map(async (spec) => {
      const name = message.format === 'npy' ? 'array' : message.columns[spec.name]![0]!;
      const array = arrays.find((a) => a.name === name);
      if (!array) throw new BadRequestError(`s3://${object.bucket}/${object.key} has no array '${name}'`);
      if (array.rowElements !== spec.rowElements || message.end > array.rows) throw new BadRequestError(`array '${name}' no longer has the shape it had at submission`);
      return readNpyRows(s3, object, array, message.start, message.end, arena);
    }),
  );
  return { rows: message.end - message.start, inputs, rowErrors: new Map(), keys: [] };
}

export interface ScoredColumns {
  outputs: { name: string; datatype: V2Datatype; rowShape: number[]; perRow: number; data: NumericArray }[];
  /** Row → error message, for rows that could not be read or that the model refused. */
  failed: Map<number, string>;
}

function outputArray(tensor: ort.Tensor, rows: number, perRow: number): NumericArray {
  const Ctor = (tensor.data as NumericArray).constructor as new (n: number) => NumericArray;
  return new Ctor(rows * perRow);
}

export async function scoreColumns(model: LoadedModel, columns: ShardColumns, options: { batchSize: number; outputs?: readonly string[] | undefined; signal?: AbortSignal | undefined }): Promise<ScoredColumns> {
  const specs = inputSpecs([...model.inputs.values()]);
  const names = options.outputs ? [...options.outputs] : [...model.outputs.keys()];
  for (const name of names) {
    if (!model.outputs.has(name)) throw new BadRequestError(`unknown output '${name}'; the model has: ${[...model.outputs.keys()].join(', ')}`);
  }
  const failed = new Map(columns.rowErrors);
  const { rows } = columns;
  const results: (ScoredColumns['outputs'][number] | undefined)[] = names.map(() => undefined);
  // An input already of the tensor's element type is fed as views; a narrower one is widened batch
  // by batch into one tensor buffer, which stays in cache (a whole shard widened at once does not).
  const batchBuffers = specs.map((spec, i) => {
    const Target = ELEMENT_ARRAYS[elementOf(spec.datatype)!];
    return columns.inputs[i] instanceof Target ? undefined : new Target(Math.min(options.batchSize, Math.max(rows, 1)) * spec.rowElements!);
  });
  const feeds = (from: number, to: number) =>
    Object.fromEntries(
      specs.map((spec, i) => {
        const e = spec.rowElements!;
        const source = columns.inputs[i]!.subarray(from * e, to * e);
        const buffer = batchBuffers[i];
        if (buffer) (buffer as Float64Array).set(source as Float64Array);
        const data = buffer ? buffer.subarray(0, (to - from) * e) : source;
        return [spec.name, new ort.Tensor(DATATYPES[spec.datatype].ort, data as never, [to - from, ...spec.rowShape])];
      }),
    );
  const place = (out: ort.InferenceSession.OnnxValueMapType, from: number, to: number) => {
    names.forEach((name, o) => {
      const tensor = out[name] as ort.Tensor;
      const n = to - from;
      if (tensor.dims[0] !== n) throw new Error(`output '${name}' has ${tensor.dims[0]} rows for a batch of ${n}: the model does not batch along its first dimension`);
      const perRow = tensor.size / n;
      let result = results[o];
      if (!result) {
        const datatype = v2DatatypeOf(tensor.type);
        if (!datatype || datatype === 'BYTES') throw new Error(`output '${name}' has type ${tensor.type}, which a columnar result cannot carry`);
        result = { name, datatype, rowShape: tensor.dims.slice(1) as number[], perRow, data: outputArray(tensor, rows, perRow) };
        results[o] = result;
      }
      if (perRow !== result.perRow) throw new Error(`output '${name}' has ${perRow} values a row in one batch and ${result.perRow} in another`);
      (result.data as Float64Array).set(tensor.data as Float64Array, from * perRow);
    });
  };
  const run = async (from: number, to: number): Promise<void> => {
    if (options.signal?.aborted) throw new ShardAbortedError();
    try {
      place(await model.session.run(feeds(from, to), names), from, to);
    } catch (error) {
      if (error instanceof ShardAbortedError) throw error;
      if (to - from === 1) {
        failed.set(from, `model refused the row: ${(error as Error).message}`);
        return;
      }
      // One bad row fails the whole tensor: score the batch row by row to find it.
      for (let r = from; r < to; r++) await run(r, r + 1);
    }
  };
  for (let from = 0; from < rows; from += options.batchSize) await run(from, Math.min(rows, from + options.batchSize));
  if (rows > 0 && results.some((r) => !r)) throw new Error('no row of the shard could be scored, so its outputs have no shape');
  return { outputs: results.filter((r) => r !== undefined), failed };
}

function keyId(value: unknown): RowId | undefined {
  // An INT64 key a double cannot hold is echoed as its digits, still a JSON number.
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : new NumberText(value.toString());
  if (typeof value === 'string' || typeof value === 'number') return value;
  return undefined;
}

export interface ColumnarShardResult {
  rows: number;
  failed: number;
  outputKey: string;
  body: Uint8Array;
  contentType: string;
  errorLines: string[];
}

export const parquetShardKey = (job: string, shard: number) => `${keys.batchPrefix(job)}shards/${String(shard).padStart(6, '0')}.parquet`;

/** Reads, scores and renders one columnar shard: its output object's body and its error lines. */
export async function scoreColumnarShard(s3: S3Client, model: LoadedModel, message: ColumnarShardMessage, signal?: AbortSignal): Promise<ColumnarShardResult> {
  const arena = new ScratchArena();
  try {
    return await scoreColumnarShardIn(arena, s3, model, message, signal);
  } finally {
    arena.release();
  }
}

async function scoreColumnarShardIn(arena: ScratchArena, s3: S3Client, model: LoadedModel, message: ColumnarShardMessage, signal?: AbortSignal): Promise<ColumnarShardResult> {
  const specs = inputSpecs([...model.inputs.values()]);
  const columns = await readColumnarShard(s3, message, specs, arena);
  if (message.rows !== undefined && columns.rows !== message.rows) throw new Error(`the shard has ${columns.rows} rows; it had ${message.rows} at planning`);
  const scored = await scoreColumns(model, columns, { batchSize: message.batchSize, outputs: message.outputs, signal });
  const idKey = columns.keys[0];
  const idOf = (r: number) => {
    const id = idKey ? keyId(idKey.values[r]) : undefined;
    return id === undefined ? undefined : { id };
  };
  const errorLines = [...scored.failed.keys()].sort((a, b) => a - b).map((r) => errorLine(r, scored.failed.get(r)!, idOf(r)));
  if (message.outputFormat === 'parquet') {
    const outputs: OutputColumn[] = scored.outputs.map((o) => {
      const element = ({ FP32: 'f4', FP64: 'f8', INT32: 'i4', INT64: 'i8', BOOL: 'b1' } as const)[o.datatype as 'FP32'];
      // Narrow integer outputs are widened to INT32, exactly.
      return element ? { name: o.name, element, perRow: o.perRow, data: o.data } : { name: o.name, element: 'i4', perRow: o.perRow, data: Int32Array.from(o.data as Int32Array) };
    });
    const body = writeParquetResult(columns.rows, columns.keys, outputs, new Set(scored.failed.keys()));
    return { rows: columns.rows, failed: scored.failed.size, outputKey: parquetShardKey(message.job, message.shard), body, contentType: 'application/vnd.apache.parquet', errorLines };
  }
  const body = new JsonlWriter(columns.rows * 256);
  const outputs = scored.outputs.map((o) => resultOutput(o.name, o.datatype, o.rowShape, o.data as TensorData));
  for (let r = 0; r < columns.rows; r++) {
    const why = scored.failed.get(r);
    if (why !== undefined) body.add(errorLine(r, why, idOf(r)));
    else addResultLine(body, r, idOf(r)?.id, outputs, r);
  }
  return { rows: columns.rows, failed: scored.failed.size, outputKey: keys.batchShardOutput(message.job, message.shard), body: body.toBuffer(), contentType: 'application/x-ndjson', errorLines };
}
