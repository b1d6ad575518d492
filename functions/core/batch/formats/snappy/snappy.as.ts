// AssemblyScript, compiled to WebAssembly by `npm run build:wasm` (scripts/build-wasm.ts) into
// snappy-module.ts; test/unit/snappy-wasm.test.ts recompiles it and fails if the two differ.
//
// A snappy raw-format decompressor working entirely in this module's memory: the caller copies the
// compressed bytes in at `input`, and reads the result in place at `output`. Both regions must have
// SLOP bytes of room after them: short literals and copies move 8 or 16 bytes at a time and may
// write (and read) past their own end, bytes that later elements or nothing overwrite.
//
// Returns 0 on success, else a negative code (named in snappy.ts); nothing is ever written outside
// [output, output + outputLength + SLOP).

const SLOP: usize = 16;

export function heapBase(): usize {
  return __heap_base;
}

export function slop(): usize {
  return SLOP;
}

export function uncompress(input: usize, inputLength: usize, output: usize, outputLength: usize): i32 {
  const inEnd = input + inputLength;
  const outEnd = output + outputLength;
  let ip = input;
  let op = output;

  // Preamble: the uncompressed length as a varint of at most 5 bytes; it must be the expected one.
  let declared: u64 = 0;
  let shift: u64 = 0;
  for (;;) {
    if (ip >= inEnd || shift > 28) return -1;
    const b = <u64>load<u8>(ip++);
    declared |= (b & 0x7f) << shift;
    if ((b & 0x80) == 0) break;
    shift += 7;
  }
  if (declared != <u64>outputLength) return -1;

  while (ip < inEnd) {
    const tag = <u32>load<u8>(ip++);
    const kind = tag & 3;
    if (kind == 0) {
      let length = <usize>(tag >> 2) + 1;
      if (length > 60) {
        const extra = length - 60;
        if (ip + extra > inEnd) return -2;
        length = 0;
        for (let k: usize = 0; k < extra; k++) length |= <usize>load<u8>(ip + k) << (8 * k);
        length += 1;
        ip += extra;
      }
      if (length > inEnd - ip) return -2;
      if (length > outEnd - op) return -3;
      if (length <= 16) {
        // The input region has SLOP bytes after it, so 16 bytes can always be read here.
        store<u64>(op, load<u64>(ip));
        store<u64>(op + 8, load<u64>(ip + 8));
      } else {
        memory.copy(op, ip, length);
      }
      ip += length;
      op += length;
      continue;
    }
    let length: usize;
    let offset: usize;
    if (kind == 1) {
      if (ip + 1 > inEnd) return -7;
      length = <usize>((tag >> 2) & 7) + 4;
      offset = (<usize>(tag >> 5) << 8) | <usize>load<u8>(ip);
      ip += 1;
    } else if (kind == 2) {
      if (ip + 2 > inEnd) return -7;
      length = <usize>(tag >> 2) + 1;
      offset = <usize>load<u16>(ip);
      ip += 2;
    } else {
      if (ip + 4 > inEnd) return -7;
      length = <usize>(tag >> 2) + 1;
      offset = <usize>load<u32>(ip);
      ip += 4;
    }
    if (offset == 0 || offset > op - output) return -4;
    if (length > outEnd - op) return -5;
    let from = op - offset;
    if (offset >= 8) {
      // Eight bytes at a time, forward: with an offset of 8 or more each read lies wholly in bytes
      // already written, so an overlapping copy repeats its pattern as snappy requires.
      const stop = op + length;
      let to = op;
      while (to < stop) {
        store<u64>(to, load<u64>(from));
        to += 8;
        from += 8;
      }
    } else {
      for (let k: usize = 0; k < length; k++) store<u8>(op + k, load<u8>(from + k));
    }
    op += length;
  }
  return op == outEnd ? 0 : -6;
}
