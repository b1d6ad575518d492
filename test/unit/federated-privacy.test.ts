import { describe, expect, it } from 'vitest';
import { clipToNorm, epsilonFromRdp, gaussianSource, privacySpent, privateAverage, sampledGaussianRdp, uniformSource } from '../../functions/core/federated/privacy.ts';
import { aggregate } from '../../functions/core/federated/strategies.ts';

describe('differential privacy: clipping, noise, accountant', () => {
  it('clips a delta to the L2 bound and leaves a shorter one alone', () => {
    // 3 x (1 / 5) in binary floating point is 0.6000000000000001.
    expect(clipToNorm(Float64Array.from([3, 4]), 1)).toEqual({ clipped: Float64Array.from([3 * (1 / 5), 4 * (1 / 5)]), norm: 5 });
    expect([...clipToNorm(Float64Array.from([0.3, 0.4]), 1).clipped]).toEqual([0.3, 0.4]);
  });

  it('averages the clipped deltas with equal weights (no noise at multiplier 0)', () => {
    const global = Float64Array.from([1, 1]);
    const updates = [
      { client: 'a', examples: 100, weights: Float64Array.from([4, 5]) }, // delta [3, 4] -> [0.6, 0.8]
      { client: 'b', examples: 1, weights: Float64Array.from([1.3, 1.4]) }, // delta [0.3, 0.4], kept
    ];
    const out = privateAverage(global, updates, { clip: 1, noiseMultiplier: 0 }, () => 0);
    expect(out.weights[0]).toBeCloseTo(1.45, 14);
    expect(out.weights[1]).toBeCloseTo(1.6, 14);
    expect(out.norms[0]).toBe(5);
    expect(out.clipped).toBe(1);
    // As FedAvg's mean, through the strategy.
    const viaStrategy = aggregate({ kind: 'fedavg' }, global, updates, undefined, (u) => privateAverage(global, u, { clip: 1, noiseMultiplier: 0 }, () => 0).weights);
    expect([...viaStrategy.weights]).toEqual([...out.weights]);
  });

  it('adds Gaussian noise of standard deviation z C / m to the average', () => {
    const size = 100_000;
    const global = new Float64Array(size);
    const updates = Array.from({ length: 4 }, (_, k) => ({ client: `c${k}`, examples: 1, weights: new Float64Array(size) }));
    const out = privateAverage(global, updates, { clip: 2, noiseMultiplier: 1.5 }, gaussianSource(uniformSource(7)));
    const mean = out.weights.reduce((sum, value) => sum + value, 0) / size;
    const std = Math.sqrt(out.weights.reduce((sum, value) => sum + (value - mean) ** 2, 0) / size);
    const withinOneSigma = out.weights.filter((value) => Math.abs(value) <= 0.75).length / size;
    // sigma = 1.5 * 2 / 4 = 0.75; the standard error of the mean is 0.75 / sqrt(1e5) = 0.0024.
    expect(Math.abs(mean)).toBeLessThan(0.012);
    expect(std).toBeGreaterThan(0.75 * 0.99);
    expect(std).toBeLessThan(0.75 * 1.01);
    expect(Math.abs(withinOneSigma - 0.6827)).toBeLessThan(0.005);
  });

  it('RDP of the sampled Gaussian at order 2 matches the binomial expansion by hand', () => {
    // q = 0.5, z = 1: A_2 = 0.25 + 2 (0.25) + 0.25 e^1.
    expect(sampledGaussianRdp(0.5, 1, 2)).toBeCloseTo(Math.log(0.75 + 0.25 * Math.E), 14);
    // q = 1: the Gaussian mechanism, alpha / (2 z^2).
    expect(sampledGaussianRdp(1, 2, 8)).toBe(1);
    expect(sampledGaussianRdp(0, 1, 8)).toBe(0);
  });

  it('converts RDP to epsilon at delta, minimising over the orders', () => {
    // One full-participation round at z = 1: rdp(alpha) = alpha / 2.
    const orders = [2, 3, 4, 5, 6, 7, 8];
    const rdp = orders.map((alpha) => alpha / 2);
    const delta = 1e-5;
    const byHand = orders.map((alpha) => Math.min(alpha / 2 - (Math.log(delta) + Math.log(alpha)) / (alpha - 1) + Math.log((alpha - 1) / alpha), alpha / 2 + Math.log(1 / delta) / (alpha - 1)));
    const best = Math.min(...byHand);
    expect(epsilonFromRdp(rdp, orders, delta).epsilon).toBe(best);
    expect(epsilonFromRdp(rdp, orders, delta).order).toBe(orders[byHand.indexOf(best)]);
    // More rounds, more epsilon; fewer clients sampled, less.
    const ten = privacySpent(0.1, 1, 10, delta).epsilon;
    expect(privacySpent(0.1, 1, 20, delta).epsilon).toBeGreaterThan(ten);
    expect(privacySpent(0.05, 1, 10, delta).epsilon).toBeLessThan(ten);
    expect(() => epsilonFromRdp(rdp, orders, 0)).toThrow('delta 0 is outside (0, 1)');
  });
});
