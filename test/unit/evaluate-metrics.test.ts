import { describe, expect, it } from 'vitest';
import {
  agreementMetrics,
  binomial,
  bootstrapMean,
  classificationMetrics,
  histogram,
  pairedSpeedup,
  quantileSorted,
  regressionMetrics,
  summarizeLatencies,
  topKIndices,
} from '../../functions/core/evaluate/metrics.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';

const boot = { resamples: 500, seed: 7, confidence: 0.95 };

describe('classification metrics', () => {
  // Six rows, three classes. Actual 0 0 1 1 2 2, predicted 0 1 1 1 2 0 (hand-computed below).
  const labels = Int32Array.from([0, 0, 1, 1, 2, 2]);
  const ranked = [[0, 2], [1, 0], [1, 2], [1, 0], [2, 1], [0, 2]];

  it('counts the confusion matrix, top-1 and top-k exactly', () => {
    const m = classificationMetrics(labels, ranked, 3, 2, boot);

    expect(m.confusion).toEqual([
      [1, 1, 0],
      [0, 2, 0],
      [1, 0, 1],
    ]);
    expect(m.top1.value).toBe(4 / 6);
    expect(m.topK).toMatchObject({ k: 2, value: 1 });
    expect(m.rows).toBe(6);
  });

  it('computes per-class precision, recall and F1 and their macro average', () => {
    const m = classificationMetrics(labels, ranked, 3, 2, boot);

    // class 0: 1 of 2 predicted right, 1 of 2 found; class 1: 2 of 3, 2 of 2; class 2: 1 of 1, 1 of 2.
    expect(m.perClass.map((c) => [c.class, c.support, c.precision, c.recall])).toEqual([
      [0, 2, 0.5, 0.5],
      [1, 2, 2 / 3, 1],
      [2, 2, 1, 0.5],
    ]);
    expect(m.perClass[0]!.f1).toBeCloseTo(0.5, 12);
    expect(m.perClass[1]!.f1).toBeCloseTo(0.8, 12);
    expect(m.perClass[2]!.f1).toBeCloseTo(2 / 3, 12);
    expect(m.macroF1).toBeCloseTo((0.5 + 0.8 + 2 / 3) / 3, 12);
  });

  it('gives 0 precision to a class never predicted and 0 recall to one never present', () => {
    const m = classificationMetrics(Int32Array.from([0, 0]), [[0], [0]], 2, 1, boot);

    expect(m.perClass[1]).toEqual({ class: 1, support: 0, precision: 0, recall: 0, f1: 0 });
    expect(m.perClass[0]).toEqual({ class: 0, support: 2, precision: 1, recall: 1, f1: 1 });
  });
});

describe('regression and agreement', () => {
  it('computes MAE and RMSE from per-row errors', () => {
    // targets 1 2 3 4, predictions 1.5 2 2 4
    const m = regressionMetrics([0.5, 0, 1, 0], [0.25, 0, 1, 0], boot);

    expect(m.mae.value).toBe(0.375);
    expect(m.rmse.value).toBeCloseTo(Math.sqrt(0.3125), 12);
  });

  it('computes top-1 agreement and the max and mean absolute differences', () => {
    const m = agreementMetrics([1, 2, 3, 4], [1, 2, 0, 4], [0.1, 0.5, 0.2, 0], [0.05, 0.1, 0.1, 0], boot);

    expect(m.top1Agreement!.value).toBe(0.75);
    expect(m.maxAbsDiff).toBe(0.5);
    expect(m.meanAbsDiff.value).toBeCloseTo(0.0625, 12);
  });
});

describe('bootstrap intervals', () => {
  it('are a single point for a constant statistic', () => {
    expect(bootstrapMean([1, 1, 1, 1], boot)).toEqual({ value: 1, low: 1, high: 1 });
  });

  it('are reproducible from the seed and bracket the point estimate', () => {
    const hits = Array.from({ length: 200 }, (_, i) => (i % 4 === 0 ? 0 : 1));
    const a = bootstrapMean(hits, boot);
    const b = bootstrapMean(hits, boot);
    const c = bootstrapMean(hits, { ...boot, seed: 8 });

    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    expect(a.value).toBe(0.75);
    expect(a.low).toBeLessThan(0.75);
    expect(a.high).toBeGreaterThan(0.75);
    // The normal approximation's 95% half-width is 1.96 * sqrt(0.75 * 0.25 / 200) = 0.060.
    expect(a.high - a.low).toBeGreaterThan(0.09);
    expect(a.high - a.low).toBeLessThan(0.15);
  });

  it('resamples paired rows for a difference, so identical variants differ by exactly 0', () => {
    const hits = [1, 0, 1, 1, 0, 1];
    expect(bootstrapMean(hits, boot, hits)).toEqual({ value: 0, low: 0, high: 0 });
  });

  it('agrees with the normal approximation on a large 0/1 vector (drawn as exact binomial counts)', () => {
    const hits = Float64Array.from({ length: 10_000 }, (_, i) => (i < 9837 ? 1 : 0));
    const ci = bootstrapMean(hits, { resamples: 2000, seed: 1, confidence: 0.95 });
    const half = 1.96 * Math.sqrt((0.9837 * 0.0163) / 10_000);

    expect(ci.value).toBe(0.9837);
    expect(ci.low).toBeCloseTo(0.9837 - half, 3);
    expect(ci.high).toBeCloseTo(0.9837 + half, 3);
  });

  it('draws binomial counts with the right mean and variance', () => {
    const random = seededRandom(5);
    const draws = Array.from({ length: 4000 }, () => binomial(100, 0.3, random));
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    const variance = draws.reduce((a, b) => a + (b - mean) ** 2, 0) / draws.length;

    expect(mean).toBeGreaterThan(29.6);
    expect(mean).toBeLessThan(30.4);
    expect(variance).toBeGreaterThan(19);
    expect(variance).toBeLessThan(23);
    expect([binomial(10, 0, random), binomial(10, 1, random)]).toEqual([0, 10]);
  });

  it('draws the same sequence for the same seed', () => {
    const r1 = seededRandom(42);
    const r2 = seededRandom(42);
    expect([r1(), r1(), r1()]).toEqual([r2(), r2(), r2()]);
  });
});

describe('latency summaries', () => {
  it('uses linear-interpolated percentiles', () => {
    const s = summarizeLatencies([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);

    expect(s).toEqual({ count: 10, mean: 5.5, min: 1, p50: 5.5, p90: 9.1, p99: expect.closeTo(9.91, 10), max: 10 });
    expect(quantileSorted([1, 3], 0.25)).toBe(1.5);
  });

  it('bins latencies into equal-width bins, the maximum in the last', () => {
    expect(histogram([1, 2, 2, 3], 2)).toEqual({ start: 1, width: 1, counts: [1, 3] });
    // With an upper bound, a stall lands in the last bin instead of stretching the axis.
    expect(histogram([1, 2, 2, 3, 100], 2, 3)).toEqual({ start: 1, width: 1, counts: [1, 4] });
  });

  it('ranks the top k classes of a row, best first', () => {
    const scores = Float32Array.from([0.1, 0.5, 0.2, 0.2, 0.9, 0.05, 0.03, 0.02]);
    expect(topKIndices(scores, 0, 4, 3)).toEqual([1, 2, 3]);
    expect(topKIndices(scores, 1, 4, 2)).toEqual([0, 1]);
  });
});

describe('the paired speedup and its sign-test interval', () => {
  it('is the median of the pair ratios, bounded by the order statistics the binomial gives', () => {
    // 10 pairs: P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024, so the interval is [r(2), r(9)].
    const baseline = [5, 3, 9, 1, 7, 2, 10, 4, 8, 6];
    const candidate = new Array(10).fill(1);

    expect(pairedSpeedup(baseline, candidate)).toEqual({ value: 5.5, low: 2, high: 9, pairs: 10, confidence: 0.95 });
  });

  it('needs at least 6 pairs and positive latencies', () => {
    expect(pairedSpeedup([1, 1, 1, 1, 1], [1, 1, 1, 1, 1])).toBeUndefined();
    expect(pairedSpeedup([2, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1])).toEqual({ value: 2, low: 2, high: 2, pairs: 6, confidence: 0.95 });
    expect(pairedSpeedup([1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1])).toBeUndefined();
  });

  it('never puts the lower bound of a copy against itself at 1.2x, on a machine whose load comes and goes', () => {
    let cleared = 0;
    let excludesOne = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const random = seededRandom(seed);
      const baseline: number[] = [];
      const candidate: number[] = [];
      let load = 1;
      for (let q = 0; q < 60; q++) {
        // Slow spells of up to 3x that both members of a pair mostly share, plus each query's own jitter.
        if (random() < 0.1) load = 1 + 2 * random();
        baseline.push(load * (1 + 0.5 * random()));
        candidate.push(load * (1 + 0.5 * random()));
      }
      const s = pairedSpeedup(baseline, candidate)!;
      if (s.low >= 1.2) cleared++;
      if (s.low > 1 || s.high < 1) excludesOne++;
    }

    expect(cleared).toBe(0);
    // About 5% of 95% intervals miss the truth.
    expect(excludesOne).toBeLessThanOrEqual(15);
  });
});
