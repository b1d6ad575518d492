import type { S3Client } from '@aws-sdk/client-s3';
import { BadRequestError } from '../../platform/errors.ts';
import { ELEMENT_ARRAYS, type ElementType, type NumericArray } from './elements.ts';
import { getBytes, readOncePerVersion, type ObjectRef } from './ranged.ts';
import type { ScratchArena } from './scratch.ts';

/**
 * NumPy arrays as batch input: an `.npy` file is one array whose first axis is rows; an `.npz` file
 * (np.savez) holds one `.npy` per input, stored uncompressed in a zip. Both are read by byte range:
 * the header (and for `.npz` the zip directory) at planning and in each shard, then exactly the
 * bytes of the shard's rows. np.savez_compressed deflates its entries, which no byte range can
 * address, so such files are refused at submission.
 */
export interface NpyArray {
  /** The array's name: the input it feeds in an `.npz`, the file's own name for an `.npy`. */
  name: string;
  element: ElementType;
  shape: number[];
  /** Byte offset of the first row in the object. */
  dataOffset: number;
  rowElements: number;
  rowBytes: number;
  rows: number;
}

const DESCR: Record<string, ElementType> = {
  '|u1': 'u1',
  '|i1': 'i1',
  '|b1': 'b1',
  '<u2': 'u2',
  '<i2': 'i2',
  '<u4': 'u4',
  '<i4': 'i4',
  '<u8': 'u8',
  '<i8': 'i8',
  '<f4': 'f4',
  '<f8': 'f8',
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** The header's length in bytes and where its dictionary starts, or undefined when `bytes` is too short to tell. */
function headerExtent(bytes: Uint8Array, where: string): { dictAt: number; end: number } | undefined {
  if (bytes.length < 10) return undefined;
  if (!MAGIC.every((b, i) => bytes[i] === b)) throw new BadRequestError(`${where} is not a NumPy .npy array (no \\x93NUMPY magic)`);
  const major = bytes[6]!;
  if (major === 1) return { dictAt: 10, end: 10 + (bytes[8]! | (bytes[9]! << 8)) };
  if (major === 2 || major === 3) {
    if (bytes.length < 12) return undefined;
    return { dictAt: 12, end: 12 + new DataView(bytes.buffer, bytes.byteOffset + 8, 4).getUint32(0, true) };
  }
  throw new BadRequestError(`${where} is a .npy file of format version ${major}, which is not supported`);
}

/** Parses the header's Python dict literal: descr, fortran_order, shape. */
export function parseNpyHeader(bytes: Uint8Array, where: string, name: string, offset: number): NpyArray {
  const extent = headerExtent(bytes, where);
  if (!extent || bytes.length < extent.end) throw new BadRequestError(`${where}: the .npy header is truncated`);
  const text = new TextDecoder('latin1').decode(bytes.subarray(extent.dictAt, extent.end));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new BadRequestError(`${where}: the .npy header is malformed: ${text.slice(0, 120)}`);
  const element = DESCR[descr];
  if (!element) throw new BadRequestError(`${where}: dtype '${descr}' is not supported (little-endian integers, float32/float64 and bool are)`);
  if (fortran === 'True') throw new BadRequestError(`${where}: the array is in Fortran order; save it C-ordered (np.ascontiguousarray) so rows are contiguous`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (shape.length === 0 || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new BadRequestError(`${where}: shape (${shapeText}) needs a first axis of rows`);
  const rowElements = shape.slice(1).reduce((a, b) => a * b, 1);
  const rowBytes = rowElements * ELEMENT_ARRAYS[element].BYTES_PER_ELEMENT;
  return { name, element, shape, dataOffset: offset + extent.end, rowElements, rowBytes, rows: shape[0]! };
}

async function readNpyHeaderAt(s3: S3Client, object: ObjectRef, offset: number, name: string, where: string): Promise<NpyArray> {
  let bytes = await getBytes(s3, object, offset, offset + 256);
  const extent = headerExtent(bytes, where);
  if (!extent) throw new BadRequestError(`${where}: the .npy header is truncated`);
  if (extent.end > bytes.length) {
    if (extent.end > 1024 * 1024) throw new BadRequestError(`${where}: the .npy header claims ${extent.end} bytes`);
    bytes = await getBytes(s3, object, offset, offset + extent.end);
  }
  const array = parseNpyHeader(bytes, where, name, offset);
  const dataEnd = array.dataOffset + array.rows * array.rowBytes;
  if (dataEnd > object.size) throw new BadRequestError(`${where}: shape (${array.shape.join(', ')}) needs ${dataEnd} bytes but the file has ${object.size}`);
  return array;
}

export function readNpy(s3: S3Client, object: ObjectRef, name: string): Promise<NpyArray> {
  return readOncePerVersion(object, `npy header ${name}`, () => readNpyHeaderAt(s3, object, 0, name, `s3://${object.bucket}/${object.key}`));
}

const u16 = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);
const u32 = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
const u64 = (b: Uint8Array, at: number) => u32(b, at) + u32(b, at + 4) * 2 ** 32;

/** The arrays of an `.npz`, from its zip central directory (zip64 included: np.savez writes it). */
export function readNpz(s3: S3Client, object: ObjectRef): Promise<NpyArray[]> {
  return readOncePerVersion(object, 'npz directory', () => readNpzDirectory(s3, object));
}

async function readNpzDirectory(s3: S3Client, object: ObjectRef): Promise<NpyArray[]> {
  const where = `s3://${object.bucket}/${object.key}`;
  const tailStart = Math.max(0, object.size - (22 + 65535 + 20));
  const tail = await getBytes(s3, object, tailStart, object.size);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (u32(tail, i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd === -1) throw new BadRequestError(`${where} is not an .npz (zip) file: no end of central directory`);
  let entries = u16(tail, eocd + 10);
  let cdSize = u32(tail, eocd + 12);
  let cdOffset = u32(tail, eocd + 16);
  if (entries === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || u32(tail, locator) !== 0x07064b50) throw new BadRequestError(`${where}: zip64 end of central directory locator missing`);
    const record = await getBytes(s3, object, u64(tail, locator + 8), u64(tail, locator + 8) + 56);
    if (u32(record, 0) !== 0x06064b50) throw new BadRequestError(`${where}: zip64 end of central directory record missing`);
    entries = u64(record, 32);
    cdSize = u64(record, 40);
    cdOffset = u64(record, 48);
  }
  const cd = await getBytes(s3, object, cdOffset, cdOffset + cdSize);
  const arrays: NpyArray[] = [];
  let at = 0;
  for (let e = 0; e < entries; e++) {
    if (u32(cd, at) !== 0x02014b50) throw new BadRequestError(`${where}: malformed zip central directory`);
    const method = u16(cd, at + 10);
    let compressed = u32(cd, at + 20);
    let uncompressed = u32(cd, at + 24);
    const nameLength = u16(cd, at + 28);
    const extraLength = u16(cd, at + 30);
    const commentLength = u16(cd, at + 32);
    let localOffset = u32(cd, at + 42);
    const fileName = new TextDecoder().decode(cd.subarray(at + 46, at + 46 + nameLength));
    // Zip64 extra field: the 64-bit values of exactly those fields that hold 0xFFFFFFFF.
    for (let x = at + 46 + nameLength; x < at + 46 + nameLength + extraLength; ) {
      const id = u16(cd, x);
      const size = u16(cd, x + 2);
      if (id === 0x0001) {
        let f = x + 4;
        if (uncompressed === 0xffffffff) {
          uncompressed = u64(cd, f);
          f += 8;
        }
        if (compressed === 0xffffffff) {
          compressed = u64(cd, f);
          f += 8;
        }
        if (localOffset === 0xffffffff) localOffset = u64(cd, f);
      }
      x += 4 + size;
    }
    at += 46 + nameLength + extraLength + commentLength;
    if (!fileName.endsWith('.npy')) continue;
    const name = fileName.slice(0, -4);
    if (method !== 0) {
      throw new BadRequestError(`${where}: array '${name}' is compressed (np.savez_compressed); batch input reads rows by byte range, so save it with np.savez`);
    }
    const local = await getBytes(s3, object, localOffset, localOffset + 30);
    if (u32(local, 0) !== 0x04034b50) throw new BadRequestError(`${where}: malformed zip local header for '${fileName}'`);
    const dataAt = localOffset + 30 + u16(local, 26) + u16(local, 28);
    const array = await readNpyHeaderAt(s3, object, dataAt, name, `${where} array '${name}'`);
    if (array.dataOffset + array.rows * array.rowBytes > dataAt + uncompressed) throw new BadRequestError(`${where}: array '${name}' is shorter than its shape`);
    arrays.push(array);
  }
  return arrays;
}

/** Rows [from, to) of the array, one ranged GET, as a typed array of its own element type (over arena memory with an arena). */
export async function readNpyRows(s3: S3Client, object: ObjectRef, array: NpyArray, from: number, to: number, arena?: ScratchArena): Promise<NumericArray> {
  const bytes = await getBytes(s3, object, array.dataOffset + from * array.rowBytes, array.dataOffset + to * array.rowBytes, arena);
  const Ctor = ELEMENT_ARRAYS[array.element];
  const count = (to - from) * array.rowElements;
  if (bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(bytes.buffer, bytes.byteOffset, count);
  return new Ctor(bytes.slice().buffer, 0, count);
}
