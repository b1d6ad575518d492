import { describe, expect, it } from 'vitest';
import { binCounts, jensenShannon, kolmogorovQ, ksTwoSample, psi, quantileEdges, quantileSketch } from '../../functions/core/monitor/stats.ts';
import { inputFeatures, predictionFeatures } from '../../functions/core/monitor/features.ts';

// Expected values computed by hand (PSI, JS) and with scipy.special.kolmogorov (Q) at /usr/bin/python3.
describe('drift statistics', () => {
  it('bins at the baseline quantiles, with bins of their own below its minimum and above its maximum', () => {
    const values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const edges = quantileEdges(values, 5);
    expect(edges).toEqual([0, 2, 4, 6, 8, 9 + 9e-9]);
    expect(binCounts(values, edges)).toEqual([0, 2, 2, 2, 2, 2, 0]);
    expect(binCounts([-1, 10], edges)).toEqual([1, 0, 0, 0, 0, 0, 1]);
    // A constant baseline still separates other values from its own.
    const constant = quantileEdges([5, 5, 5], 10);
    expect(constant).toEqual([5, 5 + 5e-9]);
    expect(binCounts([5, 5, 5], constant)).toEqual([0, 3, 0]);
    expect(binCounts([6], constant)).toEqual([0, 0, 1]);
  });

  it('computes PSI and Jensen-Shannon over floored shares', () => {
    expect(psi([50, 50], [50, 50])).toBe(0);
    // (0.75 - 0.5) ln(1.5) + (0.25 - 0.5) ln(0.5) = 0.27465 before the 1e-4 floor; 0.27453 after it (python).
    expect(psi([1, 1], [3, 1])).toBeCloseTo(0.2745315169696105, 12);
    expect(jensenShannon([5, 5], [5, 5])).toBe(0);
    expect(jensenShannon([1, 0], [0, 1])).toBeCloseTo(0.9985272321727792, 12);
    // Symmetric, unlike PSI's terms.
    expect(jensenShannon([3, 1], [1, 1])).toBeCloseTo(jensenShannon([1, 1], [3, 1]), 12);
  });

  it('gives the two-sample KS statistic and its asymptotic p-value', () => {
    expect(kolmogorovQ(0.8059976541518077)).toBeCloseTo(0.5344157192165071, 9);
    expect(ksTwoSample([1, 2, 3, 4], [3, 4, 5, 6])).toEqual({ statistic: 0.5, pValue: expect.closeTo(0.5344157192165071, 9) });
    expect(ksTwoSample([1, 2, 3], [1, 2, 3])).toEqual({ statistic: 0, pValue: 1 });
    // Against a 10-point sketch that stands for 1000 values: D = 0.2 over n = 100 and N = 1000.
    const a = Array.from({ length: 100 }, (_, i) => (i < 20 ? -1 : i / 100));
    const sketch = Array.from({ length: 10 }, (_, i) => i / 10 + 0.05);
    expect(ksTwoSample(a, sketch, 1000).statistic).toBeCloseTo(0.2, 12);
    expect(ksTwoSample(a, sketch, 1000).pValue).toBeCloseTo(0.0011344253385507418, 9);
    expect(quantileSketch([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 5)).toEqual([2, 4, 6, 8, 10]);
  });
});

describe('drift features', () => {
  it('gives one feature per element of a small tabular row, and summaries and a 4x4 grid for an image', () => {
    expect(inputFeatures({ name: 'x', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] })).toEqual([
      { name: 'x[0]', kind: 'numeric', values: [1, 4] },
      { name: 'x[1]', kind: 'numeric', values: [2, 5] },
      { name: 'x[2]', kind: 'numeric', values: [3, 6] },
    ]);
    // An 8x8 image, flat as [1, 64], bright in its top-left quarter only.
    const image = Array.from({ length: 64 }, (_, i) => (Math.floor(i / 8) < 4 && i % 8 < 4 ? 4 : 0));
    const features = inputFeatures({ name: 'img', datatype: 'FP32', shape: [1, 64], data: image });
    expect(features.map((f) => f.name)).toEqual(['img.mean', 'img.std', ...Array.from({ length: 16 }, (_, c) => `img.grid[${Math.floor(c / 4)},${c % 4}]`)]);
    expect(features[0]!.values).toEqual([1]);
    expect(features[1]!.values[0]).toBeCloseTo(Math.sqrt(3), 12);
    expect(features.slice(2).map((f) => f.values[0])).toEqual([4, 4, 0, 0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('gives the predicted class and its score of a class distribution, and the value of a scalar output', () => {
    expect(predictionFeatures({ name: 'p', datatype: 'FP32', shape: [2, 3], data: [0.1, 0.7, 0.2, 0.5, 0.2, 0.3] })).toEqual([
      { name: 'p.class', kind: 'categorical', values: ['1', '0'] },
      { name: 'p.score', kind: 'numeric', values: [0.7, 0.5] },
    ]);
    expect(predictionFeatures({ name: 'y', datatype: 'FP64', shape: [2, 1], data: [1.5, 2.5] })).toEqual([{ name: 'y', kind: 'numeric', values: [1.5, 2.5] }]);
    expect(predictionFeatures({ name: 'c', datatype: 'BYTES', shape: [1, 1], data: ['0.9:3:three'] })).toEqual([{ name: 'c.class', kind: 'categorical', values: ['3:three'] }]);
  });
});
