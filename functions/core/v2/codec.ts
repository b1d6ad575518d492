import type { Tensor } from 'onnxruntime-node';
import { BadRequestError } from '../errors.ts';
import { DATATYPES, isV2Datatype, typedArrayFromBytes, type V2Datatype } from './datatypes.ts';
import { inferRequestHeaderSchema, type InferRequestHeader } from './schemas.ts';

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
  if (typeof input === 'string' && headerLength === undefined) return decodeHeader(parseHeader(input), new Uint8Array(0));
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
  return decodeHeader(parseHeader(body.subarray(0, jsonEnd)), body.subarray(jsonEnd));
}

function decodeHeader(header: InferRequestHeader, binary: Uint8Array): DecodedInferRequest {
  let offset = 0;
  const seen = new Set<string>();
  const inputs = header.inputs.map((input): RequestTensor => {
    if (seen.has(input.name)) throw new BadRequestError(`input '${input.name}' appears more than once`);
    seen.add(input.name);
    if (!isV2Datatype(input.datatype)) {
      throw new BadRequestError(`input '${input.name}' has unknown datatype '${input.datatype}'`);
    }
    const datatype = input.datatype;
    const count = elementCount(input.shape);
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
      return { name: input.name, datatype, shape: input.shape, data: decodeBinaryTensor(input.name, datatype, bytes, count) };
    }
    if (input.data === undefined) {
      throw new BadRequestError(`input '${input.name}' has neither data nor binary_data_size`);
    }
    return { name: input.name, datatype, shape: input.shape, data: decodeJsonTensorData(input.name, datatype, input.data, count) };
  });
  if (offset !== binary.length) {
    throw new BadRequestError(
      `body has ${binary.length - offset} binary bytes that no input's binary_data_size accounts for`,
    );
  }

  const outputNames = new Set<string>();
  const outputs = header.outputs?.map((o): RequestedOutput => {
    if (outputNames.has(o.name)) throw new BadRequestError(`output '${o.name}' is requested more than once`);
    outputNames.add(o.name);
    const { binary_data: binaryData, ...others } = o.parameters ?? {};
    return { name: o.name, binary: binaryData ?? header.parameters?.binary_data_output ?? false, ...(Object.keys(others).length > 0 ? { parameters: others } : {}) };
  });
  return {
    id: header.id,
    parameters: header.parameters,
    inputs,
    outputs,
    binaryDataOutput: header.parameters?.binary_data_output ?? false,
  };
}

function parseHeader(text: Uint8Array | string): InferRequestHeader {
  let json: unknown;
  try {
    json = JSON.parse(typeof text === 'string' ? text : utf8.decode(text));
  } catch (cause) {
    throw new BadRequestError(`request body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const parsed = inferRequestHeaderSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new BadRequestError(`invalid inference request${where}: ${issue?.message ?? 'malformed'}`);
  }
  return parsed.data;
}

function decodeBinaryTensor(name: string, datatype: V2Datatype, bytes: Uint8Array, count: number): TensorData {
  if (datatype === 'BYTES') {
    const strings: string[] = [];
    let at = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    while (at < bytes.length) {
      if (at + 4 > bytes.length) throw new BadRequestError(`input '${name}': BYTES element length prefix is truncated`);
      const len = view.getUint32(at, true);
      at += 4;
      if (at + len > bytes.length) throw new BadRequestError(`input '${name}': BYTES element of ${len} bytes overruns its binary data`);
      strings.push(Buffer.from(bytes.buffer, bytes.byteOffset + at, len).toString('utf8'));
      at += len;
    }
    if (strings.length !== count) {
      throw new BadRequestError(`input '${name}' has ${strings.length} BYTES elements but its shape needs ${count}`);
    }
    return strings;
  }
  const expected = count * DATATYPES[datatype].size;
  if (bytes.length !== expected) {
    throw new BadRequestError(
      `input '${name}' has ${bytes.length} bytes of binary data but shape and ${datatype} need ${expected}`,
    );
  }
  return typedArrayFromBytes(datatype, bytes, count);
}

/** Checks JSON `data` against a datatype and element count, and returns it as onnxruntime wants it. */
export function decodeJsonTensorData(name: string, datatype: V2Datatype, data: unknown, count: number): TensorData {
  if (datatype === 'FP16') {
    throw new BadRequestError(`input '${name}' is FP16, which JSON cannot carry: send it with the binary tensor data extension`);
  }
  if (!Array.isArray(data)) throw new BadRequestError(`input '${name}': data must be an array`);
  // Nested data starts with an array; flat data never has one (an array further in is refused below).
  const flat: unknown[] = Array.isArray(data[0]) ? data.flat(Infinity) : data;
  if (flat.length !== count) {
    throw new BadRequestError(`input '${name}' has ${flat.length} elements but its shape needs ${count}`);
  }
  const bad = (i: number, want: string): never => {
    throw new BadRequestError(`input '${name}': element ${i} is ${JSON.stringify(flat[i])}, expected ${want} for ${datatype}`);
  };
  switch (datatype) {
    case 'BYTES': {
      for (let i = 0; i < flat.length; i++) if (typeof flat[i] !== 'string') bad(i, 'a string');
      return flat as string[];
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
    case 'FP32':
    case 'FP64': {
      // One pass that checks and converts: this loop is most of a large JSON request's cost.
      const out = datatype === 'FP32' ? new Float32Array(flat.length) : new Float64Array(flat.length);
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'number') bad(i, 'a number');
        out[i] = v as number;
      }
      return out;
    }
    default: {
      const [min, max] = DATATYPES[datatype].range!;
      const safeMin = Number(min > BigInt(Number.MIN_SAFE_INTEGER) ? min : BigInt(Number.MIN_SAFE_INTEGER));
      const safeMax = Number(max < BigInt(Number.MAX_SAFE_INTEGER) ? max : BigInt(Number.MAX_SAFE_INTEGER));
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'number' || !Number.isInteger(v)) bad(i, 'an integer');
        else if (v < safeMin || v > safeMax) bad(i, `an integer in [${safeMin}, ${safeMax}]`);
      }
      const ints = flat as number[];
      switch (datatype) {
        case 'UINT8': return new Uint8Array(ints);
        case 'INT8': return new Int8Array(ints);
        case 'UINT16': return new Uint16Array(ints);
        case 'INT16': return new Int16Array(ints);
        case 'UINT32': return new Uint32Array(ints);
        case 'INT32': return new Int32Array(ints);
        case 'UINT64': return BigUint64Array.from(ints, (v) => BigInt(v));
        case 'INT64': return BigInt64Array.from(ints, (v) => BigInt(v));
      }
    }
  }
}

/** JSON numbers for a tensor's elements; 64-bit integers beyond 2^53 lose precision, as in any JSON client. */
function jsonData(datatype: V2Datatype, data: TensorData): unknown[] {
  if (Array.isArray(data)) return data;
  if (datatype === 'BOOL') return Array.from(data as Uint8Array, (v) => v !== 0);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Array.from(data, Number);
  return Array.from(data as ArrayLike<number>);
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

/**
 * Encodes a V2 infer response. Outputs named in `binaryOutputs` travel as raw bytes after the JSON
 * header; FP16 always does, since JSON cannot carry it.
 */
export function encodeInferResponse(response: InferResponse, binaryOutputs: ReadonlySet<string>): EncodedBody {
  const chunks: Buffer[] = [];
  const outputs = response.outputs.map((o) => {
    if (binaryOutputs.has(o.name) || o.datatype === 'FP16') {
      const bytes = binaryData(o.data);
      chunks.push(bytes);
      return { name: o.name, datatype: o.datatype, shape: o.shape, parameters: { binary_data_size: bytes.length } };
    }
    return { name: o.name, datatype: o.datatype, shape: o.shape, data: jsonData(o.datatype, o.data) };
  });
  const header = Buffer.from(
    JSON.stringify({
      model_name: response.model_name,
      model_version: response.model_version,
      ...(response.id !== undefined ? { id: response.id } : {}),
      ...(response.parameters !== undefined ? { parameters: response.parameters } : {}),
      outputs,
    }),
  );
  if (chunks.length === 0) return { body: header };
  return { body: Buffer.concat([header, ...chunks]), jsonLength: header.length };
}

/** Encodes a V2 request (the client side, used by the CLI, tests and benchmarks). */
export function encodeInferRequest(
  inputs: RequestTensor[],
  options: { id?: string; binary?: boolean; outputs?: RequestedOutput[]; binaryDataOutput?: boolean } = {},
): EncodedBody {
  const chunks: Buffer[] = [];
  const header = {
    ...(options.id !== undefined ? { id: options.id } : {}),
    ...(options.binaryDataOutput ? { parameters: { binary_data_output: true } } : {}),
    inputs: inputs.map((t) => {
      if (options.binary || t.datatype === 'FP16') {
        const bytes = binaryData(t.data);
        chunks.push(bytes);
        return { name: t.name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: bytes.length } };
      }
      return { name: t.name, datatype: t.datatype, shape: t.shape, data: jsonData(t.datatype, t.data) };
    }),
    ...(options.outputs
      ? { outputs: options.outputs.map((o) => ({ name: o.name, ...(o.binary ? { parameters: { binary_data: true } } : {}) })) }
      : {}),
  };
  const json = Buffer.from(JSON.stringify(header));
  if (chunks.length === 0) return { body: json };
  return { body: Buffer.concat([json, ...chunks]), jsonLength: json.length };
}

/** Decodes a V2 response body (client side), turning binary outputs back into typed data. */
export function decodeInferResponse(body: Uint8Array, headerLength?: number): InferResponse {
  const jsonEnd = headerLength ?? body.length;
  const header = JSON.parse(utf8.decode(body.subarray(0, jsonEnd))) as {
    model_name: string;
    model_version: string;
    id?: string;
    outputs: { name: string; datatype: V2Datatype; shape: number[]; data?: unknown[]; parameters?: { binary_data_size?: number } }[];
  };
  let offset = jsonEnd;
  return {
    model_name: header.model_name,
    model_version: header.model_version,
    id: header.id,
    outputs: header.outputs.map((o) => {
      const size = o.parameters?.binary_data_size;
      if (size === undefined) return { name: o.name, datatype: o.datatype, shape: o.shape, data: (o.data ?? []) as TensorData };
      const bytes = body.subarray(offset, offset + size);
      offset += size;
      return { name: o.name, datatype: o.datatype, shape: o.shape, data: decodeBinaryTensor(o.name, o.datatype, bytes, elementCount(o.shape)) };
    }),
  };
}
