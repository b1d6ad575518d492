/**
 * A small writer for ONNX graphs built by hand: tensors, nodes with typed attributes, value infos,
 * graphs and models. Everything returns plain protobufjs init objects, ready for `encodeModel`.
 */
import {
  onnx,
  type AttributeProtoInit,
  type GraphProtoInit,
  type ModelProtoInit,
  type NodeProtoInit,
  type TensorProtoInit,
  type ValueInfoProtoInit,
} from './model-proto.ts';

const DataType = onnx.TensorProto.DataType;
const AttributeType = onnx.AttributeProto.AttributeType;

/** Element types by the names onnxruntime-node uses for tensor types. */
export const tensorElementTypes = {
  float32: DataType.FLOAT,
  uint8: DataType.UINT8,
  int8: DataType.INT8,
  uint16: DataType.UINT16,
  int16: DataType.INT16,
  int32: DataType.INT32,
  int64: DataType.INT64,
  string: DataType.STRING,
  bool: DataType.BOOL,
  float16: DataType.FLOAT16,
  float64: DataType.DOUBLE,
  uint32: DataType.UINT32,
  uint64: DataType.UINT64,
} as const;
export type TensorElementType = keyof typeof tensorElementTypes;

/** A dimension: a number is fixed, a string names a dynamic dimension (dim_param). */
export type Dimension = number | string;

export type AttributeValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number | bigint }
  | { type: 'floats'; value: readonly number[] }
  | { type: 'ints'; value: readonly (number | bigint)[] }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: TensorProtoInit }
  | { type: 'graph'; value: GraphProtoInit };

/** Constructors for typed attribute values: a JS number alone cannot say whether it is int or float. */
export const attr = {
  float: (value: number): AttributeValue => ({ type: 'float', value }),
  int: (value: number | bigint): AttributeValue => ({ type: 'int', value }),
  floats: (value: readonly number[]): AttributeValue => ({ type: 'floats', value }),
  ints: (value: readonly (number | bigint)[]): AttributeValue => ({ type: 'ints', value }),
  string: (value: string): AttributeValue => ({ type: 'string', value }),
  tensor: (value: TensorProtoInit): AttributeValue => ({ type: 'tensor', value }),
  graph: (value: GraphProtoInit): AttributeValue => ({ type: 'graph', value }),
};

function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

function checkDims(name: string, dims: readonly number[], length: number): void {
  for (const dim of dims) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new RangeError(`tensor "${name}": dims must be non-negative integers, got [${dims.join(', ')}]`);
    }
  }
  if (elementCount(dims) !== length) {
    throw new RangeError(
      `tensor "${name}": dims [${dims.join(', ')}] hold ${elementCount(dims)} elements but ${length} values were given`,
    );
  }
}

function toInt64(value: number | bigint): number {
  if (typeof value === 'bigint') {
    const asNumber = Number(value);
    if (!Number.isSafeInteger(asNumber)) throw new RangeError(`int64 value ${value} does not fit a safe integer`);
    return asNumber;
  }
  if (!Number.isSafeInteger(value)) throw new RangeError(`int64 value ${value} is not a safe integer`);
  return value;
}

/** An FP32 tensor stored as little-endian raw_data, whatever the host's byte order. */
export function tensorFromFloat32(
  name: string,
  dims: readonly number[],
  data: Float32Array | readonly number[],
): TensorProtoInit {
  checkDims(name, dims, data.length);
  const rawData = new Uint8Array(data.length * 4);
  const view = new DataView(rawData.buffer);
  for (let index = 0; index < data.length; index++) view.setFloat32(index * 4, data[index] as number, true);
  return { name, dims: [...dims], dataType: DataType.FLOAT, rawData };
}

/** An INT64 tensor stored as little-endian raw_data. */
export function tensorFromInt64(
  name: string,
  dims: readonly number[],
  data: BigInt64Array | readonly (number | bigint)[],
): TensorProtoInit {
  checkDims(name, dims, data.length);
  const rawData = new Uint8Array(data.length * 8);
  const view = new DataView(rawData.buffer);
  for (let index = 0; index < data.length; index++) view.setBigInt64(index * 8, BigInt(data[index] as number | bigint), true);
  return { name, dims: [...dims], dataType: DataType.INT64, rawData };
}

/** An FP32 scalar (rank 0), the form elementwise constants take. */
export function scalarFloat32(name: string, value: number): TensorProtoInit {
  return tensorFromFloat32(name, [], [value]);
}

function attributeProto(name: string, value: AttributeValue): AttributeProtoInit {
  switch (value.type) {
    case 'float':
      return { name, type: AttributeType.FLOAT, f: value.value };
    case 'int':
      return { name, type: AttributeType.INT, i: toInt64(value.value) };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: [...value.value] };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: value.value.map(toInt64) };
    case 'string':
      return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value.value) };
    case 'tensor':
      return { name, type: AttributeType.TENSOR, t: value.value };
    case 'graph':
      return { name, type: AttributeType.GRAPH, g: value.value };
  }
}

/** A node of the default (ai.onnx) domain unless `domain` is given. An empty input name skips an optional input. */
export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: Readonly<Record<string, AttributeValue>> = {},
  name?: string,
  domain?: string,
): NodeProtoInit {
  return {
    opType,
    input: [...inputs],
    output: [...outputs],
    attribute: Object.entries(attributes).map(([attributeName, value]) => attributeProto(attributeName, value)),
    ...(name === undefined ? {} : { name }),
    ...(domain === undefined ? {} : { domain }),
  };
}

/** A tensor value info; `shape` undefined means unknown rank. */
export function valueInfo(
  name: string,
  elemType: TensorElementType,
  shape?: readonly Dimension[],
): ValueInfoProtoInit {
  const tensorType: NonNullable<NonNullable<ValueInfoProtoInit['type']>['tensorType']> = {
    elemType: tensorElementTypes[elemType],
  };
  if (shape !== undefined) {
    tensorType.shape = {
      dim: shape.map((dim) => {
        if (typeof dim === 'string') return { dimParam: dim };
        if (!Number.isSafeInteger(dim) || dim < 0) {
          throw new RangeError(`value "${name}": a fixed dimension must be a non-negative integer, got ${dim}; name a dynamic one with a string`);
        }
        return { dimValue: dim };
      }),
    };
  }
  return { name, type: { tensorType } };
}

export interface GraphSpec {
  name: string;
  nodes: readonly NodeProtoInit[];
  inputs: readonly ValueInfoProtoInit[];
  outputs: readonly ValueInfoProtoInit[];
  initializers?: readonly TensorProtoInit[];
  valueInfo?: readonly ValueInfoProtoInit[];
  docString?: string;
}

export function graph(spec: GraphSpec): GraphProtoInit {
  return {
    name: spec.name,
    node: [...spec.nodes],
    input: [...spec.inputs],
    output: [...spec.outputs],
    initializer: [...(spec.initializers ?? [])],
    valueInfo: [...(spec.valueInfo ?? [])],
    ...(spec.docString === undefined ? {} : { docString: spec.docString }),
  };
}

export interface ModelSpec {
  graph: GraphProtoInit;
  /** ai.onnx opset version. */
  opset: number;
  irVersion: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Written as metadata_props, in key order as given. */
  metadata?: Readonly<Record<string, string>>;
}

export function model(spec: ModelSpec): ModelProtoInit {
  return {
    irVersion: spec.irVersion,
    opsetImport: [{ domain: '', version: spec.opset }],
    producerName: spec.producerName ?? 'ai-mass',
    producerVersion: spec.producerVersion ?? '',
    graph: spec.graph,
    metadataProps: Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value })),
    ...(spec.docString === undefined ? {} : { docString: spec.docString }),
  };
}

function rawTensor(
  name: string,
  dims: readonly number[],
  length: number,
  dataType: number,
  bytesPerElement: number,
  write: (view: DataView, index: number) => void,
): TensorProtoInit {
  checkDims(name, dims, length);
  const rawData = new Uint8Array(length * bytesPerElement);
  const view = new DataView(rawData.buffer);
  for (let index = 0; index < length; index++) write(view, index);
  return { name, dims: [...dims], dataType, rawData };
}

/** An INT8 tensor stored as raw_data. */
export function tensorFromInt8(name: string, dims: readonly number[], data: Int8Array | readonly number[]): TensorProtoInit {
  return rawTensor(name, dims, data.length, DataType.INT8, 1, (view, i) => view.setInt8(i, data[i] as number));
}

/** A UINT8 tensor stored as raw_data. */
export function tensorFromUint8(name: string, dims: readonly number[], data: Uint8Array | readonly number[]): TensorProtoInit {
  return rawTensor(name, dims, data.length, DataType.UINT8, 1, (view, i) => view.setUint8(i, data[i] as number));
}

/** An INT32 tensor stored as little-endian raw_data. */
export function tensorFromInt32(name: string, dims: readonly number[], data: Int32Array | readonly number[]): TensorProtoInit {
  return rawTensor(name, dims, data.length, DataType.INT32, 4, (view, i) => view.setInt32(i * 4, data[i] as number, true));
}

/** A FLOAT16 tensor from float values, rounded to nearest even, stored as little-endian raw_data. */
export function tensorFromFloat16(name: string, dims: readonly number[], data: Float32Array | readonly number[]): TensorProtoInit {
  return rawTensor(name, dims, data.length, DataType.FLOAT16, 2, (view, i) => view.setUint16(i * 2, float32ToFloat16Bits(data[i] as number), true));
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a number (round to nearest even; overflow to infinity, NaN kept). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    if (rest > midpoint || (rest === midpoint && (half & 1))) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa rolls into the exponent, and up to infinity, exactly as binary16 wants.
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1;
  return sign | half;
}

/** The number a binary16 bit pattern stands for. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
