import { describe, expect, it } from 'vitest';
import { largestServableModelBytes } from '../../functions/core/registry/capacity.ts';

describe('the largest model each tier serves (README "Tiers")', () => {
  it.each([
    [1024, 195],
    [2048, 418],
    [4096, 863],
  ])('%i MiB of memory: %i MiB', (memoryMiB, largestMiB) => {
    expect(Math.floor(largestServableModelBytes(memoryMiB) / 2 ** 20)).toBe(largestMiB);
  });
});
