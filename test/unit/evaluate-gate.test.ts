import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY, evaluateGate } from '../../functions/core/evaluate/gate.ts';

const policy = { maxAccuracyDrop: 0.01, minSpeedup: 1.2, maxP99Ms: 5, maxErrorRate: 0 };

describe('the promotion gate', () => {
  it('passes when every limit holds, and lists what it checked', () => {
    const gate = evaluateGate(policy, 'manifest', {
      accuracyDelta: { value: -0.005, low: -0.008, high: -0.002 },
      speedup: 1.5,
      candidateP99Ms: 4,
      candidateErrorRate: 0,
      baselineVersion: '1',
    });

    expect(gate.passed).toBe(true);
    expect(gate.policySource).toBe('manifest');
    expect(gate.checks.map((c) => [c.rule, c.passed, c.skipped, c.actual])).toEqual([
      ['maxAccuracyDrop', true, false, 0.005],
      ['minSpeedup', true, false, 1.5],
      ['maxP99Ms', true, false, 4],
      ['maxErrorRate', true, false, 0],
    ]);
    expect(gate.reasons).toEqual([
      'top-1 accuracy drop 0.50% against version 1 (95% interval of the change -0.80% to -0.20%); the policy allows at most 1.00%',
      'single-stream p50 speedup 1.500x over version 1; the policy needs at least 1.2x',
      'single-stream p99 4.000 ms; the policy allows at most 5 ms',
      'error rate 0.00% of inferences; the policy allows at most 0.00%',
    ]);
  });

  it('fails on too large an accuracy drop or too small a speedup, and gives only the failures as reasons', () => {
    const gate = evaluateGate(policy, 'model', {
      accuracyDelta: { value: -0.02, low: -0.025, high: -0.015 },
      speedup: 1.1,
      candidateP99Ms: 4,
      candidateErrorRate: 0,
      baselineVersion: '3',
    });

    expect(gate.passed).toBe(false);
    expect(gate.reasons).toEqual([
      'top-1 accuracy drop 2.00% against version 3 (95% interval of the change -2.50% to -1.50%); the policy allows at most 1.00%',
      'single-stream p50 speedup 1.100x over version 3; the policy needs at least 1.2x',
    ]);
  });

  it('fails on p99 over the limit and on any error when none are allowed', () => {
    const gate = evaluateGate({ maxP99Ms: 2, maxErrorRate: 0 }, 'manifest', { candidateP99Ms: 2.5, candidateErrorRate: 0.001 });

    expect(gate.passed).toBe(false);
    expect(gate.reasons).toEqual([
      'single-stream p99 2.500 ms; the policy allows at most 2 ms',
      'error rate 0.10% of inferences; the policy allows at most 0.00%',
    ]);
  });

  it('skips, and says so, the limits that need a baseline when there is none', () => {
    const gate = evaluateGate(DEFAULT_POLICY, 'default', { candidateErrorRate: 0, baselineVersion: null });

    expect(gate.passed).toBe(true);
    expect(gate.checks[0]).toEqual({
      rule: 'maxAccuracyDrop',
      limit: 0.01,
      actual: null,
      passed: true,
      skipped: true,
      detail: 'accuracy drop not checked: no baseline version or no labels',
    });
    expect(gate.reasons).toEqual(['error rate 0.00% of inferences; the policy allows at most 0.00%']);
  });
});
