import type { Tensor } from 'onnxruntime-node';
import { BadRequestError } from '../platform/errors.ts';
import { DATATYPES, isV2Datatype, typedArrayFromBytes, type V2Datatype } from './datatypes.ts';
import { exactInteger, float16Text, float32Text, float64Text, Float16, FP16_OVERFLOW, FP32_OVERFLOW, NumberText, parseJsonExact } from './json-numbers.ts';
import { inferRequestHeaderSchema, type InferRequestHeader } from './schemas.ts';
import { liftDataArrays } from './data-arrays.ts';

/** The binary tensor data extension's header naming the length of the JSON part of a body. */
export const INFERENCE_HEADER_CONTENT_LENGTH = 'inference-header-content-length';

export type TensorData = Tensor.DataType | string[];

export interface RequestTensor {
  name: string;
  datatype: V2Datatype;
  shape: number[];
  data: TensorData;
}

export interface RequestedOutput {
  name: string;
  binary: boolean;
  /** The output's parameters other than binary_data, as sent (e.g. Triton's `classification`). */
  parameters?: Record<string, unknown> | undefined;
}

export interface DecodedInferRequest {
  id?: string | undefined;
  parameters?: Record<string, unknown> | undefined;
  inputs: RequestTensor[];
  /** Undefined: every output the model has. */
  outputs?: RequestedOutput[] | undefined;
  binaryDataOutput: boolean;
}

export interface ResponseTensor {
  name: string;
  datatype: V2Datatype;
  shape: number[];
  data: TensorData;
}

export interface InferResponse {
  model_name: string;
  model_version: string;
  id?: string | undefined;
  parameters?: Record<string, unknown> | undefined;
  outputs: ResponseTensor[];
}

export interface EncodedBody {
  body: Buffer;
  /** Set when the body carries binary tensors after its JSON header. */
  jsonLength?: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** An Inference-Header-Content-Length value as a number; undefined when it is not a non-negative integer. */
export function parseHeaderLength(value: string): number | undefined {
  return /^\d+$/.test(value.trim()) ? Number(value) : undefined;
}

/**
 * Decodes a V2 infer request body. `headerLength` is the value of Inference-Header-Content-Length
 * when the client sent one (binary extension); without it the whole body is JSON. A text body may be
 * passed as the string it arrived as, which saves a round trip through bytes.
 */
export function decodeInferRequest(input: Uint8Array | string, headerLength?: string): DecodedInferRequest {
  if (typeof input === 'string' && headerLength === undefined) return decodeText(input, new Uint8Array(0));
  const body = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  let jsonEnd = body.length;
  if (headerLength !== undefined) {
    const parsed = parseHeaderLength(headerLength);
    if (parsed === undefined) {
      throw new BadRequestError(`Inference-Header-Content-Length must be a non-negative integer, got ${JSON.stringify(headerLength)}`);
    }
    jsonEnd = parsed;
    if (jsonEnd > body.length) {
      throw new BadRequestError(`Inference-Header-Content-Length is ${jsonEnd} but the body has only ${body.length} bytes`);
    }
  }
  let text: string;
  try {
    text = utf8.decode(body.subarray(0, jsonEnd));
  } catch (cause) {
    throw new BadRequestError('request body is not valid JSON: its JSON part is not valid UTF-8', { cause });
  }
  return decodeText(text, body.subarray(jsonEnd));
}

/**
 * Raised in the fast path when a value needs the body's source text: a 64-bit integer beyond 2^53
 * (a double has rounded it) or a number beyond FP64's range such as 1e400 (a double says Infinity).
 */
export class NeedsExactParse extends Error {}

/** Below this, a body is parsed whole: lifting its data arrays out saves too little to pay for. */
const LIFT_FROM_CHARS = 512;

/**
 * The body parsed as JSON.parse parses it, with its inputs' flat numeric data arrays read apart
 * (data-arrays.ts) and put back as Float64Arrays; undefined when JSON.parse would refuse the body or
 * nothing was lifted.
 */
function parseLifted(text: string): unknown {
  const lifted = text.length >= LIFT_FROM_CHARS ? liftDataArrays(text) : undefined;
  if (!lifted) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(lifted.text);
  } catch {
    return undefined; // the whole text is as invalid: the plain path says why
  }
  const inputs = (json as { inputs: { data: unknown }[] }).inputs;
  for (const [index, values] of lifted.lifted) inputs[index]!.data = values;
  return json;
}

/**
 * Plain JSON.parse first, which is all that almost every body needs (its large data arrays read
 * apart: parseLifted); the exact parse (source text of numbers, bare NaN/Infinity tokens) only when
 * that fails or a value needs it.
 */
function decodeText(text: string, binary: Uint8Array): DecodedInferRequest {
  return decodeJsonExactly(text, 'request body', (json, parsed) => decodeHeader(validateHeader(json), binary, parsed === 'exact'), parseLifted(text));
}

/**
 * JSON text decoded as the online endpoint decodes a body (batch rows and data set lines too):
 * `decode` gets JSON.parse's value (or `parsed`, a value the caller already has from it) as 'plain',
 * and parseJsonExact's as 'exact' where JSON.parse refused the text (bare NaN and ±Infinity tokens)
 * or `decode` raised NeedsExactParse (a value JSON.parse cannot have read exactly). `subject` names
 * the text in a refusal: "<subject> is not valid JSON: ...", or "not valid JSON: ..." without one.
 */
export function decodeJsonExactly<T>(text: string, subject: string | undefined, decode: (json: unknown, parsed: 'plain' | 'exact') => T, parsed?: unknown): T {
  let json = parsed;
  if (json === undefined) {
    try {
      json = JSON.parse(text);
    } catch {
      // The exact parse reads the tokens JSON.parse refuses, and says what is wrong with anything else.
      return decode(parseExactly(text, subject), 'exact');
    }
  }
  try {
    return decode(json, 'plain');
  } catch (error) {
    if (!(error instanceof NeedsExactParse)) throw error;
    return decode(parseExactly(text, subject), 'exact');
  }
}

const LARGEST_FINITE = { FP16: 65504, FP32: 3.4028234663852886e38, FP64: Number.MAX_VALUE } as const;

/** parseJsonExact, with a refusal that names `subject`: 400, never a SyntaxError or RangeError. */
export function parseExactly(text: string, subject: string | undefined): unknown {
  const refusal = subject === undefined ? 'not valid JSON' : `${subject} is not valid JSON`;
  try {
    return parseJsonExact(text);
  } catch (cause) {
    // The reviver recurses where JSON.parse alone does not: nesting this deep is no tensor's.
    if (cause instanceof RangeError) throw new BadRequestError(`${refusal}: nested too deeply`, { cause });
    throw new BadRequestError(`${refusal}: ${(cause as Error).message}`, { cause });
  }
}

function validateHeader(json: unknown): InferRequestHeader {
  const parsed = inferRequestHeaderSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new BadRequestError(`invalid inference request${where}: ${issue?.message ?? 'malformed'}`);
  }
  return parsed.data;
}

function decodeHeader(header: InferRequestHeader, binary: Uint8Array, exact: boolean): DecodedInferRequest {
  let offset = 0;
  const seen = new Set<string>();
  const inputs = header.inputs.map((input): RequestTensor => {
    if (seen.has(input.name)) throw new BadRequestError(`input '${input.name}' appears more than once`);
    seen.add(input.name);
    if (!isV2Datatype(input.datatype)) {
      throw new BadRequestError(`input '${input.name}' has unknown datatype '${input.datatype}'`);
    }
    const datatype = input.datatype;
    const binarySize = input.parameters?.binary_data_size;
    if (binarySize !== undefined) {
      if (input.data !== undefined) {
        throw new BadRequestError(`input '${input.name}' has both binary_data_size and data`);
      }
      if (offset + binarySize > binary.length) {
        throw new BadRequestError(
          `input '${input.name}' declares binary_data_size ${binarySize} but only ${binary.length - offset} binary bytes remain`,
        );
      }
      const bytes = binary.subarray(offset, offset + binarySize);
      offset += binarySize;
      return { name: input.name, datatype, shape: input.shape, data: decodeBinaryTensor(`input '${input.name}'`, datatype, bytes, elementCount(input.shape)) };
    }
    if (input.data === undefined) {
      throw new BadRequestError(`input '${input.name}' has neither data nor binary_data_size`);
    }
    // A Float64Array is a flat data array that parseLifted read apart.
    const flat = input.data instanceof Float64Array ? input.data : flatElements(input.name, input.data, input.shape);
    return { name: input.name, datatype, shape: input.shape, data: decodeJson(input.name, datatype, flat, input.shape, exact ? 'exact' : 'plain') };
  });
  if (offset !== binary.length) {
    throw new BadRequestError(
      `body has ${binary.length - offset} binary bytes that no input's binary_data_size accounts for`,
    );
  }

  const outputNames = new Set<string>();
  // An empty list asks for nothing in particular, which the protocol reads as every output.
  const outputs = header.outputs?.length ? header.outputs.map((o): RequestedOutput => {
    if (outputNames.has(o.name)) throw new BadRequestError(`output '${o.name}' is requested more than once`);
    outputNames.add(o.name);
    const { binary_data: binaryData, ...others } = o.parameters ?? {};
    return { name: o.name, binary: binaryData ?? header.parameters?.binary_data_output ?? false, ...(Object.keys(others).length > 0 ? { parameters: others } : {}) };
  }) : undefined;
  return {
    id: header.id,
    parameters: header.parameters,
    inputs,
    outputs,
    binaryDataOutput: header.parameters?.binary_data_output ?? false,
  };
}

/**
 * BYTES elements in binary, each a 4-byte little-endian length and its bytes. onnxruntime-node holds
 * string tensors as JavaScript strings, so an element that is not UTF-8 cannot reach it unaltered:
 * refused, never replaced with U+FFFD.
 */
function decodeBinaryTensor(what: string, datatype: V2Datatype, bytes: Uint8Array, count: number): TensorData {
  if (datatype === 'BYTES') {
    const strings: string[] = [];
    let at = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    while (at < bytes.length) {
      if (at + 4 > bytes.length) throw new BadRequestError(`${what}: BYTES element length prefix is truncated`);
      const len = view.getUint32(at, true);
      at += 4;
      if (at + len > bytes.length) throw new BadRequestError(`${what}: BYTES element of ${len} bytes overruns its binary data`);
      try {
        strings.push(utf8.decode(bytes.subarray(at, at + len)));
      } catch {
        throw new BadRequestError(
          `${what}: BYTES element ${strings.length} is not valid UTF-8; onnxruntime-node carries string tensors as text, so BYTES elements must be UTF-8`,
        );
      }
      at += len;
    }
    if (strings.length !== count) {
      throw new BadRequestError(`${what} has ${strings.length} BYTES elements but its shape needs ${count}`);
    }
    return strings;
  }
  const expected = count * DATATYPES[datatype].size;
  if (bytes.length !== expected) {
    throw new BadRequestError(
      `${what} has ${bytes.length} bytes of binary data but shape and ${datatype} need ${expected}`,
    );
  }
  return typedArrayFromBytes(datatype, bytes, count);
}

/** How an element looks in a message: its JSON text (the source text of a number a double cannot hold), shortened. */
function shown(v: unknown): string {
  if (v instanceof NumberText) return v.source.length > 40 ? `${v.source.slice(0, 40)}...` : v.source;
  if (typeof v === 'number') return float64Text(v);
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}...` : JSON.stringify(v);
  if (v !== null && typeof v === 'object') return 'an object';
  return String(v);
}

/**
 * The elements of JSON `data` in row-major order. Flat data (its first element not an array) is
 * taken as it is; nested data must mirror the shape exactly, walked without recursion and never
 * deeper than the shape's rank, so no nesting costs more than the elements the shape allows.
 */
function flatElements(name: string, data: unknown, shape: readonly number[]): unknown[] {
  if (!Array.isArray(data)) throw new BadRequestError(`input '${name}': data must be an array`);
  if (data.length === 0 || !Array.isArray(data[0])) return data;
  const dims = `[${shape.join(',')}]`;
  const rank = shape.length;
  const arrays: unknown[][] = [data];
  const next: number[] = [0];
  // The array at depth d was reached through next[0..d-1], each one past the index taken.
  const path = (extra?: number) => `data${next.slice(0, -1).map((i) => `[${i - 1}]`).join('')}${extra !== undefined ? `[${extra}]` : ''}`;
  const checkLength = (array: unknown[], dimension: number) => {
    if (dimension >= rank) throw new BadRequestError(`input '${name}': ${path()} is an array, deeper than shape ${dims} allows`);
    if (array.length !== shape[dimension]) {
      throw new BadRequestError(`input '${name}': ${path()} has ${array.length} elements where shape ${dims} needs ${shape[dimension]}`);
    }
  };
  checkLength(data, 0);
  const flat: unknown[] = [];
  while (arrays.length > 0) {
    const depth = arrays.length - 1;
    const array = arrays[depth]!;
    if (depth === rank - 1) {
      // The innermost dimension: scalars only.
      for (let i = 0; i < array.length; i++) {
        const v = array[i];
        if (Array.isArray(v)) throw new BadRequestError(`input '${name}': ${path(i)} is an array, deeper than shape ${dims} allows`);
        flat.push(v);
      }
      arrays.pop();
      next.pop();
      continue;
    }
    const i = next[depth]!;
    if (i === array.length) {
      arrays.pop();
      next.pop();
      continue;
    }
    next[depth] = i + 1;
    const v = array[i];
    if (!Array.isArray(v)) {
      throw new BadRequestError(`input '${name}': ${path(i)} is ${shown(v)} where shape ${dims} needs an array of ${shape[depth + 1]} elements`);
    }
    arrays.push(v);
    next.push(0);
    checkLength(v, depth + 1);
  }
  return flat;
}

/** How deep `nesting: 'any'` data may go. */
export const MAX_JSON_NESTING = 32;

/**
 * Nested data flattened whatever its nesting, up to MAX_JSON_NESTING levels (for batch rows, which
 * take a row's data in any nesting that holds the right number of elements). Without recursion.
 */
function flatAnyNesting(name: string, data: unknown): unknown[] {
  if (!Array.isArray(data)) throw new BadRequestError(`input '${name}': data must be an array`);
  const flat: unknown[] = [];
  const arrays: unknown[][] = [data];
  const next: number[] = [0];
  while (arrays.length > 0) {
    const depth = arrays.length - 1;
    const array = arrays[depth]!;
    const i = next[depth]!;
    if (i === array.length) {
      arrays.pop();
      next.pop();
      continue;
    }
    next[depth] = i + 1;
    const v = array[i];
    if (!Array.isArray(v)) {
      flat.push(v);
      continue;
    }
    if (arrays.length === MAX_JSON_NESTING) throw new BadRequestError(`input '${name}': data is nested more than ${MAX_JSON_NESTING} levels deep`);
    arrays.push(v);
    next.push(0);
  }
  return flat;
}

/**
 * Checks JSON `data` against a datatype and shape, and returns it as onnxruntime wants it. Nested
 * data must mirror the shape, unless `nesting: 'any'`. The values are taken as given: NaN and
 * ±Infinity are accepted for FP16, FP32 and FP64, finite values beyond the datatype's range are
 * refused (they would become Infinity), integers must be exact. With `parsed: 'plain'` the data came
 * from JSON.parse, so a value it cannot have read exactly (±Infinity from a literal such as 1e400, an
 * integer beyond 2^53 for a 64-bit type) raises NeedsExactParse: parse the text with parseJsonExact
 * and decode again.
 */
export function decodeJsonTensorData(
  name: string,
  datatype: V2Datatype,
  data: unknown,
  shape: readonly number[],
  options: { nesting?: 'shape' | 'any'; parsed?: 'plain' | 'exact' } = {},
): TensorData {
  const flat = options.nesting === 'any' ? flatAnyNesting(name, data) : flatElements(name, data, shape);
  return decodeJson(name, datatype, flat, shape, options.parsed ?? 'exact');
}

/**
 * 'plain': `data` came from JSON.parse, so a non-finite number can only be a literal beyond FP64's
 * range and a 64-bit integer beyond 2^53 has been rounded: either raises NeedsExactParse. 'exact':
 * numbers are what they say, and NumberText holds what a double could not.
 */
function decodeJson(name: string, datatype: V2Datatype, flat: ArrayLike<unknown>, shape: readonly number[], mode: 'plain' | 'exact'): TensorData {
  const count = elementCount(shape);
  if (flat.length !== count) {
    throw new BadRequestError(`input '${name}' has ${flat.length} elements but its shape needs ${count}`);
  }
  const bad = (i: number, want: string): never => {
    throw new BadRequestError(`input '${name}': element ${i} is ${shown(flat[i])}, expected ${want} for ${datatype}`);
  };
  switch (datatype) {
    case 'BYTES': {
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'string') bad(i, 'a string');
        // A lone surrogate has no UTF-8 form: onnxruntime-node would turn it into U+FFFD.
        else if (!v.isWellFormed()) {
          throw new BadRequestError(`input '${name}': BYTES element ${i} holds a lone UTF-16 surrogate, which has no UTF-8 form`);
        }
      }
      return flat as string[]; // every element a string: a JSON array, never a lifted Float64Array
    }
    case 'BOOL': {
      const out = new Uint8Array(flat.length);
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'boolean') bad(i, 'true or false');
        out[i] = v ? 1 : 0;
      }
      return out;
    }
    case 'FP16':
    case 'FP32':
    case 'FP64': {
      // One pass that checks and converts: this loop is most of a large JSON request's cost.
      const limit = datatype === 'FP32' ? FP32_OVERFLOW : datatype === 'FP16' ? FP16_OVERFLOW : Infinity;
      const outOfRange = (i: number): never => {
        throw new BadRequestError(
          `input '${name}': element ${i} is ${shown(flat[i])}, beyond the range of ${datatype} (largest finite value ${LARGEST_FINITE[datatype]}); NaN, Infinity and -Infinity are accepted as bare tokens`,
        );
      };
      if (flat instanceof Float64Array && datatype !== 'FP16') {
        // Lifted doubles (parseLifted): once all are in range, the typed array's own conversion does the rest.
        let i = 0;
        while (i < flat.length && flat[i]! < limit && flat[i]! > -limit) i++;
        if (i === flat.length) return datatype === 'FP32' ? new Float32Array(flat) : flat.slice();
      }
      const values = datatype === 'FP64' ? new Float64Array(flat.length) : datatype === 'FP32' ? new Float32Array(flat.length) : new Float16(flat.length);
      const element = (i: number): number => {
        const v = flat[i];
        if (v instanceof NumberText) {
          const n = Number(v.source);
          return n < limit && n > -limit ? n : outOfRange(i);
        }
        if (typeof v !== 'number') return bad(i, 'a number');
        if (v - v !== 0) {
          if (mode === 'plain') throw new NeedsExactParse(); // a literal beyond FP64's range: its text names it
          return v; // NaN and ±Infinity as themselves
        }
        return outOfRange(i);
      };
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        values[i] = typeof v === 'number' && v < limit && v > -limit ? v : element(i);
      }
      return datatype === 'FP16' ? new Uint16Array(values.buffer) : (values as Float32Array | Float64Array);
    }
    default: {
      const [min, max] = DATATYPES[datatype].range!;
      const wide = datatype === 'INT64' || datatype === 'UINT64';
      const low = Number(min);
      const high = Number(max);
      let exactValues: Map<number, bigint> | undefined;
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v === 'number' && Number.isSafeInteger(v) && v >= low && v <= high) continue;
        if (v instanceof NumberText) {
          const exact = exactInteger(v.source);
          if (exact === undefined) bad(i, 'an integer');
          else if (exact < min || exact > max) bad(i, `an integer in [${min}, ${max}]`);
          else (exactValues ??= new Map()).set(i, exact);
          continue;
        }
        if (typeof v !== 'number') bad(i, 'an integer');
        else if (Number.isSafeInteger(v)) bad(i, `an integer in [${min}, ${max}]`);
        else if (mode === 'plain' && (v - v !== 0 || (wide && Number.isInteger(v)))) throw new NeedsExactParse();
        else if (!Number.isInteger(v)) bad(i, 'an integer');
        else if (wide) bad(i, `an integer whose exact value is known (a double holds integers exactly up to 2^53)`);
        else bad(i, `an integer in [${min}, ${max}]`);
      }
      // Long literals on the exact path (1.0000000000000000, 2e+01) arrive as text: their exact values.
      const ints = (exactValues && !wide ? Array.from(flat, (v, i) => { const e = exactValues.get(i); return e === undefined ? v : Number(e); }) : flat) as ArrayLike<number>;
      switch (datatype) {
        case 'UINT8': return new Uint8Array(ints);
        case 'INT8': return new Int8Array(ints);
        case 'UINT16': return new Uint16Array(ints);
        case 'INT16': return new Int16Array(ints);
        case 'UINT32': return new Uint32Array(ints);
        case 'INT32': return new Int32Array(ints);
        case 'UINT64': return BigUint64Array.from(ints, (v, i) => exactValues?.get(i) ?? BigInt(v));
        case 'INT64': return BigInt64Array.from(ints, (v, i) => exactValues?.get(i) ?? BigInt(v));
      }
    }
  }
}

/**
 * A tensor's elements (all, or those in [from, to)) as the text of a JSON array's contents: 64-bit
 * integers exact, FP32 and FP16 with the fewest digits that read back as the same value, NaN and
 * ±Infinity as the bare tokens Python's json module reads (plain JSON has no number for them), -0 as
 * -0.0. The online answer and the batch result lines both write their data with it.
 */
export function jsonDataText(datatype: V2Datatype, data: TensorData, from = 0, to = data.length): string {
  if (Array.isArray(data)) return JSON.stringify(from === 0 && to === data.length ? data : data.slice(from, to)).slice(1, -1);
  switch (datatype) {
    case 'BOOL': {
      const parts = new Array<string>(to - from);
      for (let i = from; i < to; i++) parts[i - from] = data[i] ? 'true' : 'false';
      return parts.join(',');
    }
    case 'FP32': {
      const values = data as Float32Array;
      const parts = new Array<string>(to - from);
      for (let i = from; i < to; i++) parts[i - from] = float32Text(values[i]!);
      return parts.join(',');
    }
    case 'FP16': {
      // Raw bits as the codec decodes them, or values where onnxruntime hands back a Float16Array.
      const values = data instanceof Uint16Array ? new Float16(data.buffer, data.byteOffset, data.length) : (data as unknown as ArrayLike<number>);
      const parts = new Array<string>(to - from);
      for (let i = from; i < to; i++) parts[i - from] = float16Text(values[i]!);
      return parts.join(',');
    }
    case 'FP64': {
      const all = data as Float64Array;
      const values = from === 0 && to === all.length ? all : all.subarray(from, to);
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        if (v === 0 && 1 / v < 0) return Array.from(values, float64Text).join(','); // join writes -0 as 0
      }
      return values.join(','); // join writes NaN, Infinity and -Infinity as those tokens
    }
    default: {
      const values = data as Exclude<Tensor.DataType, string[]>;
      return (from === 0 && to === values.length ? values : values.subarray(from, to)).join(','); // exact decimal integers, BigInt ones included
    }
  }
}

function binaryData(data: TensorData): Buffer {
  if (Array.isArray(data)) {
    const parts: Buffer[] = [];
    for (const s of data) {
      const bytes = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(bytes.length);
      parts.push(len, bytes);
    }
    return Buffer.concat(parts);
  }
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** One tensor's JSON text: data inline, or its binary_data_size with the bytes pushed onto `chunks`. */
function tensorText(t: { name: string; datatype: V2Datatype; shape: number[]; data: TensorData }, binary: boolean, chunks: Buffer[]): string {
  const head = `{"name":${JSON.stringify(t.name)},"datatype":"${t.datatype}","shape":${JSON.stringify(t.shape)}`;
  if (!binary) return `${head},"data":[${jsonDataText(t.datatype, t.data)}]}`;
  const bytes = binaryData(t.data);
  chunks.push(bytes);
  return `${head},"parameters":{"binary_data_size":${bytes.length}}}`;
}

function body(header: string, chunks: Buffer[]): EncodedBody {
  const json = Buffer.from(header);
  if (chunks.length === 0) return { body: json };
  return { body: Buffer.concat([json, ...chunks]), jsonLength: json.length };
}

/**
 * Encodes a V2 infer response. Outputs named in `binaryOutputs` travel as raw bytes after the JSON
 * header, the others as JSON (jsonDataText). The header is written as text, not with JSON.stringify,
 * which has no way to write 64-bit integers exactly or NaN at all.
 */
export function encodeInferResponse(response: InferResponse, binaryOutputs: ReadonlySet<string>): EncodedBody {
  const chunks: Buffer[] = [];
  const outputs = response.outputs.map((o) => tensorText(o, binaryOutputs.has(o.name), chunks));
  const header =
    `{"model_name":${JSON.stringify(response.model_name)},"model_version":${JSON.stringify(response.model_version)}` +
    (response.id !== undefined ? `,"id":${JSON.stringify(response.id)}` : '') +
    (response.parameters !== undefined ? `,"parameters":${JSON.stringify(response.parameters)}` : '') +
    `,"outputs":[${outputs.join(',')}]}`;
  return body(header, chunks);
}

/** Encodes a V2 request (the client side, used by the CLI, tests and benchmarks). */
export function encodeInferRequest(
  inputs: RequestTensor[],
  options: { id?: string; binary?: boolean; outputs?: RequestedOutput[]; binaryDataOutput?: boolean } = {},
): EncodedBody {
  const chunks: Buffer[] = [];
  const tensors = inputs.map((t) => tensorText(t, options.binary ?? false, chunks));
  const header =
    '{' +
    (options.id !== undefined ? `"id":${JSON.stringify(options.id)},` : '') +
    (options.binaryDataOutput ? '"parameters":{"binary_data_output":true},' : '') +
    `"inputs":[${tensors.join(',')}]` +
    (options.outputs
      ? `,"outputs":${JSON.stringify(options.outputs.map((o) => ({ name: o.name, ...(o.binary ? { parameters: { binary_data: true } } : {}) })))}`
      : '') +
    '}';
  return body(header, chunks);
}

interface ResponseHeader {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: V2Datatype; shape: number[]; data?: unknown; parameters?: { binary_data_size?: number } }[];
}

/**
 * Decodes a V2 response body (client side), turning every output into typed data: binary ones from
 * their bytes, JSON ones as exactly as the request decoder reads them (64-bit integers, NaN tokens).
 */
export function decodeInferResponse(body: Uint8Array, headerLength?: number): InferResponse {
  const jsonEnd = headerLength ?? body.length;
  const text = utf8.decode(body.subarray(0, jsonEnd));
  const decode = (header: ResponseHeader, mode: 'plain' | 'exact'): InferResponse => {
    let offset = jsonEnd;
    return {
      model_name: header.model_name,
      model_version: header.model_version,
      id: header.id,
      outputs: header.outputs.map((o) => {
        const size = o.parameters?.binary_data_size;
        if (size === undefined) return { name: o.name, datatype: o.datatype, shape: o.shape, data: decodeJson(o.name, o.datatype, flatElements(o.name, o.data ?? [], o.shape), o.shape, mode) };
        const bytes = body.subarray(offset, offset + size);
        offset += size;
        return { name: o.name, datatype: o.datatype, shape: o.shape, data: decodeBinaryTensor(`output '${o.name}'`, o.datatype, bytes, elementCount(o.shape)) };
      }),
    };
  };
  let plain: ResponseHeader | undefined;
  try {
    plain = JSON.parse(text) as ResponseHeader;
  } catch {
    // NaN or Infinity tokens: the exact parse below reads them.
  }
  try {
    if (plain) return decode(plain, 'plain');
  } catch (error) {
    if (!(error instanceof NeedsExactParse)) throw error;
  }
  return decode(parseJsonExact(text) as ResponseHeader, 'exact');
}
