import ort from 'onnxruntime-node';
import { BadRequestError } from '../platform/errors.ts';
import type { LoadedModel } from '../sessions/model-sessions.ts';
import { DATATYPES, v2DatatypeOf, type V2Datatype } from '../v2/datatypes.ts';
import { jsonDataText, type TensorData } from '../v2/codec.ts';
import { NumberText, writeAscii, writeFloat32Text } from '../v2/json-numbers.ts';
import { concatRows, decodeRow, inputSpecs, RowError, writeJsonlRowInto, type DecodedRow, type InputSpec, type RowId } from './rows.ts';
import type { BatchFormat } from './schemas.ts';
import { writeJsonlRowBytes } from './jsonl-bytes.ts';
import { JsonlWriter } from './output.ts';

/**
 * The scoring core both workers run (the Lambda and the GPU container): rows in, one output line per
 * row out, in row order. Valid rows are grouped into tensors of the batch size; a row that cannot be
 * decoded, or that onnxruntime refuses, becomes an error line and never fails its neighbours.
 */
export interface ScoreOptions {
  format: BatchFormat;
  batchSize: number;
  outputs?: readonly string[] | undefined;
  /** Checked between batches: a worker told to stop gives up the shard instead of finishing it. */
  signal?: AbortSignal | undefined;
}

export interface ScoredRows {
  /** JSONL, one line per row in row order: `{"row":<index in shard>,"id"?,"outputs":[...]}` or `{"row":...,"error":"..."}`. */
  body: Buffer;
  errorLines: string[];
  rows: number;
  failed: number;
}

export class ShardAbortedError extends Error {
  constructor() {
    super('shard scoring was stopped before it finished');
    this.name = 'ShardAbortedError';
  }
}

interface Pending {
  index: number;
  row: DecodedRow;
  /** Where the row sits in the batch tensors, when rows are written into them as they are decoded. */
  slot?: number;
}

function idPart(row: { id?: RowId } | undefined): string {
  if (row?.id === undefined) return '';
  // A NumberText id is a JSON number token as the row held it.
  return `,"id":${row.id instanceof NumberText ? row.id.source : JSON.stringify(row.id)}`;
}

export function errorLine(index: number, message: string, row?: { id?: RowId }): string {
  return `{"row":${index}${idPart(row)},"error":${JSON.stringify(message)}}`;
}

/**
 * A shard's lines: an array of strings, or ShardLines (input.ts), which decodes each line when it is
 * read and also offers each line's bytes (`source`, `startOf`, `endOf`) to readers that take bytes.
 */
export interface RowLines {
  readonly length: number;
  at(index: number): string | undefined;
  readonly source?: Uint8Array;
  startOf?(index: number): number;
  endOf?(index: number): number;
}

export async function scoreRows(model: LoadedModel, lines: RowLines, options: ScoreOptions): Promise<ScoredRows> {
  const specs = inputSpecs([...model.inputs.values()]);
  const outputNames = options.outputs ? [...options.outputs] : [...model.outputs.keys()];
  for (const name of outputNames) {
    if (!model.outputs.has(name)) throw new BadRequestError(`unknown output '${name}'; the model has: ${[...model.outputs.keys()].join(', ')}`);
  }
  const fixedBatchOfOne = [...model.inputs.values()].some((t) => t.shape[0] === 1);
  const batchable = !fixedBatchOfOne && specs.every((s) => s.rowElements !== undefined);
  const batchSize = batchable ? options.batchSize : 1;
  // JSONL rows of FP32/FP64 models go straight into one tensor per input, allocated once per shard.
  const buffered = batchable && options.format === 'jsonl' && specs.every((s) => s.datatype === 'FP32' || s.datatype === 'FP64');
  const buffers = buffered ? specs.map((s) => new (s.datatype === 'FP32' ? Float32Array : Float64Array)(batchSize * s.rowElements!)) : undefined;

  // Lines go into the body in row order as soon as every row before them has one: a row that fails
  // to decode is answered while the rows before it wait in their batch.
  const body = new JsonlWriter(lines.length * 256);
  const waiting = new Map<number, string>();
  let next = 0;
  const writeWaiting = () => {
    for (next++; waiting.size > 0 && waiting.has(next); next++) {
      body.add(waiting.get(next)!);
      waiting.delete(next);
    }
  };
  const place = (index: number, line: string) => {
    if (index !== next) waiting.set(index, line);
    else {
      body.add(line);
      writeWaiting();
    }
  };
  // A result written in place when its turn has come (the common case), as a string while it waits.
  const placeResult: PlaceResult = (index, id, outputs, r) => {
    if (index !== next) waiting.set(index, resultLine(index, id, outputs, r));
    else {
      addResultLine(body, index, id, outputs, r);
      writeWaiting();
    }
  };
  const errorLines: string[] = [];
  let failed = 0;
  const fail = (index: number, message: string, row?: DecodedRow) => {
    const line = errorLine(index, message, row);
    place(index, line);
    errorLines.push(line);
    failed++;
  };

  const runGroup = async (group: Pending[]) => {
    if (options.signal?.aborted) throw new ShardAbortedError();
    try {
      const results = await model.session.run(buffers ? bufferedFeeds(specs, buffers, group) : feedsOf(specs, group), outputNames);
      writeOutputs(placeResult, group, outputNames, results);
    } catch (error) {
      if (error instanceof ShardAbortedError || group.length === 1) {
        if (error instanceof ShardAbortedError) throw error;
        fail(group[0]!.index, `model refused the row: ${(error as Error).message}`, group[0]!.row);
        return;
      }
      // One bad row fails the whole tensor: score the group row by row to find it.
      for (const one of group) await runGroup([one]);
    }
  };

  let group: Pending[] = [];
  // Lines that come with their bytes are read from the bytes: no string per line on the common path.
  const bytes = buffers && lines.startOf && lines.endOf ? lines.source : undefined;
  for (let index = 0; index < lines.length; index++) {
    let row: DecodedRow;
    const slot = group.length;
    const written = buffers ? (bytes ? writeJsonlRowBytes(bytes, lines.startOf!(index), lines.endOf!(index), specs, buffers, slot) : writeJsonlRowInto(lines.at(index)!, specs, buffers, slot)) : undefined;
    if (written) {
      group.push({ index, row: { ...written, tensors: [] }, slot });
    } else {
      try {
        row = decodeRow(lines.at(index)!, options.format, specs);
      } catch (error) {
        fail(index, (error as Error).message, error instanceof RowError && error.id !== undefined ? { id: error.id, tensors: [] } : undefined);
        continue;
      }
      // A row the fast path left to the full decoder still joins the batch tensors.
      buffers?.forEach((b, i) => b.set(row.tensors[i]!.data as Float32Array, slot * specs[i]!.rowElements!));
      group.push({ index, row, ...(buffers ? { slot } : {}) });
    }
    if (group.length >= batchSize) {
      await runGroup(group);
      group = [];
    }
  }
  if (group.length > 0) await runGroup(group);
  errorLines.sort((a, b) => rowOf(a) - rowOf(b));
  return { body: body.toBuffer(), errorLines, rows: lines.length, failed };
}

/** The row index a line starts with; lines are written as `{"row":<n>,...` by this module only. */
export function rowOf(line: string): number {
  return Number(line.slice(7, line.indexOf(',', 7)));
}

function feedsOf(specs: readonly InputSpec[], group: readonly Pending[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  specs.forEach((spec, i) => {
    const parts = group.map((p) => p.row.tensors[i]!.data);
    const data: TensorData = parts.length === 1 ? parts[0]! : concatRows(parts);
    const rowShape = group[0]!.row.tensors[i]!.shape;
    feeds[spec.name] = new ort.Tensor(DATATYPES[spec.datatype].ort, data as never, [group.length, ...rowShape]);
  });
  return feeds;
}

/** The batch tensors over the rows' slots: contiguous for a batch, one slot when a row is retried alone. */
function bufferedFeeds(specs: readonly InputSpec[], buffers: readonly (Float32Array | Float64Array)[], group: readonly Pending[]): Record<string, ort.Tensor> {
  const first = group[0]!.slot!;
  const feeds: Record<string, ort.Tensor> = {};
  specs.forEach((spec, i) => {
    const e = spec.rowElements!;
    feeds[spec.name] = new ort.Tensor(DATATYPES[spec.datatype].ort, buffers[i]!.subarray(first * e, (first + group.length) * e), [group.length, ...spec.rowShape]);
  });
  return feeds;
}

type PlaceResult = (index: number, id: RowId | undefined, outputs: readonly ResultOutput[], r: number) => void;

function writeOutputs(place: PlaceResult, group: readonly Pending[], names: readonly string[], results: ort.InferenceSession.OnnxValueMapType): void {
  const outputs = names.map((name) => {
    const tensor = results[name] as ort.Tensor;
    const datatype = v2DatatypeOf(tensor.type);
    if (!datatype) throw new Error(`output '${name}' has type ${tensor.type}, which the V2 protocol cannot carry`);
    if (tensor.dims[0] !== group.length) {
      throw new Error(`output '${name}' has ${tensor.dims[0]} rows for a batch of ${group.length}: the model does not batch along its first dimension`);
    }
    return resultOutput(name, datatype, tensor.dims.slice(1), tensor.data as TensorData);
  });
  group.forEach((p, r) => place(p.index, p.row.id, outputs, r));
}

/** One output of a batch, ready to be written row by row into result lines. */
export interface ResultOutput {
  datatype: V2Datatype;
  perRow: number;
  data: TensorData;
  /** A row's V2 tensor up to its values: `{"name":..,"datatype":..,"shape":[1,..],"data":[`. */
  head: string;
  /** The head in UTF-8. */
  headBytes: Buffer;
}

export function resultOutput(name: string, datatype: V2Datatype, rowShape: readonly number[], data: TensorData): ResultOutput {
  const perRow = rowShape.reduce((a, b) => a * b, 1);
  const head = `{"name":${JSON.stringify(name)},"datatype":${JSON.stringify(datatype)},"shape":${JSON.stringify([1, ...rowShape])},"data":[`;
  return { datatype, perRow, data, head, headBytes: Buffer.from(head, 'utf8') };
}

/** Bytes a float32's text may take: a sign and 21 digits (below 1e21 a whole number is written out). */
const FLOAT32_TEXT_BYTES = 22;

/**
 * resultLine's line, written into `body` without building its string, where every output is a
 * Float32Array (a model's usual answer); otherwise through resultLine. Same bytes either way.
 */
export function addResultLine(body: JsonlWriter, index: number, id: RowId | undefined, outputs: readonly ResultOutput[], r: number): void {
  const idText = idPart({ id });
  // `{"row":` and up to 16 digits, `,"outputs":[`, `]}`, the newline (38), and the id part's UTF-8.
  let maxBytes = 38 + idText.length * 3;
  for (const output of outputs) {
    if (output.datatype !== 'FP32' || !(output.data instanceof Float32Array)) {
      body.add(resultLine(index, id, outputs, r));
      return;
    }
    maxBytes += output.headBytes.length + 3 + output.perRow * (FLOAT32_TEXT_BYTES + 1);
  }
  body.addWith(maxBytes, (out, start) => {
    let at = writeAscii(out, start, `{"row":${index}`);
    if (idText !== '') at += out.write(idText, at, 'utf8');
    at = writeAscii(out, at, ',"outputs":[');
    for (let t = 0; t < outputs.length; t++) {
      const { perRow, headBytes } = outputs[t]!;
      const data = outputs[t]!.data as Float32Array;
      if (t > 0) out[at++] = 0x2c;
      for (let i = 0; i < headBytes.length; i++) out[at++] = headBytes[i]!;
      for (let i = r * perRow, end = (r + 1) * perRow; i < end; i++) {
        if (i > r * perRow) out[at++] = 0x2c;
        at = writeFloat32Text(out, at, data[i]!);
      }
      out[at++] = 0x5d;
      out[at++] = 0x7d;
    }
    out[at++] = 0x5d;
    out[at++] = 0x7d;
    return at;
  });
}

/**
 * Row `r` of a batch's outputs as a result line, `{"row":<index>,"id"?,"outputs":[V2 tensors]}`, its
 * values written as the online answer writes them (jsonDataText: exact, NaN and the infinities as
 * tokens). Every format's JSONL result is written here.
 */
export function resultLine(index: number, id: RowId | undefined, outputs: readonly ResultOutput[], r: number): string {
  let line = `{"row":${index}${idPart({ id })},"outputs":[`;
  for (let t = 0; t < outputs.length; t++) {
    const { datatype, perRow, head, data } = outputs[t]!;
    line += `${t > 0 ? ',' : ''}${head}${jsonDataText(datatype, data, r * perRow, (r + 1) * perRow)}]}`;
  }
  return `${line}]}`;
}
