import { BadRequestError } from '../platform/errors.ts';
import type { V2Datatype } from '../v2/datatypes.ts';
import { decodeJsonExactly, decodeJsonTensorData, NeedsExactParse, type TensorData } from '../v2/codec.ts';
import { FP32_OVERFLOW, mayBeInexact, NumberText, parseJsonExact } from '../v2/json-numbers.ts';
import type { TensorMetadata } from '../v2/schemas.ts';
import type { BatchFormat } from './schemas.ts';

/**
 * Rows of a batch input. A JSONL line holds one row's named input tensors in the V2 JSON form:
 *   {"id": "a-1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784], "data": [...]}]}
 * `id` is optional and echoed in the output exactly (a number a double cannot hold, such as an integer
 * beyond 2^53, as its own digits); `datatype` and `shape` may be left out (the model's are
 * used); `shape` is the row's own, with or without the leading batch dimension of 1. A CSV line holds
 * the values of the single input of a tabular model.
 */
export interface InputSpec {
  name: string;
  datatype: V2Datatype;
  /** The model's shape without its batch dimension; -1 where a dimension is dynamic. */
  rowShape: number[];
  /** Elements per row when the row shape is fixed, else undefined (such rows are scored one at a time). */
  rowElements: number | undefined;
}

/** A row's id as echoed: a string, a number, or the digits of a number a double cannot hold. */
export type RowId = string | number | NumberText;

export interface DecodedRow {
  id?: RowId;
  tensors: { data: TensorData; shape: number[] }[];
}

/** A row that cannot be scored; carries the row's id when it had one, so its error line is findable. */
export class RowError extends BadRequestError {
  readonly id: RowId | undefined;
  constructor(message: string, id?: RowId) {
    super(message);
    this.name = 'RowError';
    this.id = id;
  }
}

export function inputSpecs(inputs: readonly TensorMetadata[]): InputSpec[] {
  return inputs.map((t) => {
    const rowShape = t.shape.slice(1);
    const fixed = rowShape.every((d) => d >= 0);
    return {
      name: t.name,
      datatype: t.datatype,
      rowShape,
      rowElements: fixed ? rowShape.reduce((a, b) => a * b, 1) : undefined,
    };
  });
}

/**
 * Why a model cannot be scored in batch at all: checked at submission, so a job is refused with a
 * clear message instead of failing in every shard.
 */
export function batchIncompatibility(inputs: readonly TensorMetadata[], format: BatchFormat): string | undefined {
  for (const t of inputs) {
    if (t.shape.length === 0) return `input '${t.name}' is a scalar; batch scoring needs a leading batch dimension`;
    const batch = t.shape[0]!;
    if (batch > 1) return `input '${t.name}' has a fixed batch dimension of ${batch}; batch scoring needs -1 (dynamic) or 1`;
    if (t.datatype === 'FP16') return `input '${t.name}' is FP16, which JSON rows cannot carry`;
  }
  if (format === 'csv') {
    if (inputs.length !== 1) return `CSV rows fit single-input models only; this model has ${inputs.length} inputs: ${inputs.map((i) => i.name).join(', ')}`;
    if (inputs[0]!.shape.slice(1).some((d) => d < 0)) return `CSV rows need a fixed row shape; input '${inputs[0]!.name}' has [${inputs[0]!.shape.join(',')}]`;
  }
  return undefined;
}

function rowShapeOf(spec: InputSpec, given: unknown): number[] {
  if (given === undefined) {
    if (spec.rowElements === undefined) throw new BadRequestError(`input '${spec.name}' needs a shape: the model's [?,${spec.rowShape.join(',')}] has dynamic dimensions`);
    return spec.rowShape;
  }
  if (!Array.isArray(given) || !given.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new BadRequestError(`input '${spec.name}': shape must be an array of non-negative integers`);
  }
  const shape = given.length === spec.rowShape.length + 1 && given[0] === 1 ? given.slice(1) : given;
  const fits = shape.length === spec.rowShape.length && spec.rowShape.every((d, i) => d < 0 || d === shape[i]);
  if (!fits) {
    throw new BadRequestError(`input '${spec.name}' has shape [${given.join(',')}] but a row of this model is [${spec.rowShape.join(',')}] (optionally with a leading 1)`);
  }
  return shape as number[];
}

/**
 * A JSONL row read as the online endpoint reads a request body (decodeJsonExactly): bare NaN and
 * ±Infinity tokens, integers beyond 2^53 exactly, a literal beyond the range (1e400) refused.
 */
export function decodeJsonlRow(line: string, specs: readonly InputSpec[]): DecodedRow {
  return decodeJsonExactly(line, undefined, (row, parsed) => decodeParsedRow(line, row, specs, parsed));
}

/** A row that starts with a numeric id, and its token. */
const LEADING_NUMERIC_ID = /^\s*\{\s*"id"\s*:\s*(-?\d[\d.eE+-]*)/;

/**
 * Whether JSON.parse's number for the row's id is the id's own value. JSON.parse keeps no digits,
 * so the id's token is read where rows put it, first: at most 15 significant digits (no rounding),
 * and no later key that could be another id (a duplicate key wins in JSON.parse; an escaped one is
 * not looked for, so any `\u` escape after it counts). Otherwise the row is parsed exactly.
 */
function plainIdIsExact(line: string, id: number): boolean {
  const match = LEADING_NUMERIC_ID.exec(line);
  if (!match || mayBeInexact(match[1]!) || Number(match[1]) !== id) return false;
  return line.indexOf('"id"', match[0].length) === -1 && line.indexOf('\\u', match[0].length) === -1;
}

function decodeParsedRow(line: string, row: unknown, specs: readonly InputSpec[], parsed: 'plain' | 'exact'): DecodedRow {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new BadRequestError('a row must be a JSON object with "inputs"');
  const { id, inputs } = row as { id?: unknown; inputs?: unknown };
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number' && !(id instanceof NumberText)) throw new BadRequestError('"id" must be a string or a number');
  if (typeof id === 'number' && parsed === 'plain' && !plainIdIsExact(line, id)) throw new NeedsExactParse();
  try {
    return { ...(id !== undefined ? { id } : {}), tensors: decodeInputs(inputs, specs, parsed) };
  } catch (error) {
    if (error instanceof NeedsExactParse) throw error;
    throw new RowError((error as Error).message, id);
  }
}

function decodeInputs(inputs: unknown, specs: readonly InputSpec[], parsed: 'plain' | 'exact'): DecodedRow['tensors'] {
  if (!Array.isArray(inputs)) throw new BadRequestError('"inputs" must be an array of V2 tensors');
  const byName = new Map<string, Record<string, unknown>>();
  for (const t of inputs) {
    if (typeof t !== 'object' || t === null || typeof (t as { name?: unknown }).name !== 'string') {
      throw new BadRequestError('every element of "inputs" must be an object with a "name"');
    }
    const tensor = t as Record<string, unknown> & { name: string };
    if (byName.has(tensor.name)) throw new BadRequestError(`input '${tensor.name}' appears more than once`);
    byName.set(tensor.name, tensor);
  }
  for (const n of byName.keys()) {
    if (!specs.some((s) => s.name === n)) throw new BadRequestError(`unknown input '${n}'; the model has inputs: ${specs.map((s) => s.name).join(', ')}`);
  }
  return specs.map((spec) => {
    const t = byName.get(spec.name);
    if (!t) throw new BadRequestError(`missing input '${spec.name}'`);
    if (t.datatype !== undefined && t.datatype !== spec.datatype) {
      throw new BadRequestError(`input '${spec.name}' has datatype ${String(t.datatype)} but the model expects ${spec.datatype}`);
    }
    const shape = rowShapeOf(spec, t.shape);
    return { data: decodeJsonTensorData(spec.name, spec.datatype, t.data, shape, { nesting: 'any', parsed }), shape };
  });
}

export function decodeCsvRow(line: string, spec: InputSpec): DecodedRow {
  const cells = line.split(',');
  const values = cells.map((cell, i): unknown => {
    const text = cell.trim();
    if (spec.datatype === 'BYTES') return text;
    if (spec.datatype === 'BOOL') {
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      throw new BadRequestError(`column ${i + 1} is ${JSON.stringify(text)}, expected true/false or 1/0`);
    }
    if (text === '') throw new BadRequestError(`column ${i + 1} is empty`);
    const value = Number(text);
    if (Number.isNaN(value) && text !== 'NaN') throw new BadRequestError(`column ${i + 1} is ${JSON.stringify(text.slice(0, 40))}, not a number`);
    // A double cannot say what 1e400 or an integer beyond 2^53 is: the text goes on, to be read
    // exactly for its datatype or refused (never taken as Infinity or a rounded integer).
    const inexact = value === Infinity || value === -Infinity ? !/^[+-]?Infinity$/.test(text) : Number.isInteger(value) && !Number.isSafeInteger(value);
    return inexact ? new NumberText(text) : value;
  });
  const count = spec.rowElements!;
  if (values.length !== count) throw new BadRequestError(`row has ${values.length} columns but input '${spec.name}' needs ${count}`);
  return { tensors: [{ data: decodeJsonTensorData(spec.name, spec.datatype, values, spec.rowShape), shape: spec.rowShape }] };
}

export function decodeRow(line: string, format: BatchFormat, specs: readonly InputSpec[]): DecodedRow {
  return format === 'csv' ? decodeCsvRow(line, specs[0]!) : decodeJsonlRow(line, specs);
}

/** Rows' data for one input, end to end, in the element type onnxruntime wants for the batch tensor. */
export function concatRows(parts: readonly TensorData[]): TensorData {
  const first = parts[0]!;
  if (Array.isArray(first)) return (parts as string[][]).flat();
  const total = parts.reduce((n, p) => n + p.length, 0);
  const Ctor = (first as unknown as { constructor: new (n: number) => Exclude<TensorData, string[]> }).constructor;
  const out = new Ctor(total);
  let at = 0;
  for (const p of parts) {
    (out as unknown as { set(a: ArrayLike<unknown>, o: number): void }).set(p as ArrayLike<unknown>, at);
    at += p.length;
  }
  return out;
}

/**
 * A JSONL row written straight into the batch's tensors at `slot`: the common case (FP32 or FP64
 * inputs, flat `data` arrays of plain numbers) is one typed-array `set` per input after a check that
 * every element is an in-range number. Returns the row's id holder, or undefined when the row is not
 * that simple: the caller then decodes it with decodeJsonlRow, which accepts everything it may hold
 * (nesting, bare NaN) or says exactly what is wrong.
 */
export function writeJsonlRowInto(line: string, specs: readonly InputSpec[], targets: readonly (Float32Array | Float64Array)[], slot: number): { id?: RowId } | undefined {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof row !== 'object' || row === null) return undefined;
  const { id, inputs } = row as { id?: unknown; inputs?: unknown };
  if ((id !== undefined && typeof id !== 'string' && typeof id !== 'number') || !Array.isArray(inputs) || inputs.length !== specs.length) return undefined;
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]!;
    const tensor = inputs.find((t: { name?: unknown } | null) => t?.name === spec.name) as { datatype?: unknown; shape?: unknown; data?: unknown } | undefined;
    if (!tensor || (tensor.datatype !== undefined && tensor.datatype !== spec.datatype)) return undefined;
    const data = tensor.data;
    const count = spec.rowElements!;
    if (!Array.isArray(data) || data.length !== count) return undefined;
    if (tensor.shape !== undefined) {
      const shape = tensor.shape as unknown[];
      const bare = Array.isArray(shape) && shape.length === spec.rowShape.length + 1 && shape[0] === 1 ? shape.slice(1) : shape;
      if (!Array.isArray(bare) || bare.length !== spec.rowShape.length || !spec.rowShape.every((d, k) => d === bare[k])) return undefined;
    }
    const limit = spec.datatype === 'FP32' ? FP32_OVERFLOW : Infinity;
    for (let k = 0; k < count; k++) {
      const v: unknown = data[k];
      if (typeof v !== 'number' || !(v < limit && v > -limit)) return undefined;
    }
    targets[i]!.set(data as number[], slot * count);
  }
  if (id === undefined) return {};
  // A numeric id JSON.parse may have rounded is read again from the text, exactly.
  if (typeof id === 'number' && !plainIdIsExact(line, id)) return { id: (parseJsonExact(line) as { id: number | NumberText }).id };
  return { id };
}
