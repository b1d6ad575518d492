import type { NumericArray, NumericArrayConstructor } from './elements.ts';

/**
 * Memory a shard borrows for its bytes, levels and values and gives back when it ends, so the next
 * shard of the same worker writes into pages the process already has. Fresh multi-megabyte typed
 * arrays are zeroed and page-faulted in on every shard, which costs more CPU than decoding them
 * (docs/batch-formats.md, "Where a worker's CPU goes"). Arrays from `array` are NOT zeroed: the
 * caller writes every element it later reads.
 */
const free: ArrayBuffer[] = [];
let freeBytes = 0;
/** Above this the process keeps no more spare buffers (two lanes of 32 MiB shards with their pages fit). */
const MAX_FREE_BYTES = 256 * 1024 * 1024;
/** Buffers are sized in steps so shards of slightly different sizes reuse each other's. */
const STEP = 1024 * 1024;

export class ScratchArena {
  private readonly taken: ArrayBuffer[] = [];
  private released = false;

  /** A typed array of `length` elements over a borrowed buffer (contents undefined). */
  array<T extends NumericArray>(Ctor: NumericArrayConstructor, length: number): T {
    if (this.released) throw new Error('scratch arena used after release');
    const bytes = length * Ctor.BYTES_PER_ELEMENT;
    // Small arrays are not worth pooling: V8's own heap reuses them.
    if (bytes < 64 * 1024) return new Ctor(length) as T;
    let best = -1;
    for (let i = 0; i < free.length; i++) {
      const size = free[i]!.byteLength;
      if (size >= bytes && (best === -1 || size < free[best]!.byteLength)) best = i;
    }
    let buffer: ArrayBuffer;
    if (best === -1) {
      buffer = new ArrayBuffer(Math.ceil(bytes / STEP) * STEP);
    } else {
      buffer = free.splice(best, 1)[0]!;
      freeBytes -= buffer.byteLength;
    }
    this.taken.push(buffer);
    return new Ctor(buffer, 0, length) as T;
  }

  /** Gives every borrowed buffer back; nothing taken from this arena may be used afterwards. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const buffer of this.taken) {
      if (freeBytes + buffer.byteLength > MAX_FREE_BYTES) continue;
      free.push(buffer);
      freeBytes += buffer.byteLength;
    }
    this.taken.length = 0;
  }
}
