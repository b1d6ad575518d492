/**
 * The ONNX ModelProto on the wire: decode with a guard that refuses what is not an ONNX model, encode
 * back to bytes, and read the int64 fields protobufjs hands out as `Long` objects.
 */
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

/** An int64 field as protobufjs gives it: a number when encoded from one, a `Long` when decoded. */
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
