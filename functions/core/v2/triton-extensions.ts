/**
 * Triton's extensions that its clients call beside the V2 protocol: classification (`class_count`
 * on a requested output) and model configuration (`GET .../config`, which perf_analyzer and Model
 * Analyzer read at startup). Free of any transport.
 */
import { BadRequestError } from '../platform/errors.ts';
import type { V2Datatype } from './datatypes.ts';
import type { TensorMetadata } from './schemas.ts';

/**
 * A model "batches" in Triton's sense (max_batch_size > 0) when every input and output has a
 * dynamic first dimension: that dimension is the batch, and Triton's dims leave it out.
 */
export function modelBatches(inputs: readonly TensorMetadata[], outputs: readonly TensorMetadata[]): boolean {
  const all = [...inputs, ...outputs];
  return inputs.length > 0 && all.every((t) => t.shape.length > 0 && t.shape[0] === -1);
}

/**
 * The max_batch_size the config reports for a batching model. The protocol has no limit of its own
 * (the body limit bounds a request); perf_analyzer only checks its -b against this.
 */
export const CONFIG_MAX_BATCH_SIZE = 1024;

const TRITON_TYPES: Record<V2Datatype, string> = {
  BOOL: 'TYPE_BOOL', UINT8: 'TYPE_UINT8', UINT16: 'TYPE_UINT16', UINT32: 'TYPE_UINT32', UINT64: 'TYPE_UINT64',
  INT8: 'TYPE_INT8', INT16: 'TYPE_INT16', INT32: 'TYPE_INT32', INT64: 'TYPE_INT64',
  FP16: 'TYPE_FP16', FP32: 'TYPE_FP32', FP64: 'TYPE_FP64', BYTES: 'TYPE_STRING',
};

export interface TritonModelConfig {
  name: string;
  platform: 'onnxruntime_onnx';
  backend: 'onnxruntime';
  version_policy: { specific: { versions: number[] } };
  max_batch_size: number;
  input: { name: string; data_type: string; dims: number[] }[];
  output: { name: string; data_type: string; dims: number[]; label_filename?: string }[];
  default_model_filename: 'model.onnx';
}

/** Triton's model configuration (its JSON form) for one version of a model. */
export function tritonModelConfig(name: string, version: string, inputs: readonly TensorMetadata[], outputs: readonly TensorMetadata[]): TritonModelConfig {
  const batches = modelBatches(inputs, outputs);
  const entry = (t: TensorMetadata) => ({ name: t.name, data_type: TRITON_TYPES[t.datatype], dims: batches ? t.shape.slice(1) : [...t.shape] });
  return {
    name,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy: { specific: { versions: [Number(version)] } },
    max_batch_size: batches ? CONFIG_MAX_BATCH_SIZE : 0,
    input: inputs.map(entry),
    output: outputs.map(entry),
    default_model_filename: 'model.onnx',
  };
}

/** The `classification` parameter of a requested output (tritonclient's class_count): a positive integer. */
export function classCountOf(output: string, parameters: Record<string, unknown> | undefined): number | undefined {
  const value = parameters?.classification;
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new BadRequestError(`output '${output}': parameters.classification must be a positive integer (the number of top classes), got ${JSON.stringify(value)}`);
  }
  return value;
}

type Numeric = ArrayLike<number> | ArrayLike<bigint>;

/** A value as Triton's std::to_string writes it: floats with six decimals, integers exactly, bools as 0/1. */
function formatValue(datatype: V2Datatype, value: number | bigint): string {
  if (typeof value === 'bigint') return value.toString();
  if (datatype === 'FP16' || datatype === 'FP32' || datatype === 'FP64') return value.toFixed(6);
  return String(value);
}

/**
 * Triton's classification form of an output: for each batch row (the whole tensor when the model
 * does not batch), the `count` highest-valued elements, highest first (equal values by lower index),
 * each as "<value>:<index>[:<label>]"; BYTES of shape [batch, k] (or [k]), k = min(count, classes).
 */
export function classify(
  output: { name: string; datatype: V2Datatype; shape: readonly number[]; data: unknown },
  count: number,
  batched: boolean,
  labels: readonly string[] | undefined,
): { shape: number[]; data: string[] } {
  if (output.datatype === 'BYTES') throw new BadRequestError(`output '${output.name}' is BYTES: classification needs a numeric output`);
  const values = output.data as Numeric;
  const rows = batched && output.shape.length > 0 ? output.shape[0]! : 1;
  const perRow = rows === 0 ? 0 : values.length / rows;
  const k = Math.min(count, perRow);
  const data: string[] = [];
  for (let row = 0; row < rows; row++) {
    const base = row * perRow;
    const order = Array.from({ length: perRow }, (_, i) => i);
    order.sort((a, b) => {
      const va = values[base + a]!;
      const vb = values[base + b]!;
      return va > vb ? -1 : va < vb ? 1 : a - b;
    });
    for (let j = 0; j < k; j++) {
      const index = order[j]!;
      const label = labels?.[index];
      data.push(`${formatValue(output.datatype, values[base + index]!)}:${index}${label !== undefined && label !== '' ? `:${label}` : ''}`);
    }
  }
  return { shape: batched && output.shape.length > 0 ? [rows, k] : [k], data };
}

/**
 * Class labels a model carries in its metadata_props under the key `labels`: a JSON array of strings
 * (for every output) or a JSON object of arrays by output name. Read from the ONNX bytes with a
 * protobuf walk of ModelProto's top level (field 14, StringStringEntryProto key 1 / value 2), so the
 * serving bundle needs no ONNX schema.
 */
export function metadataLabels(onnx: Uint8Array): Record<string, string[]> | string[] | undefined {
  const props = metadataProps(onnx);
  const raw = props.get('labels');
  if (raw === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined; // not our convention: the model has no labels for us
  }
  const isList = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (isList(parsed)) return parsed;
  if (parsed && typeof parsed === 'object' && Object.values(parsed).every(isList)) return parsed as Record<string, string[]>;
  return undefined;
}

/** metadata_props of an ONNX ModelProto; an empty map for bytes that are not one. */
export function metadataProps(bytes: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const text = new TextDecoder();
  const walk = (from: number, to: number, visit: (field: number, start: number, end: number) => void): boolean => {
    let at = from;
    const varint = (): number => {
      let value = 0;
      let scale = 1;
      for (let i = 0; i < 10; i++) {
        if (at >= to) throw new RangeError('truncated');
        const b = bytes[at++]!;
        value += (b & 0x7f) * scale;
        if (b < 0x80) return value;
        scale *= 128;
      }
      throw new RangeError('varint too long');
    };
    try {
      while (at < to) {
        const key = varint();
        const field = Math.floor(key / 8);
        switch (key & 7) {
          case 0: varint(); break;
          case 1: at += 8; break;
          case 5: at += 4; break;
          case 2: {
            const length = varint();
            if (at + length > to) return false;
            visit(field, at, at + length);
            at += length;
            break;
          }
          default: return false;
        }
      }
      return at === to;
    } catch {
      return false; // not a protobuf message: no metadata to read
    }
  };
  walk(0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    let key: string | undefined;
    let value = '';
    walk(start, end, (f, s, e) => {
      if (f === 1) key = text.decode(bytes.subarray(s, e));
      else if (f === 2) value = text.decode(bytes.subarray(s, e));
    });
    if (key !== undefined) out.set(key, value);
  });
  return out;
}
