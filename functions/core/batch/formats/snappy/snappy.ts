import { SNAPPY_WASM_BASE64 } from './snappy-module.ts';

/**
 * Snappy decompression in WebAssembly (snappy.as.ts), into the module's own memory: a page's bytes
 * are copied in once and the result is read in place, so a shard's pages cost no fresh arrays and
 * no copy out. hysnappy, the maintained WebAssembly snappy for hyparquet, returns a fresh array for
 * every page, whose page faults cost more than its faster loop saves on multi-megabyte pages
 * (docs/batch.md, "Where a worker's CPU goes"); hyparquet's JavaScript loop is the slower part of a
 * page's decode. One instance per thread: the decode that uses it is synchronous, so no two calls
 * interleave.
 */
interface SnappyExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  slop(): number;
  uncompress(input: number, inputLength: number, output: number, outputLength: number): number;
}

const FAILURES: Record<number, string> = {
  [-1]: 'its length header is not the page size',
  [-2]: 'a literal runs past the input',
  [-3]: 'a literal runs past the page size',
  [-4]: 'a copy reaches before the start of the output',
  [-5]: 'a copy runs past the page size',
  [-6]: 'it ends before the page size',
  [-7]: 'a copy runs past the input',
};

const PAGE = 64 * 1024;
/** The module's exports, where its input region starts (past its own data), and the slop it needs after each region. */
let snappy: { wasm: SnappyExports; inputAt: number; slop: number } | undefined;

function instance(): { wasm: SnappyExports; inputAt: number; slop: number } {
  if (!snappy) {
    // Synchronous compilation: the module is a few kilobytes.
    const wasm = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(SNAPPY_WASM_BASE64, 'base64'))).exports as unknown as SnappyExports;
    snappy = { wasm, inputAt: Math.ceil(wasm.heapBase() / 16) * 16, slop: wasm.slop() };
  }
  return snappy;
}

/**
 * The snappy-compressed `input` decompressed, as a view of exactly `outputLength` bytes. The view
 * lies in memory the next call overwrites (and may detach): read or copy it before calling again.
 * Malformed input, or input whose length is not `outputLength`, throws.
 */
export function snappyUncompressInPlace(input: Uint8Array, outputLength: number): Uint8Array {
  const { wasm, inputAt, slop } = instance();
  const outputAt = Math.ceil((inputAt + input.length + slop) / 16) * 16;
  const end = outputAt + outputLength + slop;
  const have = wasm.memory.buffer.byteLength;
  if (end > have) wasm.memory.grow(Math.ceil((end - have) / PAGE));
  new Uint8Array(wasm.memory.buffer, inputAt, input.length).set(input);
  const code = wasm.uncompress(inputAt, input.length, outputAt, outputLength);
  if (code !== 0) throw new Error(`snappy data is malformed: ${FAILURES[code] ?? `code ${code}`}`);
  return new Uint8Array(wasm.memory.buffer, outputAt, outputLength);
}
