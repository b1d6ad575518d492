import { brotliDecompressSync, gunzipSync, zstdDecompressSync } from 'node:zlib';
import type { NumericArray, NumericArrayConstructor } from './elements.ts';
import type { ScratchArena } from './scratch.ts';
import { snappyUncompressInPlace } from './snappy/snappy.ts';

/**
 * A column chunk's pages decoded straight into one typed array of leaf values, with its definition
 * and repetition levels as byte arrays. hyparquet assembles list columns into one JavaScript array
 * per row (measured: 150 µs a 784-float row, more than the model takes to score it), so tensor
 * columns are decoded here instead: PLAIN values become a typed-array copy, dictionary indices one
 * gather. Pages this decoder does not know (other encodings or codecs) raise
 * UnsupportedPageError, and the caller reads that chunk through hyparquet.
 */
export class UnsupportedPageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedPageError';
  }
}

/** A reader of Thrift's compact protocol, enough for page headers: structs as field-id maps. */
class Thrift {
  offset: number;
  private readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array, offset: number) {
    this.bytes = bytes;
    this.offset = offset;
  }

  private byte(): number {
    if (this.offset >= this.bytes.length) throw new Error('parquet page header runs past the column chunk');
    return this.bytes[this.offset++]!;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw new Error('parquet page header has a malformed varint');
    }
  }

  private zigzag(): number {
    const n = this.varint();
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  }

  private value(type: number): unknown {
    switch (type) {
      case 1:
        return true;
      case 2:
        return false;
      case 3:
        return this.byte();
      case 4:
      case 5:
      case 6:
        return this.zigzag();
      case 7:
        this.offset += 8;
        return undefined;
      case 8: {
        const length = this.varint();
        this.offset += length;
        return undefined;
      }
      case 9:
      case 10: {
        const header = this.byte();
        const size = header >> 4 === 15 ? this.varint() : header >> 4;
        const elementType = header & 0x0f;
        for (let i = 0; i < size; i++) this.value(elementType === 1 || elementType === 2 ? 3 : elementType);
        return undefined;
      }
      case 11: {
        const size = this.varint();
        if (size > 0) {
          const kinds = this.byte();
          for (let i = 0; i < size; i++) {
            this.value(kinds >> 4);
            this.value(kinds & 0x0f);
          }
        }
        return undefined;
      }
      case 12:
        return this.struct();
      default:
        throw new Error(`parquet page header has an unknown thrift type ${type}`);
    }
  }

  struct(): Map<number, unknown> {
    const fields = new Map<number, unknown>();
    let last = 0;
    for (;;) {
      const header = this.byte();
      const type = header & 0x0f;
      if (type === 0) return fields;
      const delta = header >> 4;
      const id = delta === 0 ? this.zigzag() : last + delta;
      last = id;
      fields.set(id, this.value(type));
    }
  }
}

const int = (fields: Map<number, unknown>, id: number): number => {
  const v = fields.get(id);
  if (typeof v !== 'number') throw new Error(`parquet page header lacks field ${id}`);
  return v;
};

/** The leaf column's physical type and where it sits in the schema. */
export interface LeafColumn {
  physical: 'BOOLEAN' | 'INT32' | 'INT64' | 'FLOAT' | 'DOUBLE';
  codec: string;
  maxDefinition: number;
  maxRepetition: number;
  /** Number of level/value entries in the chunk (from its metadata). */
  numValues: number;
}

export interface DecodedChunk {
  /** Leaf values in order, nulls left out. */
  values: NumericArray;
  /** One per entry; undefined when the column has no definition levels (all present). */
  definition: Uint8Array | undefined;
  repetition: Uint8Array | undefined;
}

const PLAIN = 0;
const PLAIN_DICTIONARY = 2;
const RLE = 3;
const RLE_DICTIONARY = 8;
const BYTE_STREAM_SPLIT = 9;

const ARRAYS: Record<Exclude<LeafColumn['physical'], 'BOOLEAN'>, NumericArrayConstructor> = {
  INT32: Int32Array,
  INT64: BigInt64Array,
  FLOAT: Float32Array,
  DOUBLE: Float64Array,
};

/**
 * A page's bytes decompressed. A snappy page lies in the WebAssembly decompressor's memory, which
 * the next page's decompression overwrites: each page is read, or copied, before the next.
 */
function decompress(codec: string, bytes: Uint8Array, uncompressedSize: number): Uint8Array {
  switch (codec) {
    case 'UNCOMPRESSED':
      return bytes;
    case 'SNAPPY':
      return snappyUncompressInPlace(bytes, uncompressedSize);
    case 'GZIP':
      return gunzipSync(bytes);
    case 'ZSTD':
      return zstdDecompressSync(bytes);
    case 'BROTLI':
      return brotliDecompressSync(bytes);
    default:
      throw new UnsupportedPageError(`codec ${codec}`);
  }
}

const bitWidthOf = (max: number) => (max === 0 ? 0 : 32 - Math.clz32(max));

/** One run of the RLE/bit-packed hybrid: a repeated value, or `count` bit-packed values (groups of 8). */
function readRun(bytes: Uint8Array, offset: number, end: number, valueBytes: number, what: string): { rle: boolean; count: number; value: number; next: number } {
  if (offset >= end) throw new Error(`parquet ${what} end early`);
  let header = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[offset++]!;
    header += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
    shift += 7;
  }
  if (header % 2 === 1) return { rle: false, count: Math.floor(header / 2) * 8, value: 0, next: offset };
  let value = 0;
  for (let i = 0; i < valueBytes; i++) value |= bytes[offset++]! << (8 * i);
  return { rle: true, count: header / 2, value, next: offset };
}

/** Decodes `count` values of the RLE/bit-packed hybrid into `out` from `at`; returns the end offset read. */
function readHybrid(bytes: Uint8Array, offset: number, end: number, bitWidth: number, count: number, out: Uint8Array): number {
  let filled = 0;
  const valueBytes = (bitWidth + 7) >> 3;
  while (filled < count) {
    const run = readRun(bytes, offset, end, valueBytes, 'levels');
    offset = run.next;
    if (run.rle) {
      const length = Math.min(run.count, count - filled);
      out.fill(run.value, filled, filled + length);
      filled += length;
    } else {
      const groups = run.count / 8;
      const take = Math.min(run.count, count - filled);
      if (bitWidth === 8) {
        out.set(bytes.subarray(offset, offset + take), filled);
      } else {
        if (bitWidth > 24) throw new UnsupportedPageError(`bit width ${bitWidth}`);
        const mask = (1 << bitWidth) - 1;
        let buffer = 0;
        let bits = 0;
        let p = offset;
        for (let i = filled; i < filled + take; i++) {
          while (bits < bitWidth) {
            buffer |= bytes[p++]! << bits;
            bits += 8;
          }
          out[i] = buffer & mask;
          buffer >>>= bitWidth;
          bits -= bitWidth;
        }
      }
      filled += take;
      offset += groups * bitWidth;
    }
  }
  return offset;
}

/**
 * Checks `count` repetition levels (maximum 1) of the RLE/bit-packed hybrid, the first at entry
 * `first` of the chunk, against rows of exactly `perRow` entries: level 0 exactly at the multiples of
 * `perRow`. Reads runs and whole bytes, never a level at a time, and stores nothing.
 */
function repetitionIsRegular(bytes: Uint8Array, offset: number, end: number, count: number, first: number, perRow: number): boolean {
  let position = first;
  const stop = first + count;
  while (position < stop) {
    const run = readRun(bytes, offset, end, 1, 'levels');
    offset = run.next;
    const length = Math.min(run.count, stop - position);
    // The first row start at or after `position`.
    const nextStart = Math.ceil(position / perRow) * perRow;
    if (run.rle) {
      if (run.value === 0) {
        if (perRow !== 1 && !(length === 1 && nextStart === position)) return false;
      } else if (run.value !== 1 || nextStart < position + length) {
        return false;
      }
    } else {
      let start = nextStart;
      for (let k = 0; k * 8 < length; k++) {
        const from = position + k * 8;
        const valid = Math.min(8, length - k * 8);
        let expected = (1 << valid) - 1;
        while (start < from + valid) {
          expected &= ~(1 << (start - from));
          start += perRow;
        }
        if ((bytes[offset + k]! & ((1 << valid) - 1)) !== expected) return false;
      }
      offset += run.count / 8;
    }
    position += length;
  }
  return true;
}

/** Whether `count` definition levels of the hybrid are all `max` (every entry holds a value); stores nothing. */
function definitionIsFull(bytes: Uint8Array, offset: number, end: number, bitWidth: number, count: number, max: number): boolean {
  const valueBytes = (bitWidth + 7) >> 3;
  let checked = 0;
  while (checked < count) {
    const run = readRun(bytes, offset, end, valueBytes, 'levels');
    offset = run.next;
    const length = Math.min(run.count, count - checked);
    if (run.rle) {
      if (run.value !== max) return false;
    } else {
      const mask = (1 << bitWidth) - 1;
      let buffer = 0;
      let bits = 0;
      let p = offset;
      for (let i = 0; i < length; i++) {
        while (bits < bitWidth) {
          buffer |= bytes[p++]! << bits;
          bits += 8;
        }
        if ((buffer & mask) !== max) return false;
        buffer >>>= bitWidth;
        bits -= bitWidth;
      }
      offset += (run.count / 8) * bitWidth;
    }
    checked += length;
  }
  return true;
}

function readPlain(physical: LeafColumn['physical'], bytes: Uint8Array, offset: number, count: number): NumericArray {
  if (physical === 'BOOLEAN') {
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) out[i] = (bytes[offset + (i >> 3)]! >> (i & 7)) & 1;
    return out;
  }
  const Values = ARRAYS[physical];
  const size = Values.BYTES_PER_ELEMENT;
  if (offset + count * size > bytes.length) throw new Error('parquet page has fewer values than it says');
  const at = bytes.byteOffset + offset;
  // A view when aligned; otherwise one copy of the bytes (never a per-value loop).
  if (at % size === 0) return new Values(bytes.buffer, at, count);
  return new Values(bytes.slice(offset, offset + count * size).buffer, 0, count);
}

/**
 * Bit-packed dictionary indices looked up into float32 values (the common case: a float32 model fed
 * from a dictionary page), in a function of its own so its typed-array accesses stay monomorphic:
 * the shared loop in readDictionary sees every element type and runs several times slower.
 */
function gatherFloat32(bytes: Uint8Array, offset: number, bitWidth: number, dictionary: Float32Array, out: Float32Array, from: number, to: number): void {
  const size = dictionary.length;
  if (bitWidth === 8) {
    for (let i = from, p = offset; i < to; i++, p++) {
      const index = bytes[p]!;
      if (index >= size) throw new Error(`parquet dictionary index ${index} is out of range (${size} entries)`);
      out[i] = dictionary[index]!;
    }
    return;
  }
  const mask = (1 << bitWidth) - 1;
  // Each index from one unaligned little-endian 32-bit read at its byte, without a data-dependent
  // branch (a width such as 9 otherwise mispredicts whether one or two bytes come next); the last
  // indices, whose four bytes would run past the page, and widths over 25 take the buffered loop
  // (whose accesses are polymorphic, but it runs for a few indices here).
  let i = from;
  let bit = offset * 8;
  if (bitWidth <= 25) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const lastByte = bytes.length - 4;
    if (bitWidth <= 12) {
      // Two indices from each read (its 32 bits hold two after a shift of up to 7), eight a turn:
      // fewer reads and loop steps, the part of this loop that costs.
      const pair = 2 * bitWidth;
      for (; i + 8 <= to && (bit + 3 * pair) >>> 3 <= lastByte; i += 8, bit += 4 * pair) {
        const w0 = view.getUint32(bit >>> 3, true) >>> (bit & 7);
        const w1 = view.getUint32((bit + pair) >>> 3, true) >>> ((bit + pair) & 7);
        const w2 = view.getUint32((bit + 2 * pair) >>> 3, true) >>> ((bit + 2 * pair) & 7);
        const w3 = view.getUint32((bit + 3 * pair) >>> 3, true) >>> ((bit + 3 * pair) & 7);
        const a = w0 & mask, b = (w0 >>> bitWidth) & mask, c = w1 & mask, d = (w1 >>> bitWidth) & mask;
        const e = w2 & mask, f = (w2 >>> bitWidth) & mask, g = w3 & mask, h = (w3 >>> bitWidth) & mask;
        if (a >= size || b >= size || c >= size || d >= size || e >= size || f >= size || g >= size || h >= size) {
          throw new Error(`parquet dictionary index ${Math.max(a, b, c, d, e, f, g, h)} is out of range (${size} entries)`);
        }
        out[i] = dictionary[a]!;
        out[i + 1] = dictionary[b]!;
        out[i + 2] = dictionary[c]!;
        out[i + 3] = dictionary[d]!;
        out[i + 4] = dictionary[e]!;
        out[i + 5] = dictionary[f]!;
        out[i + 6] = dictionary[g]!;
        out[i + 7] = dictionary[h]!;
      }
    }
    for (; i < to && bit >>> 3 <= lastByte; i++, bit += bitWidth) {
      const index = (view.getUint32(bit >>> 3, true) >>> (bit & 7)) & mask;
      if (index >= size) throw new Error(`parquet dictionary index ${index} is out of range (${size} entries)`);
      out[i] = dictionary[index]!;
    }
  }
  gatherBuffered(bytes, bit, bitWidth, dictionary, out, i, to);
}

/**
 * Bit-packed dictionary indices from bit `bit` of `bytes` looked up into `out[from, to)`, for any
 * element type, through a bit buffer filled a byte at a time.
 */
function gatherBuffered(bytes: Uint8Array, bit: number, bitWidth: number, dictionary: NumericArray, out: NumericArray, from: number, to: number): void {
  const dict = dictionary as Float64Array;
  const target = out as Float64Array;
  const size = dict.length;
  const mask = (1 << bitWidth) - 1;
  let p = bit >>> 3;
  let buffer = 0;
  let bits = 0;
  if ((bit & 7) !== 0) {
    buffer = bytes[p++]! >>> (bit & 7);
    bits = 8 - (bit & 7);
  }
  for (let i = from; i < to; i++) {
    while (bits < bitWidth) {
      buffer |= bytes[p++]! << bits;
      bits += 8;
    }
    const index = buffer & mask;
    if (index >= size) throw new Error(`parquet dictionary index ${index} is out of range (${size} entries)`);
    target[i] = dict[index]!;
    buffer >>>= bitWidth;
    bits -= bitWidth;
  }
}

/**
 * Dictionary indices (the RLE/bit-packed hybrid) looked up as they are unpacked, straight into
 * `out` from `at`: one pass, no index array.
 */
function readDictionary(bytes: Uint8Array, offset: number, bitWidth: number, count: number, dictionary: NumericArray, out: NumericArray, at: number): void {
  const dict = dictionary as Float64Array;
  const target = out as Float64Array;
  const size = dict.length;
  if (bitWidth > 24) throw new UnsupportedPageError(`dictionary index width ${bitWidth}`);
  const valueBytes = (bitWidth + 7) >> 3;
  let filled = 0;
  while (filled < count) {
    const run = readRun(bytes, offset, bytes.length, valueBytes, 'dictionary indices');
    offset = run.next;
    if (run.rle) {
      const length = Math.min(run.count, count - filled);
      if (run.value >= size) throw new Error(`parquet dictionary index ${run.value} is out of range (${size} entries)`);
      target.fill(dict[run.value]!, at + filled, at + filled + length);
      filled += length;
    } else {
      const groups = run.count / 8;
      const take = Math.min(run.count, count - filled);
      const last = at + filled + take;
      if (offset + Math.ceil((take * bitWidth) / 8) > bytes.length) throw new Error('parquet dictionary indices end early');
      if (dictionary instanceof Float32Array && out instanceof Float32Array) {
        gatherFloat32(bytes, offset, bitWidth, dictionary, out, at + filled, last);
      } else if (bitWidth === 8) {
        // Byte-wide indices (a dictionary of up to 256 values, such as uint8 pixels): no bit unpacking.
        const indices = bytes.subarray(offset, offset + take);
        if (size < 256) for (let k = 0; k < take; k++) if (indices[k]! >= size) throw new Error(`parquet dictionary index ${indices[k]} is out of range (${size} entries)`);
        for (let i = at + filled, k = 0; i < last; i++, k++) target[i] = dict[indices[k]!]!;
      } else {
        gatherBuffered(bytes, offset * 8, bitWidth, dictionary, out, at + filled, last);
      }
      filled += take;
      offset += groups * bitWidth;
    }
  }
}

function byteStreamSplit(physical: LeafColumn['physical'], bytes: Uint8Array, offset: number, count: number, out: NumericArray, at: number): void {
  const width = (out as Float32Array).BYTES_PER_ELEMENT;
  if (physical === 'BOOLEAN' || offset + count * width > bytes.length) throw new Error('parquet byte-stream-split page is malformed');
  const target = new Uint8Array(out.buffer, out.byteOffset + at * width, count * width);
  for (let b = 0; b < width; b++) {
    const stream = offset + b * count;
    for (let i = 0; i < count; i++) target[i * width + b] = bytes[stream + i]!;
  }
}

/** Entries at the maximum definition level (those that carry a value); native scans when there are no nulls. */
function presentCount(definition: Uint8Array | undefined, from: number, count: number, max: number): number {
  if (!definition || max === 0) return count;
  const levels = definition.subarray(from, from + count);
  let nulls = false;
  for (let d = 0; d < max && !nulls; d++) nulls = levels.indexOf(d) !== -1;
  if (!nulls) return count;
  let n = 0;
  for (let i = 0; i < count; i++) if (levels[i] === max) n++;
  return n;
}

/**
 * Decodes every page of one column chunk. With an arena, levels and values live in memory the
 * shard borrows (every element of them is written here before it is read).
 *
 * With `regularRows` (the values a row must have) the levels are checked as they are read instead
 * of stored: the values when every entry holds one and every row has exactly that many (the
 * returned levels are then undefined), undefined as soon as a level says otherwise, and the caller
 * decodes the chunk again with its levels to find the rows at fault.
 */
export function decodeColumnChunk(chunk: Uint8Array, leaf: LeafColumn, target?: NumericArrayConstructor, arena?: ScratchArena): DecodedChunk;
export function decodeColumnChunk(chunk: Uint8Array, leaf: LeafColumn, target: NumericArrayConstructor | undefined, arena: ScratchArena | undefined, regularRows: number): DecodedChunk | undefined;
export function decodeColumnChunk(chunk: Uint8Array, leaf: LeafColumn, target?: NumericArrayConstructor, arena?: ScratchArena, regularRows?: number): DecodedChunk | undefined {
  const total = leaf.numValues;
  const checkOnly = regularRows !== undefined;
  const levelsArray = () => (arena ? arena.array<Uint8Array>(Uint8Array, total) : new Uint8Array(total));
  const definition = leaf.maxDefinition > 0 && !checkOnly ? levelsArray() : undefined;
  const repetition = leaf.maxRepetition > 0 && !checkOnly ? levelsArray() : undefined;
  const repetitionWidth = bitWidthOf(leaf.maxRepetition);
  const definitionWidth = bitWidthOf(leaf.maxDefinition);
  /** Reads (or, checking, checks) one page's levels; false when a checked level breaks the rows. */
  const readLevels = (bytes: Uint8Array, repetitionAt: number, repetitionEnd: number, definitionAt: number, definitionEnd: number, count: number): boolean => {
    if (leaf.maxRepetition > 0) {
      if (checkOnly) {
        if (leaf.maxRepetition !== 1 || !repetitionIsRegular(bytes, repetitionAt, repetitionEnd, count, entries, regularRows)) return false;
      } else {
        readHybrid(bytes, repetitionAt, repetitionEnd, repetitionWidth, count, repetition!.subarray(entries));
      }
    }
    if (leaf.maxDefinition > 0) {
      if (checkOnly) return definitionIsFull(bytes, definitionAt, definitionEnd, definitionWidth, count, leaf.maxDefinition);
      readHybrid(bytes, definitionAt, definitionEnd, definitionWidth, count, definition!.subarray(entries));
    }
    return true;
  };
  // With a target type (an exact widening the caller checked), values land in it directly: a
  // dictionary is converted once, not every value after the gather.
  const Physical = leaf.physical === 'BOOLEAN' ? Uint8Array : ARRAYS[leaf.physical];
  const Out = leaf.physical === 'BOOLEAN' || leaf.physical === 'INT64' ? Physical : (target ?? Physical);
  const out = arena ? arena.array(Out, total) : new Out(total);
  let written = 0;
  let dictionary: NumericArray | undefined;
  let entries = 0;
  let offset = 0;
  while (entries < total) {
    if (offset >= chunk.length) throw new Error(`parquet column chunk ends after ${entries} of ${total} values`);
    const reader = new Thrift(chunk, offset);
    const header = reader.struct();
    offset = reader.offset;
    const type = int(header, 1);
    const uncompressedSize = int(header, 2);
    const compressedSize = int(header, 3);
    const body = chunk.subarray(offset, offset + compressedSize);
    if (body.length !== compressedSize) throw new Error('parquet page runs past the column chunk');
    offset += compressedSize;
    if (type === 2) {
      const dict = header.get(7) as Map<number, unknown>;
      const encoding = int(dict, 2);
      if (encoding !== PLAIN && encoding !== PLAIN_DICTIONARY) throw new UnsupportedPageError(`dictionary encoding ${encoding}`);
      const page = decompress(leaf.codec, body, uncompressedSize);
      // A copy: the page's memory is reused by the data pages that look values up in it.
      dictionary = readPlain(leaf.physical, page, 0, int(dict, 1)).slice();
      if (!(dictionary instanceof Out)) {
        const converted = new Out(dictionary.length);
        (converted as Float64Array).set(dictionary as Float64Array);
        dictionary = converted;
      }
      continue;
    }
    if (type !== 0 && type !== 3) continue; // index pages carry no values
    let count: number;
    let encoding: number;
    let levels: Uint8Array;
    let levelsEnd: number;
    let values: Uint8Array;
    let valuesAt: number;
    if (type === 0) {
      const data = header.get(5) as Map<number, unknown>;
      count = int(data, 1);
      encoding = int(data, 2);
      levels = decompress(leaf.codec, body, uncompressedSize);
      // Version 1 pages: each level stream (repetition, then definition) after its 4-byte length.
      const lengthAt = (at: number) => levels[at]! | (levels[at + 1]! << 8) | (levels[at + 2]! << 16) | (levels[at + 3]! << 24);
      const repetitionAt = leaf.maxRepetition > 0 ? 4 : 0;
      const repetitionEnd = leaf.maxRepetition > 0 ? repetitionAt + lengthAt(0) : 0;
      const definitionAt = leaf.maxDefinition > 0 ? repetitionEnd + 4 : repetitionEnd;
      const definitionEnd = leaf.maxDefinition > 0 ? definitionAt + lengthAt(repetitionEnd) : definitionAt;
      if (!readLevels(levels, repetitionAt, repetitionEnd, definitionAt, definitionEnd, count)) return undefined;
      levelsEnd = definitionEnd;
      values = levels;
      valuesAt = levelsEnd;
    } else {
      const data = header.get(8) as Map<number, unknown>;
      count = int(data, 1);
      encoding = int(data, 4);
      const defBytes = int(data, 5);
      const repBytes = int(data, 6);
      const compressed = data.get(7) !== false;
      if (!readLevels(body, 0, repBytes, repBytes, repBytes + defBytes, count)) return undefined;
      const rest = body.subarray(repBytes + defBytes);
      values = compressed ? decompress(leaf.codec, rest, uncompressedSize - repBytes - defBytes) : rest;
      valuesAt = 0;
    }
    const present = presentCount(definition, entries, count, leaf.maxDefinition);
    if (written + present > total) throw new Error('parquet column chunk has more values than its metadata says');
    if (encoding === PLAIN) {
      (out as Float64Array).set(readPlain(leaf.physical, values, valuesAt, present) as Float64Array, written);
    } else if (encoding === PLAIN_DICTIONARY || encoding === RLE_DICTIONARY) {
      if (!dictionary) throw new Error('parquet dictionary-encoded page without a dictionary page');
      if (present > 0) readDictionary(values, valuesAt + 1, values[valuesAt]!, present, dictionary, out, written);
    } else if (encoding === BYTE_STREAM_SPLIT) {
      if (Out === Physical) byteStreamSplit(leaf.physical, values, valuesAt, present, out, written);
      else {
        const raw = new Physical(present);
        byteStreamSplit(leaf.physical, values, valuesAt, present, raw, 0);
        (out as Float64Array).set(raw as Float64Array, written);
      }
    } else if (encoding === RLE && leaf.physical === 'BOOLEAN') {
      readHybrid(values, valuesAt + 4, values.length, 1, present, (out as Uint8Array).subarray(written));
    } else {
      throw new UnsupportedPageError(`value encoding ${encoding}`);
    }
    written += present;
    entries += count;
  }
  return { values: out.subarray(0, written) as NumericArray, definition, repetition };
}
