import { describe, expect, it } from 'vitest';
import { decodeFixedPoint, encodeFixedPoint, generateMaskingKeys, maskUpdate, pairSeed, removeDroppedMasks, revealSeeds, SecureAggregationError, sumMasked } from '../../functions/core/federated/secure-aggregation.ts';

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

  it('a cohort of 4 with 1 dropout: the survivors reveal their seeds with it and the sum is exactly the survivors\' sum', () => {
    const four = [...values, Float64Array.from([100, -100, 0.25])];
    const names = ['alice', 'bob', 'carol', 'dave'];
    const fourKeys = names.map(() => generateMaskingKeys());
    const fourCohort = names.map((client, index) => ({ client, publicKey: fourKeys[index]!.publicKey }));
    const encoded = four.map((v) => encodeFixedPoint(v));
    const masked = names.map((client, index) => maskUpdate(client, fourKeys[index]!, encoded[index]!, fourCohort, 'fed/2/1'));
    // bob got his masks but never delivered: alice (below him) added, carol and dave (above) subtracted their pair masks.
    const survivors = [0, 2, 3];
    const sum = sumMasked(survivors.map((index) => masked[index]!));
    expect([...sum]).not.toEqual([...sumMasked(survivors.map((index) => encoded[index]!))]);
    const revealed = survivors.flatMap((index) => Object.entries(revealSeeds(names[index]!, fourKeys[index]!, fourCohort, ['bob'], 'fed/2/1')).map(([dropped, seed]) => ({ survivor: names[index]!, dropped, seed: Buffer.from(seed, 'base64url') })));
    expect(revealed.map((r) => `${r.survivor}-${r.dropped}`)).toEqual(['alice-bob', 'carol-bob', 'dave-bob']);
    removeDroppedMasks(sum, revealed);
    expect([...sum]).toEqual([...sumMasked(survivors.map((index) => encoded[index]!))]);
    // alice + carol + dave, exact in 16 fractional bits: [0.5 + 1 + 100, -1.25 + 1 - 100, 3 - 7.5 + 0.25].
    expect([...decodeFixedPoint(sum)]).toEqual([101.5, -100.25, -4.25]);
    // The revealed seed is the pair's, from either end: bob's own view of his seed with alice matches.
    expect(Buffer.from(revealed[0]!.seed)).toEqual(Buffer.from(pairSeed(fourKeys[1]!, fourKeys[0]!.publicKey, 'fed/2/1')));
  });

  it('a survivor refuses to reveal when it would be left alone, about itself, or about a stranger', () => {
    expect(() => revealSeeds('alice', keys[0]!, cohort, ['bob', 'carol'], 'ctx')).toThrow('would leave 1 survivor');
    expect(() => revealSeeds('alice', keys[0]!, cohort, ['alice'], 'ctx')).toThrow('alice is not another member of the cohort');
    expect(() => revealSeeds('alice', keys[0]!, cohort, ['mallory'], 'ctx')).toThrow('mallory is not another member of the cohort');
    expect(() => removeDroppedMasks(new Uint32Array(2), [{ survivor: 'a', dropped: 'b', seed: new Uint8Array(31) }])).toThrow('is 31 bytes, not 32');
  });

  it('refuses values beyond the fixed-point range and a client outside the cohort', () => {
    expect(() => encodeFixedPoint(Float64Array.from([40_000]))).toThrow(SecureAggregationError);
    expect(() => maskUpdate('mallory', keys[0]!, new Uint32Array(3), cohort, 'ctx')).toThrow('client mallory is not in the cohort');
  });
});
