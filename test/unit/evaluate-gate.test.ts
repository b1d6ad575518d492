import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, evaluateGate } from '../../functions/core/evaluate/gate.ts';

const policy = { maxAccuracyDrop: 0.01, minSpeedup: 1.2, maxP99Ms: 5, maxErrorRate: 0 };
const speedup = (value: number, low: number, high: number) => ({ value, low, high, pairs: 500, confidence: 0.95 });
const clean = [
  { what: 'accuracy rows', errors: 0, inferences: 1000 },
  { what: 'single-stream queries', errors: 0, inferences: 500 },
];

describe('the promotion gate', () => {
  it('passes when every limit holds, and lists what it checked', () => {
    const gate = evaluateGate(policy, 'manifest', {
      accuracyDelta: { value: -0.005, low: -0.008, high: -0.002 },
      speedup: speedup(1.5, 1.4, 1.6),
      candidateP99Ms: 4,
      candidateErrors: clean,
      baselineVersion: '1',
    });

    expect(gate.passed).toBe(true);
    expect(gate.policySource).toBe('manifest');
    expect(gate.checks.map((c) => [c.rule, c.passed, c.skipped, c.actual])).toEqual([
      ['maxAccuracyDrop', true, false, 0.005],
      ['minSpeedup', true, false, 1.4],
      ['maxP99Ms', true, false, 4],
      ['maxErrorRate', true, false, 0],
    ]);
    expect(gate.reasons).toEqual([
      'top-1 accuracy drop 0.50% against version 1 (95% interval of the change -0.80% to -0.20%); the policy allows at most 1.00%',
      "single-stream speedup 1.500x over version 1 (95% interval 1.400x to 1.600x over 500 interleaved query pairs); the policy needs the interval's lower bound at 1.2x or more",
      'single-stream p99 4.000 ms; the policy allows at most 5 ms',
      'error rate 0.00% in every scenario (1000 accuracy rows, 500 single-stream queries); the policy allows at most 0.00%',
    ]);
  });

  it('fails on too large an accuracy drop or too small a speedup, and gives only the failures as reasons', () => {
    const gate = evaluateGate(policy, 'model', {
      accuracyDelta: { value: -0.02, low: -0.025, high: -0.015 },
      speedup: speedup(1.1, 1.05, 1.15),
      candidateP99Ms: 4,
      candidateErrors: clean,
      baselineVersion: '3',
    });

    expect(gate.passed).toBe(false);
    expect(gate.reasons).toEqual([
      'top-1 accuracy drop 2.00% against version 3 (95% interval of the change -2.50% to -1.50%); the policy allows at most 1.00%',
      "single-stream speedup 1.100x over version 3 (95% interval 1.050x to 1.150x over 500 interleaved query pairs); the policy needs the interval's lower bound at 1.2x or more",
    ]);
  });

  it('fails a speedup whose point clears the bar but whose interval does not (a noisy copy of the baseline)', () => {
    const gate = evaluateGate({ minSpeedup: 1.2 }, 'manifest', { speedup: speedup(1.51, 0.96, 2.1), baselineVersion: '1' });

    expect(gate.passed).toBe(false);
    expect(gate.checks.map((c) => [c.rule, c.passed, c.actual])).toEqual([['minSpeedup', false, 0.96]]);
  });

  it('fails minSpeedup when the comparison ran but could not establish a speedup', () => {
    const gate = evaluateGate({ minSpeedup: 1.2 }, 'manifest', { speedupUnavailable: '3 single-stream queries failed, so their times say nothing about speed', baselineVersion: '1' });

    expect(gate.passed).toBe(false);
    expect(gate.reasons).toEqual(['speedup not established: 3 single-stream queries failed, so their times say nothing about speed']);
  });

  it('fails on p99 over the limit and on any error when none are allowed', () => {
    const gate = evaluateGate({ maxP99Ms: 2, maxErrorRate: 0 }, 'manifest', {
      candidateP99Ms: 2.5,
      candidateErrors: [
        { what: 'accuracy rows', errors: 1, inferences: 1000, firstReason: 'row 7: Got invalid dimensions for input: input' },
        { what: 'offline samples', errors: 0, inferences: 3_500_000 },
      ],
    });

    expect(gate.passed).toBe(false);
    expect(gate.reasons).toEqual([
      'single-stream p99 2.500 ms; the policy allows at most 2 ms',
      'error rate 0.10% of accuracy rows (1 of 1000 failed; first: row 7: Got invalid dimensions for input: input); the policy allows at most 0.00%',
    ]);
  });

  it('skips, and says so, the limits that need a baseline when there is none', () => {
    const gate = evaluateGate(DEFAULT_POLICY, 'default', { candidateErrors: [{ what: 'accuracy rows', errors: 0, inferences: 10 }], baselineVersion: null });

    expect(gate.passed).toBe(true);
    expect(gate.checks[0]).toEqual({
      rule: 'maxAccuracyDrop',
      limit: 0.01,
      actual: null,
      passed: true,
      skipped: true,
      detail: 'accuracy drop not checked: no baseline version or no labels',
    });
    expect(gate.reasons).toEqual(['error rate 0.00% in every scenario (10 accuracy rows); the policy allows at most 0.00%']);
  });
});
