/**
 * Secure aggregation with pairwise additive masks (Bonawitz et al. 2017, its single-mask variant):
 * every pair of clients in a round's cohort agrees on a seed by X25519 key agreement, and each
 * client adds the pair's pseudo-random mask (the lower id) or subtracts it (the higher id) from its
 * fixed-point update. Arithmetic is modulo 2^32, so the masks cancel exactly in the sum of the whole
 * cohort. When members drop out, each survivor reveals the seed it shares with each dropped member
 * (never one with another survivor), and the server takes those masks out of the sum: it then holds
 * the survivors' sum exactly, and still nothing about any one survivor.
 */
import { createCipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';

export const DEFAULT_FRACTIONAL_BITS = 16;

export class SecureAggregationError extends Error {
  readonly expose = true;
  constructor(message: string) {
    super(message);
    this.name = 'SecureAggregationError';
  }
}

/** A client's key pair; the public key (raw 32 bytes, base64url) is published at join. */
export interface MaskingKeys {
  publicKey: string;
  privateKey: KeyObject;
}

export function generateMaskingKeys(): MaskingKeys {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const raw = publicKey.export({ format: 'jwk' }).x as string;
  return { publicKey: raw, privateKey };
}

/** The private key as a JWK string, to keep between rounds (a client's own secret). */
export function exportPrivateKey(keys: MaskingKeys): string {
  return JSON.stringify(keys.privateKey.export({ format: 'jwk' }));
}

export function importMaskingKeys(privateJwk: string): MaskingKeys {
  const privateKey = createPrivateKey({ key: JSON.parse(privateJwk) as Record<string, string>, format: 'jwk' });
  return { privateKey, publicKey: createPublicKey(privateKey).export({ format: 'jwk' }).x as string };
}

function publicKeyObject(raw: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(raw)) throw new SecureAggregationError('a masking public key must be 32 bytes, base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' });
}

/** Values in fixed point modulo 2^32 (two's complement); refused when they do not fit. */
export function encodeFixedPoint(values: Float64Array, fractionalBits = DEFAULT_FRACTIONAL_BITS): Uint32Array {
  const scale = 2 ** fractionalBits;
  const limit = 2 ** 31;
  const out = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const scaled = Math.round((values[i] as number) * scale);
    if (!(Math.abs(scaled) < limit)) throw new SecureAggregationError(`value ${values[i]} at ${i} does not fit ${32 - fractionalBits}.${fractionalBits} fixed point`);
    out[i] = scaled >>> 0;
  }
  return out;
}

/** The signed fixed-point sum back to floats. */
export function decodeFixedPoint(sum: Uint32Array, fractionalBits = DEFAULT_FRACTIONAL_BITS): Float64Array {
  const scale = 2 ** fractionalBits;
  return Float64Array.from(sum, (value) => (value | 0) / scale);
}

/** `count` pseudo-random 32-bit words from a 32-byte seed (AES-256-CTR over zeros). */
export function maskStream(seed: Uint8Array, count: number): Uint32Array {
  const cipher = createCipheriv('aes-256-ctr', seed, Buffer.alloc(16));
  const bytes = Buffer.concat([cipher.update(Buffer.alloc(count * 4)), cipher.final()]);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, count).slice();
}

/** The seed a pair shares: sha256 of their X25519 secret and the round's context, the same from both ends. */
export function pairSeed(own: MaskingKeys, peerPublicKey: string, context: string): Uint8Array {
  const secret = diffieHellman({ privateKey: own.privateKey, publicKey: publicKeyObject(peerPublicKey) });
  return createHash('sha256').update(secret).update('\0').update(context).digest();
}

export interface CohortMember {
  client: string;
  publicKey: string;
}

/**
 * The client's masked vector: its fixed-point values plus the mask it shares with every other member
 * (added toward a member with a higher id, subtracted toward a lower one), modulo 2^32. `context`
 * names the federation and round, so no mask is ever used twice.
 */
export function maskUpdate(client: string, keys: MaskingKeys, encoded: Uint32Array, cohort: readonly CohortMember[], context: string): Uint32Array {
  if (!cohort.some((member) => member.client === client)) throw new SecureAggregationError(`client ${client} is not in the cohort`);
  const ids = new Set<string>();
  const out = Uint32Array.from(encoded);
  for (const member of cohort) {
    if (ids.has(member.client)) throw new SecureAggregationError(`client ${member.client} appears twice in the cohort`);
    ids.add(member.client);
    if (member.client === client) continue;
    const mask = maskStream(pairSeed(keys, member.publicKey, context), out.length);
    const add = client < member.client;
    for (let i = 0; i < out.length; i++) out[i] = add ? ((out[i] as number) + (mask[i] as number)) >>> 0 : ((out[i] as number) - (mask[i] as number)) >>> 0;
  }
  return out;
}

/** The server's sum of the masked vectors, modulo 2^32: the plain fixed-point sum once every member is in. */
export function sumMasked(vectors: readonly Uint32Array[]): Uint32Array {
  const length = vectors[0]?.length ?? 0;
  const sum = new Uint32Array(length);
  for (const vector of vectors) {
    if (vector.length !== length) throw new SecureAggregationError(`masked vectors differ in length (${vector.length} and ${length})`);
    for (let i = 0; i < length; i++) sum[i] = ((sum[i] as number) + (vector[i] as number)) >>> 0;
  }
  return sum;
}

/** A survivor's pair seed with a dropped member, revealed so the server can take that pair's mask out of the sum. */
export interface RevealedSeed {
  survivor: string;
  dropped: string;
  seed: Uint8Array;
}

/**
 * What a survivor reveals after a dropout: its seed with each dropped member. Refused when fewer
 * than two survivors would remain (the "sum" of one is that survivor's update) or when asked about
 * itself or about a member outside the cohort it masked for.
 */
export function revealSeeds(client: string, keys: MaskingKeys, cohort: readonly CohortMember[], dropped: readonly string[], context: string): Record<string, string> {
  const members = new Map(cohort.map((member) => [member.client, member.publicKey]));
  if (!members.has(client)) throw new SecureAggregationError(`client ${client} is not in the cohort`);
  const survivors = cohort.length - new Set(dropped).size;
  if (survivors < 2) throw new SecureAggregationError(`revealing seeds with ${dropped.length} of ${cohort.length} members dropped would leave ${survivors} survivor: its update would be exposed`);
  const out: Record<string, string> = {};
  for (const member of dropped) {
    const publicKey = members.get(member);
    if (member === client || publicKey === undefined) throw new SecureAggregationError(`${member} is not another member of the cohort`);
    out[member] = Buffer.from(pairSeed(keys, publicKey, context)).toString('base64url');
  }
  return out;
}

/**
 * Takes the dropped members' pair masks out of the survivors' masked sum (in place, modulo 2^32):
 * a survivor below a dropped member had added the pair's mask, one above had subtracted it.
 */
export function removeDroppedMasks(sum: Uint32Array, revealed: readonly RevealedSeed[]): Uint32Array {
  for (const { survivor, dropped, seed } of revealed) {
    if (survivor === dropped) throw new SecureAggregationError(`client ${survivor} cannot reveal a seed with itself`);
    if (seed.length !== 32) throw new SecureAggregationError(`the seed ${survivor} revealed for ${dropped} is ${seed.length} bytes, not 32`);
    const mask = maskStream(seed, sum.length);
    const added = survivor < dropped;
    for (let i = 0; i < sum.length; i++) sum[i] = added ? ((sum[i] as number) - (mask[i] as number)) >>> 0 : ((sum[i] as number) + (mask[i] as number)) >>> 0;
  }
  return sum;
}
