/**
 * The ONNX ModelProto on the wire: decode with a guard that refuses what is not an ONNX model, encode
 * back to bytes, and read the int64 fields protobufjs hands out as `Long` objects.
 */
import './long-support.ts'; // before onnx-proto: protobufjs picks up Long when it loads
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

// onnx-proto is CommonJS assigning `module.exports = $root`, so Node's ESM loader exposes only the
// default export; a named `import { onnx }` would be undefined at runtime.
export const { onnx } = onnxProto;

export type ModelProto = OnnxTypes.ModelProto;
export type ModelProtoInit = OnnxTypes.IModelProto;
export type GraphProtoInit = OnnxTypes.IGraphProto;
export type NodeProtoInit = OnnxTypes.INodeProto;
export type TensorProtoInit = OnnxTypes.ITensorProto;
export type ValueInfoProtoInit = OnnxTypes.IValueInfoProto;
export type AttributeProtoInit = OnnxTypes.IAttributeProto;

/**
 * An int64 field as protobufjs gives it: a number when encoded from one, a `Long` when decoded.
 * `Long` comes from long-support.ts (a runtime require of `long` would fail inside a bundle).
 */
export type Int64Field = number | { low: number; high: number; unsigned: boolean; toString(radix?: number): string };

/** Bytes that are not a (complete) ONNX model. */
export class OnnxFormatError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OnnxFormatError';
  }
}

/**
 * Decodes an ONNX model. protobuf is permissive (most byte strings decode to *something*), so after
 * the wire-level decode this also requires what every real model has: an IR version, an opset import
 * and a graph.
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  if (bytes.byteLength === 0) {
    throw new OnnxFormatError('not an ONNX model: the input is empty (0 bytes)');
  }
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new OnnxFormatError(
      `not an ONNX model: protobuf decode of ${bytes.byteLength} bytes failed (${reason}); the file is truncated or not ONNX`,
      { cause: error },
    );
  }
  const irVersion = int64ToNumber(model.irVersion);
  if (irVersion <= 0) {
    throw new OnnxFormatError(`not an ONNX model: ir_version is missing or ${irVersion} (${bytes.byteLength} bytes)`);
  }
  if (model.opsetImport.length === 0) {
    throw new OnnxFormatError(`not an ONNX model: no opset_import (ir_version ${irVersion}, ${bytes.byteLength} bytes)`);
  }
  if (!model.graph) {
    throw new OnnxFormatError(`not an ONNX model: no graph (ir_version ${irVersion}, ${bytes.byteLength} bytes)`);
  }
  return model;
}

export function encodeModel(model: ModelProtoInit): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** An int64 field as a bigint, exact for every value. */
export function int64ToBigInt(value: Int64Field | null | undefined): bigint {
  if (value === null || value === undefined) return 0n;
  if (typeof value === 'number') return BigInt(value);
  return BigInt(value.toString(10));
}

/** An int64 field as a number; throws rather than silently rounding beyond 2^53. */
export function int64ToNumber(value: Int64Field | null | undefined): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  const big = int64ToBigInt(value);
  const asNumber = Number(big);
  if (!Number.isSafeInteger(asNumber)) {
    throw new RangeError(`int64 value ${big} is outside the safe integer range of a number`);
  }
  return asNumber;
}

/** The ai.onnx opset a model imports (domain "" or "ai.onnx"), or undefined if it imports none. */
export function defaultOpsetVersion(model: ModelProto): number | undefined {
  const entry = model.opsetImport.find((opset) => !opset.domain || opset.domain === 'ai.onnx');
  return entry ? int64ToNumber(entry.version) : undefined;
}

/** metadata_props as a plain record. */
export function modelMetadata(model: ModelProto): Record<string, string> {
  return Object.fromEntries(model.metadataProps.map((entry) => [entry.key ?? '', entry.value ?? '']));
}

type TensorProtoLike = Pick<OnnxTypes.ITensorProto, 'name' | 'dataType' | 'rawData' | 'floatData' | 'int64Data'>;

function rawView(tensor: TensorProtoLike): DataView | undefined {
  const raw = tensor.rawData;
  if (!raw || raw.byteLength === 0) return undefined;
  // protobufjs hands raw_data out as a view into the whole decoded buffer, never as a copy.
  return new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
}

function requireDataType(tensor: TensorProtoLike, expected: number, expectedName: string): void {
  if (tensor.dataType !== expected) {
    throw new OnnxFormatError(`tensor "${tensor.name ?? ''}" has data_type ${tensor.dataType}, not ${expectedName} (${expected})`);
  }
}

/** The values of an FP32 tensor, from raw_data (little-endian) or float_data. */
export function readFloat32Tensor(tensor: TensorProtoLike): Float32Array {
  requireDataType(tensor, onnx.TensorProto.DataType.FLOAT, 'FLOAT');
  const view = rawView(tensor);
  if (!view) return Float32Array.from(tensor.floatData ?? []);
  const values = new Float32Array(view.byteLength / 4);
  for (let index = 0; index < values.length; index++) values[index] = view.getFloat32(index * 4, true);
  return values;
}

/** The values of an INT64 tensor, from raw_data (little-endian) or int64_data. */
export function readInt64Tensor(tensor: TensorProtoLike): BigInt64Array {
  requireDataType(tensor, onnx.TensorProto.DataType.INT64, 'INT64');
  const view = rawView(tensor);
  if (!view) return BigInt64Array.from((tensor.int64Data ?? []).map((value) => int64ToBigInt(value)));
  const values = new BigInt64Array(view.byteLength / 8);
  for (let index = 0; index < values.length; index++) values[index] = view.getBigInt64(index * 8, true);
  return values;
}
