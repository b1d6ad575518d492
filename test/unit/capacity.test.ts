import { describe, expect, it } from 'vitest';
import { largestServableModelBytes } from '../../functions/core/artifacts/capacity.ts';

describe('the largest model each tier serves (README "Tiers")', () => {
  it.each([
    [1024, 374],
    [2048, 801],
    [4096, 1654],
  ])('%i MiB of memory: %i MiB', (memoryMiB, largestMiB) => {
    expect(Math.floor(largestServableModelBytes(memoryMiB) / 2 ** 20)).toBe(largestMiB);
  });
});
