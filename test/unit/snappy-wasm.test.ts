import { readFileSync } from 'node:fs';
import { snappyUncompress } from 'hyparquet';
import { snappyCompress } from 'hyparquet-writer/src/snappy.js';
import { describe, expect, it } from 'vitest';
import { snappyUncompressInPlace } from '../../functions/core/batch/formats/snappy/snappy.ts';
import { SNAPPY_MODULE, snappyModuleText } from '../../scripts/build-wasm.ts';

/** Deterministic bytes: runs, repeats at every distance and noise, the mix a page holds. */
function sample(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  let i = 0;
  while (i < length) {
    const kind = next() % 4;
    const n = Math.min(length - i, 1 + (next() % 300));
    if (kind === 0) out.fill(next() & 0xff, i, i + n);
    else if (kind === 1 && i > 0) {
      const distance = 1 + (next() % Math.min(i, 70_000));
      for (let k = 0; k < n; k++) out[i + k] = out[i + k - distance]!;
    } else for (let k = 0; k < n; k++) out[i + k] = next() & 0xff;
    i += n;
  }
  return out;
}

const varint = (n: number): number[] => {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return bytes;
};

describe('the WebAssembly snappy decompressor', () => {
  it('is the committed build of its AssemblyScript source (npm run build:wasm)', async () => {
    expect(readFileSync(SNAPPY_MODULE, 'utf8')).toBe(await snappyModuleText());
  }, 60_000);

  it('decompresses what a snappy compressor wrote, byte for byte, as hyparquet does', () => {
    for (const [length, seed] of [
      [0, 1],
      [1, 2],
      [15, 3],
      [16, 4],
      [17, 5],
      [4096, 6],
      [100_003, 7],
      [1_000_000, 8],
    ] as const) {
      const input = sample(length, seed);
      const compressed = snappyCompress(input);
      const reference = new Uint8Array(length);
      snappyUncompress(compressed, reference);
      expect(Buffer.from(reference).equals(Buffer.from(input))).toBe(true);
      expect(Buffer.from(snappyUncompressInPlace(compressed, length)).equals(Buffer.from(input))).toBe(true);
    }
  });

  it('reads every element kind: long literals, 1-, 2- and 4-byte offsets, overlapping copies at every short distance', () => {
    const literal = (bytes: number[]) => {
      const n = bytes.length - 1;
      if (n < 60) return [n << 2].concat(bytes);
      const size = n < 256 ? 1 : n < 65_536 ? 2 : n < 1 << 24 ? 3 : 4;
      return [(59 + size) << 2, ...[0, 1, 2, 3].slice(0, size).map((k) => (n >>> (8 * k)) & 0xff)].concat(bytes);
    };
    const expected: number[] = [];
    const body: number[] = [];
    const add = (element: number[], produced: number[]) => {
      body.push(...element);
      expected.push(...produced);
    };
    const copy = (offset: number, length: number) => {
      const out: number[] = [];
      for (let k = 0; k < length; k++) out.push(out.length >= offset ? out[out.length - offset]! : expected[expected.length - offset + k]!);
      return out;
    };
    const run = Array.from({ length: 70_000 }, (_, k) => (k * 7) & 0xff);
    add(literal(run), run);
    for (const lengthBytes of [100, 300, 66_000]) {
      const bytes = Array.from({ length: lengthBytes }, (_, k) => (k * 13 + 5) & 0xff);
      add(literal(bytes), bytes);
    }
    for (let offset = 1; offset <= 9; offset++) {
      add([(1 << 0) | ((11 - 4) << 2) | ((offset >> 8) << 5), offset & 0xff], copy(offset, 11)); // 1-byte offset
      add([2 | ((64 - 1) << 2), offset & 0xff, offset >> 8], copy(offset, 64)); // 2-byte offset
    }
    add([3 | ((40 - 1) << 2), ...[0, 1, 2, 3].map((k) => (69_000 >>> (8 * k)) & 0xff)], copy(69_000, 40)); // 4-byte offset
    add([1 | ((4 - 4) << 2) | ((2000 >> 8) << 5), 2000 & 0xff], copy(2000, 4));
    const stream = Uint8Array.from([...varint(expected.length), ...body]);
    expect(Buffer.from(snappyUncompressInPlace(stream, expected.length)).equals(Buffer.from(expected))).toBe(true);
  });

  it('refuses malformed streams, naming the fault, and decodes the next page as before', () => {
    const cases: [number[], number, RegExp][] = [
      [[...varint(5), 4 << 2, 1, 2, 3, 4, 5], 6, /length header is not the page size/],
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 1, /length header/],
      [[...varint(6), 5 << 2, 1, 2, 3], 6, /literal runs past the input/],
      [[...varint(3), 3 << 2, 1, 2, 3, 4], 3, /literal runs past the page size/],
      [[...varint(8), 3 << 2, 1, 2, 3, 4, 1, 0], 8, /copy reaches before the start/],
      [[...varint(8), 3 << 2, 1, 2, 3, 4, 1, 5], 8, /copy reaches before the start/],
      [[...varint(9), 3 << 2, 1, 2, 3, 4, 1 | (4 << 2), 4], 9, /copy runs past the page size/],
      [[...varint(8), 3 << 2, 1, 2, 3, 4, 2, 4], 8, /copy runs past the input/],
      [[...varint(8), 3 << 2, 1, 2, 3, 4], 8, /ends before the page size/],
    ];
    for (const [bytes, length, why] of cases) expect(() => snappyUncompressInPlace(Uint8Array.from(bytes), length)).toThrow(why);
    const input = sample(10_000, 9);
    expect(Buffer.from(snappyUncompressInPlace(snappyCompress(input), input.length)).equals(Buffer.from(input))).toBe(true);
  });

  it('on 3000 corrupted streams either refuses, naming the fault, or gives a page of exactly the size, as hyparquet does when it accepts', () => {
    const input = sample(4096, 12);
    const compressed = snappyCompress(input);
    let state = 99;
    const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
    let refused = 0;
    for (let n = 0; n < 3000; n++) {
      const bytes = Array.from(compressed);
      const at = next() % bytes.length;
      const edit = next() % 3;
      if (edit === 0) bytes[at] = next() & 0xff;
      else if (edit === 1) bytes.splice(at, 1);
      else bytes.splice(at, 0, next() & 0xff);
      const stream = Uint8Array.from(bytes);
      let out: Uint8Array | undefined;
      try {
        out = snappyUncompressInPlace(stream, input.length);
      } catch (error) {
        expect((error as Error).message).toMatch(/^snappy data is malformed: /);
        refused++;
        continue;
      }
      expect(out.length).toBe(input.length);
      const reference = new Uint8Array(input.length);
      snappyUncompress(stream, reference);
      expect(Buffer.from(out).equals(Buffer.from(reference))).toBe(true);
    }
    expect(refused).toBeGreaterThan(1000);
  });

  it('writes nothing past the page it returns, even where the last element is short', () => {
    // Pages of every length 1..40 whose last element is a short literal or copy, each decoded over
    // a region first filled with a larger page's bytes: the result is exact and its view no longer.
    const big = sample(50_000, 10);
    for (let length = 1; length <= 40; length++) {
      snappyUncompressInPlace(snappyCompress(big), big.length);
      const page = sample(length, 100 + length);
      const out = snappyUncompressInPlace(snappyCompress(page), length);
      expect(out.length).toBe(length);
      expect(Buffer.from(out).equals(Buffer.from(page))).toBe(true);
    }
  });
});
