import { BadRequestError } from '../../platform/errors.ts';
import type { V2Datatype } from '../../v2/datatypes.ts';

/**
 * The numeric element types columnar inputs carry, and which of them an input tensor of a given
 * datatype can take without changing a value: the same type, or a widening that is exact
 * (uint8 pixels into FP32, int32 into FP64). Conversions are one typed-array `set`, never a loop.
 */
export type ElementType = 'u1' | 'i1' | 'u2' | 'i2' | 'u4' | 'i4' | 'u8' | 'i8' | 'f4' | 'f8' | 'b1';

export type NumericArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

export type NumericArrayConstructor = {
  new (length: number): NumericArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray;
  readonly BYTES_PER_ELEMENT: number;
};

export const ELEMENT_ARRAYS: Record<ElementType, NumericArrayConstructor> = {
  u1: Uint8Array,
  b1: Uint8Array,
  i1: Int8Array,
  u2: Uint16Array,
  i2: Int16Array,
  u4: Uint32Array,
  i4: Int32Array,
  u8: BigUint64Array,
  i8: BigInt64Array,
  f4: Float32Array,
  f8: Float64Array,
};

const DATATYPE_ELEMENT: Partial<Record<V2Datatype, ElementType>> = {
  BOOL: 'b1',
  UINT8: 'u1',
  INT8: 'i1',
  UINT16: 'u2',
  INT16: 'i2',
  UINT32: 'u4',
  INT32: 'i4',
  UINT64: 'u8',
  INT64: 'i8',
  FP32: 'f4',
  FP64: 'f8',
};

/** Exact widenings: every value of the source type is a value of the target type. */
const WIDENS_TO: Partial<Record<ElementType, readonly ElementType[]>> = {
  u1: ['u2', 'i2', 'u4', 'i4', 'f4', 'f8'],
  i1: ['i2', 'i4', 'f4', 'f8'],
  u2: ['u4', 'i4', 'f4', 'f8'],
  i2: ['i4', 'f4', 'f8'],
  u4: ['f8'],
  i4: ['f8'],
  f4: ['f8'],
  b1: ['u1'],
};

export function elementOf(datatype: V2Datatype): ElementType | undefined {
  return DATATYPE_ELEMENT[datatype];
}

/** Why a column of `from` cannot feed an input of `datatype`; undefined when it can. */
export function conversionProblem(from: ElementType, datatype: V2Datatype): string | undefined {
  const to = DATATYPE_ELEMENT[datatype];
  if (!to) return `the input's datatype ${datatype} cannot be read from a numeric column`;
  if (from === to || WIDENS_TO[from]?.includes(to)) return undefined;
  return `a column of ${from} values cannot be converted to ${datatype} exactly`;
}

/** `values` as the input's element type: the same array when it already is, else one converting copy. */
export function toElements(values: NumericArray, datatype: V2Datatype): NumericArray {
  const Target = ELEMENT_ARRAYS[DATATYPE_ELEMENT[datatype]!];
  if (values instanceof Target) return values;
  const out = new Target(values.length);
  (out as Float64Array).set(values as Float64Array);
  return out;
}

export function assertConvertible(from: ElementType, datatype: V2Datatype, column: string, input: string): void {
  const problem = conversionProblem(from, datatype);
  if (problem) throw new BadRequestError(`column '${column}' cannot feed input '${input}': ${problem}`);
}
