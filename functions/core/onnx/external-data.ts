/**
 * Finds tensors whose data lives in a file beside the model ("external data") anywhere in an ONNX
 * file: initializers, sparse initializers, tensor and sparse-tensor attributes, attribute defaults
 * of model-local functions, function bodies, training graphs, and every subgraph at any depth.
 *
 * It reads the protobuf wire format itself, with the field numbers of onnx.proto, rather than the
 * decoded ModelProto: the decoder we ship predates some fields (a function's `attribute_proto`) and
 * drops what it does not know, while onnxruntime reads them. Nothing but the messages that can hold
 * a tensor is visited, so a large model costs one pass over its bytes and no copies.
 */
import { OnnxFormatError } from './model-proto.ts';

type MessageKind = 'model' | 'training' | 'function' | 'graph' | 'node' | 'attribute' | 'sparse' | 'tensor';

/** onnx.proto: the fields of each message that hold a message of a kind that can (transitively) hold a tensor. */
const CHILDREN: Record<MessageKind, Readonly<Record<number, MessageKind>>> = {
  model: { 7: 'graph', 20: 'training', 25: 'function' },
  training: { 1: 'graph', 2: 'graph' },
  function: { 7: 'node', 11: 'attribute' },
  graph: { 1: 'node', 5: 'tensor', 15: 'sparse' },
  node: { 5: 'attribute' },
  attribute: { 5: 'tensor', 6: 'graph', 10: 'tensor', 11: 'graph', 22: 'sparse', 23: 'sparse' },
  sparse: { 1: 'tensor', 2: 'tensor' },
  tensor: {},
};
/** The string field that names a message, for the message that says where the tensor is. */
const NAME_FIELD: Partial<Record<MessageKind, number>> = { function: 1, graph: 2, node: 3, attribute: 1, tensor: 8 };
const NODE_OP_TYPE = 4;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;
const DATA_LOCATION_EXTERNAL = 1;
/** Deeper nesting than any real model has; bounds the walk on a hostile file. */
export const MAX_MESSAGE_DEPTH = 256;

/** A tensor in external data, and where it is, in words. */
export interface ExternalDataUse {
  where: string;
}

/** Where a message sits, as the refusal names it. */
interface Place {
  /** "graph main", "graph main/If_0.then_branch", "function \"f\"", "training graph". */
  scope: string;
  /** The path a subgraph of this scope extends (forEachGraph's naming). */
  path: string;
  node?: { name: string; opType: string };
  attribute?: string;
  /** Whether the attribute is a function's default value rather than a node's. */
  attributeDefault?: boolean;
  role?: 'initializer' | 'sparse initializer';
}

interface Pending {
  kind: MessageKind;
  start: number;
  end: number;
  depth: number;
  place: Place;
}

function quoted(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name);
}

/** The words for a tensor (or sparse tensor) at a place. */
function describe(place: Place, tensorName: string): string {
  if (place.role) return `${place.role} ${quoted(tensorName)} in ${place.scope}`;
  if (place.attributeDefault) return `the default of attribute ${quoted(place.attribute ?? '')} in ${place.scope}`;
  return `attribute ${quoted(place.attribute ?? '')} of node ${quoted(place.node?.name ?? '')} (${place.node?.opType ?? ''}) in ${place.scope}`;
}

/** The place of a child message, from its parent's place and what the parent's scan read. */
function childPlace(parent: MessageKind, place: Place, kind: MessageKind, field: number, read: { name: string; opType: string }): Place {
  switch (parent) {
    case 'model':
      if (kind === 'graph') return { scope: 'graph main', path: 'main' };
      if (kind === 'training') return { scope: 'a training graph', path: 'training' };
      return place; // a function: named once its own scan read the name
    case 'training':
      return { scope: `the training ${field === 1 ? 'initialization' : 'algorithm'} graph`, path: `training.${field === 1 ? 'initialization' : 'algorithm'}` };
    case 'function':
      return kind === 'attribute' ? { ...place, attributeDefault: true } : place;
    case 'graph':
      if (kind === 'tensor') return { ...place, role: 'initializer' };
      if (kind === 'sparse') return { ...place, role: 'sparse initializer' };
      return place;
    case 'node':
      return { ...place, node: { name: read.name, opType: read.opType } };
    case 'attribute':
      if (kind === 'graph') {
        const path = `${place.path}/${place.node?.name || place.node?.opType || 'node'}.${read.name}`;
        return { scope: `graph ${path}`, path };
      }
      return { ...place, attribute: read.name };
    default:
      return place;
  }
}

class WireReader {
  private readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  /** A varint at `at`: its value (exact below 2^53, which every length and enum here is) and its end. */
  varint(at: number, end: number): [number, number] {
    let value = 0;
    let scale = 1;
    for (let i = at; i < end && i < at + 10; i++) {
      const byte = this.bytes[i]!;
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) return [value, i + 1];
    }
    throw new OnnxFormatError(`not an ONNX model: a malformed varint at byte ${at}; the file is truncated or not ONNX`);
  }

  /** A short string field (names are shown cut to 80 characters anyway). */
  text(start: number, end: number): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, Math.min(end - start, 200)).toString('utf8');
  }
}

/**
 * Every tensor in the file that uses external data (an `external_data` entry or `data_location:
 * EXTERNAL`), in file order, up to `limit`; empty for a self-contained model. Throws
 * OnnxFormatError on a file whose wire format is broken.
 */
export function findExternalData(bytes: Uint8Array, limit = 1): ExternalDataUse[] {
  const reader = new WireReader(bytes);
  const found: ExternalDataUse[] = [];
  const stack: Pending[] = [{ kind: 'model', start: 0, end: bytes.length, depth: 0, place: { scope: 'the model', path: '' } }];
  while (stack.length > 0 && found.length < limit) {
    const message = stack.pop()!;
    if (message.depth > MAX_MESSAGE_DEPTH) {
      throw new OnnxFormatError(`not an ONNX model: messages nested deeper than ${MAX_MESSAGE_DEPTH} levels`);
    }
    const children: { kind: MessageKind; field: number; start: number; end: number }[] = [];
    const read = { name: '', opType: '' };
    let external = false;
    let at = message.start;
    while (at < message.end) {
      const [tag, afterTag] = reader.varint(at, message.end);
      const field = Math.floor(tag / 8);
      const wireType = tag % 8;
      at = afterTag;
      if (wireType === 0) {
        const [value, next] = reader.varint(at, message.end);
        if (message.kind === 'tensor' && field === TENSOR_DATA_LOCATION && value === DATA_LOCATION_EXTERNAL) external = true;
        at = next;
      } else if (wireType === 1) {
        at += 8;
      } else if (wireType === 5) {
        at += 4;
      } else if (wireType === 2) {
        const [length, start] = reader.varint(at, message.end);
        const end = start + length;
        if (end > message.end) throw new OnnxFormatError(`not an ONNX model: a field at byte ${at} runs past its message; the file is truncated or not ONNX`);
        const child = CHILDREN[message.kind][field];
        if (child) children.push({ kind: child, field, start, end });
        else if (field === NAME_FIELD[message.kind]) read.name = reader.text(start, end);
        else if (message.kind === 'node' && field === NODE_OP_TYPE) read.opType = reader.text(start, end);
        else if (message.kind === 'tensor' && field === TENSOR_EXTERNAL_DATA) external = true;
        at = end;
      } else {
        throw new OnnxFormatError(`not an ONNX model: wire type ${wireType} at byte ${at}; the file is truncated or not ONNX`);
      }
    }
    if (at > message.end) throw new OnnxFormatError('not an ONNX model: the last field runs past the end; the file is truncated or not ONNX');
    if (external) {
      found.push({ where: describe(message.place, read.name) });
      continue;
    }
    const place = message.kind === 'function' ? { scope: `function ${quoted(read.name)}`, path: `function:${read.name}` } : message.place;
    // Pushed in reverse, so the walk reports in file order.
    for (const child of children.reverse()) {
      stack.push({ kind: child.kind, start: child.start, end: child.end, depth: message.depth + 1, place: childPlace(message.kind, place, child.kind, child.field, read) });
    }
  }
  return found;
}
