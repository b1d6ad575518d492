import { describe, expect, it } from 'vitest';
import { averageNoiseMultiplier, clipToNorm, epsilonFromRdp, gaussianSource, logAbsGamma, logErfc, nextClipNorm, privacySpent, privateAverage, RDP_ORDERS, sampledGaussianRdp, uniformSource } from '../../functions/core/federated/privacy.ts';
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
    const byHand = orders.map((alpha) => alpha / 2 + Math.log1p(-1 / alpha) - Math.log(delta * alpha) / (alpha - 1));
    const best = Math.min(...byHand);
    expect(epsilonFromRdp(rdp, orders, delta).epsilon).toBe(best);
    expect(epsilonFromRdp(rdp, orders, delta).order).toBe(orders[byHand.indexOf(best)]);
    // More rounds, more epsilon; fewer clients sampled, less.
    const ten = privacySpent(0.1, 1, 10, delta).epsilon;
    expect(privacySpent(0.1, 1, 20, delta).epsilon).toBeGreaterThan(ten);
    expect(privacySpent(0.05, 1, 10, delta).epsilon).toBeLessThan(ten);
    expect(() => epsilonFromRdp(rdp, orders, 0)).toThrow('delta 0 is outside (0, 1)');
    expect(() => epsilonFromRdp(rdp, orders.slice(1), delta)).toThrow('7 RDP values for 6 orders');
  });

  it('fractional orders: the sampled Gaussian matches the published values of Google dp_accounting', () => {
    // dp_accounting's test_compute_rdp_poisson_sampled_gaussian: q = 0.01, z = 2.5, 50 steps, orders
    // 1.5, 2.5, 5, 50, 100 -> [6.70579741e-4, 1.08548710e-3, 2.18075656e-3, 2.38460375e-2, 167.416308] (rtol 1e-4 there).
    const published = [6.70579741e-4, 1.0854871e-3, 2.18075656e-3, 2.38460375e-2, 167.416308];
    [1.5, 2.5, 5, 50, 100].forEach((alpha, i) => {
      const rdp = 50 * sampledGaussianRdp(0.01, 2.5, alpha);
      expect(Math.abs(rdp - (published[i] as number)) / (published[i] as number)).toBeLessThan(1e-6);
    });
    // A fractional order lies between its integer neighbours (RDP grows with the order).
    expect(sampledGaussianRdp(0.1, 1, 2.5)).toBeGreaterThan(sampledGaussianRdp(0.1, 1, 2));
    expect(sampledGaussianRdp(0.1, 1, 2.5)).toBeLessThan(sampledGaussianRdp(0.1, 1, 3));
    // At q = 1/2 the series decays too slowly to settle: the next integer order bounds it.
    expect(sampledGaussianRdp(0.5, 1.2, 1.5)).toBe(sampledGaussianRdp(0.5, 1.2, 2));
    expect(() => sampledGaussianRdp(0.1, 1, 1)).toThrow('order 1 must be a finite number above 1');
    expect(RDP_ORDERS.slice(0, 4)).toEqual([1.1, 1.2, 1.3, 1.4]);
    expect(RDP_ORDERS).toContain(2.5);
  });

  it('epsilon at a stated point: the Gaussian mechanism at z = 4.530877117 is (1, 1e-6)-DP over orders 1.001 to 100', () => {
    // dp_accounting's test_compute_epsilon_delta_gaussian: orders 0.001 i for i in [1000, 100000), q = 1 (order 1 itself, never the minimum, left out).
    const orders = Array.from({ length: 99_000 }, (_, i) => 0.001 * (i + 1001));
    const rdp = orders.map((alpha) => sampledGaussianRdp(1, 4.530877117, alpha));
    expect(epsilonFromRdp(rdp, orders, 1e-6).epsilon).toBeCloseTo(1, 7);
    // The benchmark's setting, q = 0.1, z = 1, delta 1e-5: the fractional orders give less than the integer ones alone.
    const integers = RDP_ORDERS.filter((alpha) => Number.isInteger(alpha));
    expect(privacySpent(0.1, 1, 200, 1e-5).epsilon).toBeLessThan(privacySpent(0.1, 1, 200, 1e-5, integers).epsilon);
  });

  it('log-gamma and log-erfc, the fractional series\' building blocks, at known values', () => {
    expect(logAbsGamma(5)).toBeCloseTo(Math.log(24), 13);
    expect(logAbsGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 13);
    // Gamma(-0.5) = -2 sqrt(pi).
    expect(logAbsGamma(-0.5)).toBeCloseTo(Math.log(2 * Math.sqrt(Math.PI)), 13);
    // erfc(1) = 0.157299207050285; erfc(-1) = 2 - erfc(1); erfc(30) ~ exp(-900) / (30 sqrt(pi)) underflows but its log does not.
    expect(Math.abs(Math.exp(logErfc(1)) / 0.157299207050285 - 1)).toBeLessThan(1.2e-7);
    expect(Math.abs(Math.exp(logErfc(-1)) / (2 - 0.157299207050285) - 1)).toBeLessThan(1.2e-7);
    expect(Math.abs(logErfc(30) - (-900 - Math.log(30 * Math.sqrt(Math.PI)) + Math.log1p(-1 / 1800)))).toBeLessThan(1e-6);
  });

  it('adaptive clipping: the clip norm moves geometrically toward the target quantile, from a noised count', () => {
    // Clip 1, norms [0.5, 2, 0.8, 3]: 2 of 4 within the norm (b = 0.5).
    const norms = [0.5, 2, 0.8, 3];
    const quiet = nextClipNorm(1, norms, { targetQuantile: 0.5, learningRate: 0.2, countStddev: 0 }, () => 1);
    expect(quiet).toEqual({ clip: 1, unclipped: 2, noisedFraction: 0.5 });
    // Target 0.9: more should fit, the norm grows by exp(-0.2 (0.5 - 0.9)) = exp(0.08).
    expect(nextClipNorm(1, norms, { targetQuantile: 0.9, learningRate: 0.2, countStddev: 0 }, () => 1).clip).toBeCloseTo(Math.exp(0.08), 15);
    // Count noise: sigma_b 0.2 times a draw of 1 -> b = 2.2 / 4 = 0.55; C' = exp(-0.2 * 0.05) = exp(-0.01).
    const noised = nextClipNorm(1, norms, { targetQuantile: 0.5, learningRate: 0.2, countStddev: 0.2 }, () => 1);
    expect(noised.noisedFraction).toBeCloseTo(0.55, 15);
    expect(noised.clip).toBeCloseTo(Math.exp(-0.01), 15);
    // The default sigma_b is m / 20 = 0.2 here; a norm exactly at the clip counts as unclipped.
    expect(nextClipNorm(2, norms, { targetQuantile: 0.5, learningRate: 0.2 }, () => 0).unclipped).toBe(3);
    // The average's noise multiplier: (z^-2 - (2 sigma_b)^-2)^(-1/2); z = 1, sigma_b = 2 -> (1 - 1/16)^(-1/2).
    expect(averageNoiseMultiplier(1, 2)).toBeCloseTo((15 / 16) ** -0.5, 15);
    expect(averageNoiseMultiplier(0, 0)).toBe(0);
    expect(() => averageNoiseMultiplier(1, 0.5)).toThrow('needs a count noise above 0.5');
  });
});
