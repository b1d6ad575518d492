/**
 * Reader for the IDX format of the MNIST family: two zero bytes, a type code, the number of
 * dimensions, that many big-endian uint32 sizes, then the data. Only unsigned bytes (type 0x08) are
 * supported, which is what MNIST, Fashion-MNIST and EMNIST use.
 */
import { readFile } from 'node:fs/promises';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export class IdxFormatError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IdxFormatError';
  }
}

const unsignedByteType = 0x08;
const typeNames: Record<number, string> = {
  0x08: 'uint8',
  0x09: 'int8',
  0x0b: 'int16',
  0x0c: 'int32',
  0x0d: 'float32',
  0x0e: 'float64',
};

/** Parses IDX bytes; `data` is a view into `bytes`, not a copy. */
export function parseIdx(bytes: Uint8Array): IdxArray {
  if (bytes.byteLength >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw new IdxFormatError('not an IDX file: it is gzip-compressed; gunzip it first');
  }
  if (bytes.byteLength < 4) {
    throw new IdxFormatError(`not an IDX file: ${bytes.byteLength} bytes is shorter than the 4-byte magic number`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(0) !== 0) {
    throw new IdxFormatError(
      `not an IDX file: the magic number must start with two zero bytes, got 0x${view.getUint32(0).toString(16).padStart(8, '0')}`,
    );
  }
  const typeCode = view.getUint8(2);
  if (typeCode !== unsignedByteType) {
    const typeName = typeNames[typeCode];
    throw new IdxFormatError(
      typeName
        ? `unsupported IDX element type ${typeName} (0x${typeCode.toString(16).padStart(2, '0')}); only uint8 (0x08) is supported`
        : `not an IDX file: unknown element type code 0x${typeCode.toString(16).padStart(2, '0')}`,
    );
  }
  const rank = view.getUint8(3);
  if (rank === 0) throw new IdxFormatError('not an IDX file: the number of dimensions is 0');
  const headerBytes = 4 + rank * 4;
  if (bytes.byteLength < headerBytes) {
    throw new IdxFormatError(
      `truncated IDX file: the header declares ${rank} dimensions (${headerBytes} header bytes) but the file has ${bytes.byteLength} bytes`,
    );
  }
  const dims: number[] = [];
  for (let axis = 0; axis < rank; axis++) dims.push(view.getUint32(4 + axis * 4));
  const expectedDataBytes = dims.reduce((product, dim) => product * dim, 1);
  const actualDataBytes = bytes.byteLength - headerBytes;
  if (actualDataBytes !== expectedDataBytes) {
    throw new IdxFormatError(
      `${actualDataBytes < expectedDataBytes ? 'truncated' : 'oversized'} IDX file: dims [${dims.join(', ')}] need ${expectedDataBytes} data bytes after the ${headerBytes}-byte header, found ${actualDataBytes}`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** Reads and parses an IDX file; errors name the file. */
export async function readIdxFile(path: string): Promise<IdxArray> {
  const bytes = await readFile(path);
  try {
    return parseIdx(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    if (error instanceof IdxFormatError) throw new IdxFormatError(`${path}: ${error.message}`, { cause: error });
    throw error;
  }
}
