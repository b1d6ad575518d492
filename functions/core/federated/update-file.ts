/**
 * A client's update as one object: the magic "AMFU", a little-endian uint32 manifest length, the
 * manifest (JSON: federation, round, client, example count, tensors, payload sha256), then the
 * tensors' values back to back, little-endian, in the manifest's order. Before an update is used it
 * is checked against the global model and the round it claims: nothing unchecked is aggregated.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import * as z from 'zod';
import { BadRequestError, HttpError, PayloadTooLargeError } from '../platform/errors.ts';
import type { ParameterLayout, ParameterType } from './parameters.ts';

export const UPDATE_MAGIC = 'AMFU';
const MAX_MANIFEST_BYTES = 1024 * 1024;

export class ForbiddenError extends HttpError {
  constructor(message: string) {
    super(403, message);
    this.name = 'ForbiddenError';
  }
}

const tensorSchema = z.strictObject({
  name: z.string().min(1).max(512),
  dtype: z.enum(['float32', 'float64', 'uint32']),
  dims: z.array(z.number().int().nonnegative()).max(16),
});

export const updateManifestSchema = z.strictObject({
  format: z.literal(1),
  federation: z.string().min(1).max(64),
  round: z.number().int().positive(),
  client: z.string().min(1).max(64),
  examples: z.number().int().positive().max(1e12),
  /** `float`: the trained parameters; `masked`: secure aggregation's masked fixed-point delta (one uint32 tensor). */
  encoding: z.enum(['float', 'masked']),
  tensors: z.array(tensorSchema).max(100_000),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type UpdateManifest = z.infer<typeof updateManifestSchema>;
export type UpdateTensor = z.infer<typeof tensorSchema>;

const bytesPer = { float32: 4, float64: 8, uint32: 4 } as const;
const countOf = (dims: readonly number[]) => dims.reduce((product, dim) => product * dim, 1);

export interface UpdateIdentity {
  federation: string;
  round: number;
  client: string;
  examples: number;
}

function writeValues(view: DataView, at: number, dtype: UpdateTensor['dtype'], values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number;
    if (dtype === 'float32') view.setFloat32(at, value, true);
    else if (dtype === 'float64') view.setFloat64(at, value, true);
    else view.setUint32(at, value, true);
    at += bytesPer[dtype];
  }
  return at;
}

function encode(identity: UpdateIdentity, encoding: UpdateManifest['encoding'], tensors: { tensor: UpdateTensor; values: ArrayLike<number> }[]): Uint8Array {
  const payloadBytes = tensors.reduce((sum, { tensor }) => sum + countOf(tensor.dims) * bytesPer[tensor.dtype], 0);
  const payload = new Uint8Array(payloadBytes);
  const view = new DataView(payload.buffer);
  let at = 0;
  for (const { tensor, values } of tensors) {
    if (values.length !== countOf(tensor.dims)) throw new RangeError(`tensor "${tensor.name}" has ${values.length} values for dims [${tensor.dims.join(', ')}]`);
    at = writeValues(view, at, tensor.dtype, values);
  }
  const manifest: UpdateManifest = { format: 1, ...identity, encoding, tensors: tensors.map(({ tensor }) => tensor), sha256: createHash('sha256').update(payload).digest('hex') };
  const header = Buffer.from(JSON.stringify(manifest));
  const out = new Uint8Array(8 + header.length + payload.length);
  out.set(Buffer.from(UPDATE_MAGIC, 'latin1'), 0);
  new DataView(out.buffer).setUint32(4, header.length, true);
  out.set(header, 8);
  out.set(payload, 8 + header.length);
  return out;
}

/** The trained parameters (flat, in the layout) as an update file. */
export function encodeUpdate(identity: UpdateIdentity, layout: ParameterLayout, flat: Float64Array): Uint8Array {
  if (flat.length !== layout.length) throw new RangeError(`${flat.length} values for a layout of ${layout.length}`);
  return encode(
    identity,
    'float',
    layout.entries.map((entry) => ({ tensor: { name: entry.name, dtype: entry.dtype, dims: entry.dims }, values: flat.subarray(entry.offset, entry.offset + entry.length) })),
  );
}

/** A masked fixed-point delta (secure aggregation) as an update file. */
export function encodeMaskedUpdate(identity: UpdateIdentity, masked: Uint32Array): Uint8Array {
  return encode(identity, 'masked', [{ tensor: { name: 'masked', dtype: 'uint32', dims: [masked.length] }, values: masked }]);
}

export interface UpdateExpectation {
  federation: string;
  round: number;
  client: string;
  layout: ParameterLayout;
  maxBytes: number;
  /** Secure aggregation rounds take masked updates only; the others, float updates only. */
  encoding: UpdateManifest['encoding'];
}

export interface CheckedUpdate {
  manifest: UpdateManifest;
  /** Float updates: the parameters, flat in the layout. */
  weights?: Float64Array;
  /** Masked updates: the masked fixed-point vector. */
  masked?: Uint32Array;
  /** sha256 of the whole file: the same file twice is the same update. */
  fileSha256: string;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** `count` little-endian values from `at`: one aligned copy on a little-endian machine, a DataView walk elsewhere. */
function readLittleEndian(payload: Uint8Array, at: number, dtype: UpdateTensor['dtype'], count: number): Float32Array | Float64Array | Uint32Array {
  const bytes = count * bytesPer[dtype];
  const Kind = dtype === 'float32' ? Float32Array : dtype === 'float64' ? Float64Array : Uint32Array;
  if (LITTLE_ENDIAN) return new Kind(payload.slice(at, at + bytes).buffer);
  const view = new DataView(payload.buffer, payload.byteOffset + at, bytes);
  const out = new Kind(count);
  for (let i = 0; i < count; i++) out[i] = dtype === 'float32' ? view.getFloat32(i * 4, true) : dtype === 'float64' ? view.getFloat64(i * 8, true) : view.getUint32(i * 4, true);
  return out;
}

/**
 * Reads and checks an update: size bound (413), format and manifest (400), the federation, round and
 * client it is for (403 when it claims another client), tensors with the global model's names,
 * shapes and types in order, the payload's sha256, and finite values (400).
 */
export function checkUpdate(bytes: Uint8Array, expected: UpdateExpectation): CheckedUpdate {
  if (bytes.byteLength > expected.maxBytes) throw new PayloadTooLargeError(`the update is ${bytes.byteLength} bytes; this federation takes at most ${expected.maxBytes}`);
  if (bytes.byteLength < 8 || Buffer.from(bytes.subarray(0, 4)).toString('latin1') !== UPDATE_MAGIC) throw new BadRequestError(`the update is not an update file (it must start with "${UPDATE_MAGIC}")`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerBytes = view.getUint32(4, true);
  if (headerBytes > MAX_MANIFEST_BYTES || 8 + headerBytes > bytes.byteLength) throw new BadRequestError(`the update's manifest length ${headerBytes} does not fit the file`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerBytes)).toString('utf8'));
  } catch (error) {
    throw new BadRequestError(`the update's manifest is not JSON: ${(error as Error).message}`);
  }
  const parsed = updateManifestSchema.safeParse(raw);
  if (!parsed.success) throw new BadRequestError(`invalid update manifest: ${z.prettifyError(parsed.error)}`);
  const manifest = parsed.data;
  if (manifest.client !== expected.client) throw new ForbiddenError(`the update is for client ${manifest.client}; this key and token belong to client ${expected.client}`);
  if (manifest.federation !== expected.federation || manifest.round !== expected.round) {
    throw new BadRequestError(`the update is for federation ${manifest.federation} round ${manifest.round}; this is federation ${expected.federation} round ${expected.round}`);
  }
  if (manifest.encoding !== expected.encoding) throw new BadRequestError(`this round takes ${expected.encoding} updates; the update is ${manifest.encoding}`);
  const payload = bytes.subarray(8 + headerBytes);
  if (createHash('sha256').update(payload).digest('hex') !== manifest.sha256) throw new BadRequestError("the update's payload does not match the sha256 in its manifest");
  const fileSha256 = createHash('sha256').update(bytes).digest('hex');

  const expectedTensors: UpdateTensor[] =
    expected.encoding === 'masked'
      ? [{ name: 'masked', dtype: 'uint32', dims: [expected.layout.length] }]
      : expected.layout.entries.map((entry) => ({ name: entry.name, dtype: entry.dtype as ParameterType, dims: entry.dims }));
  if (manifest.tensors.length !== expectedTensors.length) throw new BadRequestError(`the update has ${manifest.tensors.length} tensors; the global model has ${expectedTensors.length}`);
  manifest.tensors.forEach((tensor, index) => {
    const want = expectedTensors[index] as UpdateTensor;
    if (tensor.name !== want.name) throw new BadRequestError(`tensor ${index} of the update is "${tensor.name}"; the global model's is "${want.name}"`);
    if (tensor.dtype !== want.dtype) throw new BadRequestError(`tensor "${tensor.name}" is ${tensor.dtype}; the global model's is ${want.dtype}`);
    if (tensor.dims.length !== want.dims.length || tensor.dims.some((dim, axis) => dim !== want.dims[axis])) {
      throw new BadRequestError(`tensor "${tensor.name}" has shape [${tensor.dims.join(', ')}]; the global model's is [${want.dims.join(', ')}]`);
    }
  });
  const payloadBytes = expectedTensors.reduce((sum, tensor) => sum + countOf(tensor.dims) * bytesPer[tensor.dtype], 0);
  if (payload.byteLength !== payloadBytes) throw new BadRequestError(`the update's payload is ${payload.byteLength} bytes; its tensors need ${payloadBytes}`);

  if (expected.encoding === 'masked') return { manifest, masked: readLittleEndian(payload, 0, 'uint32', expected.layout.length) as Uint32Array, fileSha256 };
  const weights = new Float64Array(expected.layout.length);
  let at = 0;
  for (const entry of expected.layout.entries) {
    const values = readLittleEndian(payload, at, entry.dtype, entry.length);
    for (let i = 0; i < values.length; i++) {
      const value = values[i] as number;
      if (!Number.isFinite(value)) throw new BadRequestError(`tensor "${entry.name}" holds ${value} at index ${i}; updates must be finite`);
    }
    weights.set(values, entry.offset);
    at += entry.length * bytesPer[entry.dtype];
  }
  return { manifest, weights, fileSha256 };
}
