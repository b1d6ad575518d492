import type { Tensor } from 'onnxruntime-node';

/**
 * The one mapping between Open Inference Protocol V2 datatypes and onnxruntime tensor types.
 * BF16 has no onnxruntime-node tensor type and is not listed. FP16 travels as its raw 16-bit
 * patterns (binary, or JSON numbers rounded to the nearest half).
 */
export const V2_DATATYPES = [
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64',
  'FP16', 'FP32', 'FP64', 'BYTES',
] as const;
export type V2Datatype = (typeof V2_DATATYPES)[number];

type OrtType = Tensor.Type;

/** A typed array over little-endian element bytes, as the binary extension carries them. */
type ElementArrayConstructor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => Tensor.DataType;

interface DatatypeInfo {
  ort: OrtType;
  /** Bytes per element in the binary extension; 0 for BYTES (length-prefixed, variable). */
  size: number;
  /** The typed array onnxruntime takes for it; undefined for BYTES (strings). FP16 travels as raw uint16. */
  array?: ElementArrayConstructor;
  /** Integer range checked on JSON input; undefined for non-integers. */
  range?: readonly [bigint, bigint];
}

export const DATATYPES: Record<V2Datatype, DatatypeInfo> = {
  BOOL: { ort: 'bool', size: 1, array: Uint8Array },
  UINT8: { ort: 'uint8', size: 1, array: Uint8Array, range: [0n, 255n] },
  UINT16: { ort: 'uint16', size: 2, array: Uint16Array, range: [0n, 65535n] },
  UINT32: { ort: 'uint32', size: 4, array: Uint32Array, range: [0n, 4294967295n] },
  UINT64: { ort: 'uint64', size: 8, array: BigUint64Array, range: [0n, 18446744073709551615n] },
  INT8: { ort: 'int8', size: 1, array: Int8Array, range: [-128n, 127n] },
  INT16: { ort: 'int16', size: 2, array: Int16Array, range: [-32768n, 32767n] },
  INT32: { ort: 'int32', size: 4, array: Int32Array, range: [-2147483648n, 2147483647n] },
  INT64: { ort: 'int64', size: 8, array: BigInt64Array, range: [-9223372036854775808n, 9223372036854775807n] },
  FP16: { ort: 'float16', size: 2, array: Uint16Array },
  FP32: { ort: 'float32', size: 4, array: Float32Array },
  FP64: { ort: 'float64', size: 8, array: Float64Array },
  BYTES: { ort: 'string', size: 0 },
};

const BY_ORT = new Map<string, V2Datatype>(
  (Object.entries(DATATYPES) as [V2Datatype, DatatypeInfo][]).map(([v2, info]) => [info.ort, v2]),
);

export function isV2Datatype(value: string): value is V2Datatype {
  return Object.hasOwn(DATATYPES, value);
}

/** onnxruntime's type name ('float32', 'int64', ...) to the V2 datatype; undefined when V2 has none. */
export function v2DatatypeOf(ortType: string): V2Datatype | undefined {
  return BY_ORT.get(ortType);
}

/**
 * A typed array over little-endian bytes as the wire has them. A view on the same memory when the
 * bytes start where the type's alignment allows (the inference handler decodes binary bodies so
 * that they do: a 64-image batch is 200 KB not copied per request), else a copy into an aligned
 * buffer: a typed array cannot start at an unaligned offset.
 */
export function typedArrayFromBytes(datatype: Exclude<V2Datatype, 'BYTES'>, bytes: Uint8Array, count: number): Tensor.DataType {
  const source = bytes.byteOffset % DATATYPES[datatype].size === 0 ? bytes : new Uint8Array(bytes); // new Uint8Array copies
  return new DATATYPES[datatype].array!(source.buffer, source.byteOffset, count);
}
