/**
 * A loop state as bytes, for a checkpoint object in the bucket: a length-prefixed JSON header
 * describing every typed array, then the arrays' bytes (little-endian, each 8-byte aligned), so a
 * checkpoint of millions of weights neither goes through JSON numbers nor loses a bit.
 */
import type { LoopState } from './loop.ts';
import type { StateValues } from './training-graph.ts';

export class CheckpointFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointFormatError';
  }
}

const formatVersion = 1;
const arrayTypes = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array } as const;
type ArrayType = keyof typeof arrayTypes;

interface ArrayEntry {
  group: 'session' | 'best';
  name: string;
  type: ArrayType;
  length: number;
}

const typeOf = (values: StateValues): ArrayType => (values instanceof Float32Array ? 'float32' : values instanceof Float64Array ? 'float64' : 'int64');
const align8 = (offset: number) => Math.ceil(offset / 8) * 8;

export function encodeCheckpoint(state: LoopState): Uint8Array {
  const arrays: [ArrayEntry, StateValues][] = [
    ...Object.entries(state.session.values).map(([name, values]): [ArrayEntry, StateValues] => [{ group: 'session', name, type: typeOf(values), length: values.length }, values]),
    ...Object.entries(state.bestValues ?? {}).map(([name, values]): [ArrayEntry, StateValues] => [{ group: 'best', name, type: typeOf(values), length: values.length }, values]),
  ];
  const header = new TextEncoder().encode(
    JSON.stringify({
      version: formatVersion,
      epoch: state.epoch,
      batch: state.batch,
      step: state.step,
      bestScore: state.bestScore,
      epochsWithoutImprovement: state.epochsWithoutImprovement,
      // JSON has no NaN: an epoch without validation rows scores null here.
      history: state.history.map((entry) => ({ ...entry, validationScore: Number.isNaN(entry.validationScore) ? null : entry.validationScore })),
      done: state.done,
      sessionStep: state.session.step,
      hasBest: state.bestValues !== null,
      arrays: arrays.map(([entry]) => entry),
    }),
  );
  let size = align8(4 + header.byteLength);
  for (const [, values] of arrays) size = align8(size + values.byteLength);
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, header.byteLength, true);
  bytes.set(header, 4);
  let offset = align8(4 + header.byteLength);
  for (const [entry, values] of arrays) {
    for (let index = 0; index < values.length; index++) {
      const at = offset + index * values.BYTES_PER_ELEMENT;
      if (entry.type === 'float32') view.setFloat32(at, values[index] as number, true);
      else if (entry.type === 'float64') view.setFloat64(at, values[index] as number, true);
      else view.setBigInt64(at, values[index] as bigint, true);
    }
    offset = align8(offset + values.byteLength);
  }
  return bytes;
}

export function decodeCheckpoint(bytes: Uint8Array): LoopState {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) throw new CheckpointFormatError(`not a training checkpoint: ${bytes.byteLength} bytes`);
  const headerLength = view.getUint32(0, true);
  if (4 + headerLength > bytes.byteLength) throw new CheckpointFormatError(`truncated training checkpoint: a ${headerLength}-byte header in ${bytes.byteLength} bytes`);
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headerLength)));
  } catch (error) {
    throw new CheckpointFormatError(`not a training checkpoint: its header is not JSON (${(error as Error).message})`);
  }
  if (header.version !== formatVersion) throw new CheckpointFormatError(`training checkpoint version ${header.version} is not ${formatVersion}`);
  const session: Record<string, StateValues> = {};
  const best: Record<string, Float32Array | Float64Array> = {};
  let offset = align8(4 + headerLength);
  for (const entry of header.arrays as ArrayEntry[]) {
    const Type = arrayTypes[entry.type];
    if (!Type) throw new CheckpointFormatError(`training checkpoint array "${entry.name}" has unknown type ${entry.type}`);
    const end = offset + entry.length * Type.BYTES_PER_ELEMENT;
    if (end > bytes.byteLength) throw new CheckpointFormatError(`truncated training checkpoint: array "${entry.name}" ends at byte ${end} of ${bytes.byteLength}`);
    const values = new Type(entry.length);
    for (let index = 0; index < entry.length; index++) {
      const at = offset + index * Type.BYTES_PER_ELEMENT;
      values[index] = entry.type === 'float32' ? view.getFloat32(at, true) : entry.type === 'float64' ? view.getFloat64(at, true) : (view.getBigInt64(at, true) as never);
    }
    if (entry.group === 'session') session[entry.name] = values;
    else best[entry.name] = values as Float32Array | Float64Array;
    offset = align8(end);
  }
  return {
    epoch: header.epoch,
    batch: header.batch,
    step: header.step,
    bestScore: header.bestScore,
    epochsWithoutImprovement: header.epochsWithoutImprovement,
    bestValues: header.hasBest ? best : null,
    history: (header.history as { epoch: number; meanLoss: number; validationScore: number | null }[]).map((entry) => ({ ...entry, validationScore: entry.validationScore ?? Number.NaN })),
    session: { step: header.sessionStep, values: session },
    done: header.done,
  };
}
