import { describe, expect, it } from 'vitest';
import { aggregate, AggregationError, bulyan, coordinateMedian, multiKrum, trimmedMean, weightedAverage, type ClientWeights } from '../../functions/core/federated/strategies.ts';

const update = (client: string, examples: number, weights: number[]): ClientWeights => ({ client, examples, weights: Float64Array.from(weights) });
// Three clients with 1, 3 and 4 examples: FedAvg = (1 [1, 4] + 3 [3, 0] + 4 [5, 8]) / 8 = [30 / 8, 36 / 8].
const three = [update('a', 1, [1, 4]), update('b', 3, [3, 0]), update('c', 4, [5, 8])];
const zero = new Float64Array(2);

describe('aggregation strategies against hand-computed values', () => {
  it('FedAvg weights each update by its examples; FedProx aggregates the same way', () => {
    expect([...weightedAverage(three)]).toEqual([3.75, 4.5]);
    expect([...aggregate({ kind: 'fedavg' }, zero, three).weights]).toEqual([3.75, 4.5]);
    expect([...aggregate({ kind: 'fedprox', mu: 0.01 }, zero, three).weights]).toEqual([3.75, 4.5]);
  });

  it('FedAvgM: the first round is FedAvg at server rate 1, the second adds momentum 0.9 of the first pseudo-gradient', () => {
    const global = Float64Array.from([1, 1]);
    const first = aggregate({ kind: 'fedavgm', serverLearningRate: 1, momentum: 0.9 }, global, three);
    expect([...first.weights]).toEqual([3.75, 4.5]);
    expect([...(first.state?.vectors.velocity ?? [])]).toEqual([-2.75, -3.5]);
    // Same average again: pseudo-gradient 0, velocity 0.9 [-2.75, -3.5] = [-2.475, -3.15].
    const second = aggregate({ kind: 'fedavgm', serverLearningRate: 1, momentum: 0.9 }, first.weights, three, first.state);
    expect(second.weights[0]).toBeCloseTo(3.75 + 2.475, 12);
    expect(second.weights[1]).toBeCloseTo(4.5 + 3.15, 12);
    expect(second.state?.round).toBe(2);
  });

  it('FedAdam, FedYogi and FedAdagrad: moments of delta = average - global', () => {
    const options = { serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 0.5 };
    // Round 1, delta_x = 3.75: m = 0.375, v = 0.01 * 14.0625 = 0.140625 (Adam and Yogi), sqrt v = 0.375.
    const adam = aggregate({ kind: 'fedadam', ...options }, zero, three);
    expect(adam.weights[0]).toBeCloseTo(0.0375 / 0.875, 14);
    expect(adam.weights[1]).toBeCloseTo(0.045 / 0.95, 14);
    const yogi = aggregate({ kind: 'fedyogi', ...options }, zero, three);
    expect(yogi.weights[0]).toBeCloseTo(0.0375 / 0.875, 14);
    // Adagrad: v = 14.0625, sqrt v = 3.75.
    const adagrad = aggregate({ kind: 'fedadagrad', ...options }, zero, three);
    expect(adagrad.weights[0]).toBeCloseTo(0.0375 / 4.25, 14);
    // Round 2 from the same global and average: m = 0.9 * 0.375 + 0.1 * 3.75 = 0.7125;
    // Adam v = 0.99 * 0.140625 + 0.01 * 14.0625 = 0.27984375; Yogi v = 0.140625 + 0.140625 = 0.28125; Adagrad v = 28.125.
    expect(aggregate({ kind: 'fedadam', ...options }, zero, three, adam.state).weights[0]).toBeCloseTo((0.1 * 0.7125) / (Math.sqrt(0.27984375) + 0.5), 14);
    expect(aggregate({ kind: 'fedyogi', ...options }, zero, three, yogi.state).weights[0]).toBeCloseTo((0.1 * 0.7125) / (Math.sqrt(0.28125) + 0.5), 14);
    expect(aggregate({ kind: 'fedadagrad', ...options }, zero, three, adagrad.state).weights[0]).toBeCloseTo((0.1 * 0.7125) / (Math.sqrt(28.125) + 0.5), 14);
  });

  it('coordinate median: the middle value, or the mean of the two middle values', () => {
    expect([...coordinateMedian(three)]).toEqual([3, 4]);
    expect([...coordinateMedian([...three, update('d', 1, [100, -100])])]).toEqual([4, 2]);
    expect([...aggregate({ kind: 'median' }, zero, three).weights]).toEqual([3, 4]);
  });

  it('trimmed mean cuts floor(beta n) values from each end per coordinate', () => {
    const four = [...three, update('d', 1, [100, -100])];
    // beta 0.25 of 4: one cut each end. x: [1, 3, 5, 100] -> (3 + 5) / 2; y: [-100, 0, 4, 8] -> (0 + 4) / 2.
    expect([...trimmedMean(four, 0.25)]).toEqual([4, 2]);
    // beta 0.2 of 4 cuts nothing: the plain (unweighted) mean.
    expect([...aggregate({ kind: 'trimmed-mean', beta: 0.2 }, zero, four).weights]).toEqual([109 / 4, -88 / 4]);
    expect(() => trimmedMean(four, 0.5)).toThrow(AggregationError);
  });

  it('Multi-Krum keeps the updates closest to their n - f - 2 neighbours; Krum the single best', () => {
    const updates = [update('a', 1, [0, 0]), update('b', 1, [1, 0]), update('c', 1, [0, 1]), update('evil', 1, [10, 10])];
    // f = 1, n = 4: one neighbour each. Nearest squared distances: a 1, b 1, c 1, evil 181.
    const out = multiKrum(updates, 1, 2);
    expect(out.scores).toEqual([1, 1, 1, 181]);
    expect(out.used).toEqual(['a', 'b']);
    expect([...out.weights]).toEqual([0.5, 0]);
    expect(aggregate({ kind: 'multi-krum', byzantine: 1, selected: 1 }, zero, updates).used).toEqual(['a']);
    // Default selection n - f = 3: the three honest updates.
    expect(aggregate({ kind: 'multi-krum', byzantine: 1 }, zero, updates).used).toEqual(['a', 'b', 'c']);
    expect(() => multiKrum(updates, 2, 1)).toThrow('n - f - 2 >= 1');
  });

  it('Bulyan: Krum picks n - 2f one at a time, then per coordinate the n - 4f values nearest the median are averaged', () => {
    // n = 7, f = 1 (4f + 3 = 7): theta = 5 picked, beta = 3 averaged per coordinate.
    const values = [0, 1, 2, 3, 7, 8, 100];
    const line = values.map((value, i) => update(`u${i}`, 1 + i, [value]));
    // Krum scores over the max(1, n' - f - 2) nearest of those left (squared distances):
    // 7 left, 4 nearest: 0 63, 1 42, 2 31, 3 30, 7 78, 8 111, 100 huge -> 3.
    // 6 left, 3 nearest: 0 54, 1 38, 2 30, 7 62, 8 86 -> 2.
    // 5 left, 2 nearest: 0 50, 1 37, 7 37, 8 50 -> 1 (the tie goes to the earlier update).
    // 4 left, 1 nearest: 0 49, 7 1, 8 1 -> 7.   3 left, 1 nearest: 0 64, 8 64 -> 0.
    // Picked [0, 1, 2, 3, 7]: median 2, the three nearest 1, 2, 3 -> 2 (unweighted; the mean of the picked would be 2.6).
    const out = bulyan(line, 1);
    expect(out.used).toEqual(['u3', 'u2', 'u1', 'u4', 'u0']);
    expect([...out.weights]).toEqual([2]);
    // Two coordinates: a (0,0) b (1,10) c (2,4) d (3,1) e (4,3) f (5,2) g (100,-100). Squared distances
    // a-c 20, a-d 10, a-e 25, a-f 29, a-b 101, b-c 37, b-e 58, b-f 80, b-d 85, c-d 10, c-e 5, c-f 13, d-e 5, d-f 5, e-f 2.
    // 4 nearest: a 84, b 260, c 48, d 30, e 37, f 49 -> d; 3 nearest: a 74, b 175, c 38, e 32, f 44 -> e;
    // 2 nearest: a 49, b 117, c 33, f 42 -> c; 1 nearest: a 29, b 80, f 29 -> a; then b 80, f 80 -> b.
    // x of d, e, c, a, b: [0, 1, 2, 3, 4], median 2 -> (1 + 2 + 3) / 3 = 2;
    // y: [0, 1, 3, 4, 10], median 3, nearest 3, 4, then 1 (distance 2 before 10's 7) -> 8 / 3.
    const plane = [update('a', 1, [0, 0]), update('b', 1, [1, 10]), update('c', 1, [2, 4]), update('d', 1, [3, 1]), update('e', 1, [4, 3]), update('f', 1, [5, 2]), update('g', 1, [100, -100])];
    const viaStrategy = aggregate({ kind: 'bulyan', byzantine: 1 }, zero, plane);
    expect(viaStrategy.used).toEqual(['d', 'e', 'c', 'a', 'b']);
    expect([...viaStrategy.weights]).toEqual([2, 8 / 3]);
  });

  it('Bulyan refuses fewer than 4f + 3 updates, saying so', () => {
    const six = [0, 1, 2, 3, 4, 5].map((value) => update(`u${value}`, 1, [value]));
    expect(() => bulyan(six, 1)).toThrow('bulyan needs n >= 4f + 3 updates: 6 updates, f = 1 needs 7');
    expect(() => aggregate({ kind: 'bulyan', byzantine: 1 }, zero, six)).toThrow(AggregationError);
    // f = 0 is the coordinate-wise mean of every update (theta = beta = n).
    expect([...bulyan(six.slice(0, 3), 0).weights]).toEqual([1]);
  });

  it('refuses updates of another length, with no examples, and none at all', () => {
    expect(() => aggregate({ kind: 'fedavg' }, zero, [update('a', 1, [1, 2, 3])])).toThrow('update of a has 3 values; the global model has 2');
    expect(() => aggregate({ kind: 'fedavg' }, zero, [update('a', 0, [1, 2])])).toThrow('claims 0 examples');
    expect(() => aggregate({ kind: 'fedavg' }, zero, [])).toThrow('no updates');
    expect(() => aggregate({ kind: 'median' }, zero, three, undefined, weightedAverage)).toThrow('differential privacy needs');
  });
});
