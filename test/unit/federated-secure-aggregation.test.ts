import { describe, expect, it } from 'vitest';
import { decodeFixedPoint, encodeFixedPoint, generateMaskingKeys, maskUpdate, pairSeed, SecureAggregationError, sumMasked } from '../../functions/core/federated/secure-aggregation.ts';

describe('secure aggregation with pairwise masks', () => {
  const values = [Float64Array.from([0.5, -1.25, 3]), Float64Array.from([-0.5, 2, 0.015625]), Float64Array.from([1, 1, -7.5])];
  const clients = ['alice', 'bob', 'carol'];
  const keys = clients.map(() => generateMaskingKeys());
  const cohort = clients.map((client, index) => ({ client, publicKey: (keys[index] as ReturnType<typeof generateMaskingKeys>).publicKey }));

  it('both ends of a pair derive the same seed', () => {
    const [a, b] = keys as [ReturnType<typeof generateMaskingKeys>, ReturnType<typeof generateMaskingKeys>];
    expect(Buffer.from(pairSeed(a, b.publicKey, 'f/1'))).toEqual(Buffer.from(pairSeed(b, a.publicKey, 'f/1')));
    expect(Buffer.from(pairSeed(a, b.publicKey, 'f/1'))).not.toEqual(Buffer.from(pairSeed(a, b.publicKey, 'f/2')));
  });

  it('the masks cancel exactly in the sum, and no masked vector shows its values', () => {
    const encoded = values.map((v) => encodeFixedPoint(v));
    const masked = clients.map((client, index) => maskUpdate(client, keys[index]!, encoded[index]!, cohort, 'fed-1/round-3'));
    for (let index = 0; index < clients.length; index++) expect([...masked[index]!]).not.toEqual([...encoded[index]!]);
    expect([...sumMasked(masked)]).toEqual([...sumMasked(encoded)]);
    // These values are exact in 16 fractional bits: the decoded sum is exact too.
    expect([...decodeFixedPoint(sumMasked(masked))]).toEqual([1, 1.75, -4.484375]);
  });

  it('without one member the masks stay in the sum', () => {
    const encoded = values.map((v) => encodeFixedPoint(v));
    const masked = clients.map((client, index) => maskUpdate(client, keys[index]!, encoded[index]!, cohort, 'ctx'));
    expect([...sumMasked(masked.slice(0, 2))]).not.toEqual([...sumMasked(encoded.slice(0, 2))]);
  });

  it('refuses values beyond the fixed-point range and a client outside the cohort', () => {
    expect(() => encodeFixedPoint(Float64Array.from([40_000]))).toThrow(SecureAggregationError);
    expect(() => maskUpdate('mallory', keys[0]!, new Uint32Array(3), cohort, 'ctx')).toThrow('client mallory is not in the cohort');
  });
});
