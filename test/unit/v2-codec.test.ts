import { describe, expect, it } from 'vitest';
import {
  decodeInferRequest,
  decodeInferResponse,
  encodeInferRequest,
  encodeInferResponse,
} from '../../functions/core/v2/codec.ts';
import { BadRequestError } from '../../functions/core/errors.ts';
import { decodeBase64Body } from '../../functions/inference/app.ts';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

function refusal(body: Uint8Array, headerLength?: string): string {
  try {
    decodeInferRequest(body, headerLength);
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return (error as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('decodeInferRequest, JSON tensors', () => {
  it('decodes every JSON datatype into the typed array onnxruntime wants', () => {
    const request = decodeInferRequest(
      json({
        id: 'req-1',
        inputs: [
          { name: 'b', datatype: 'BOOL', shape: [2], data: [true, false] },
          { name: 'u8', datatype: 'UINT8', shape: [2], data: [0, 255] },
          { name: 'u16', datatype: 'UINT16', shape: [1], data: [65535] },
          { name: 'u32', datatype: 'UINT32', shape: [1], data: [4294967295] },
          { name: 'u64', datatype: 'UINT64', shape: [1], data: [9007199254740991] },
          { name: 'i8', datatype: 'INT8', shape: [2], data: [-128, 127] },
          { name: 'i16', datatype: 'INT16', shape: [1], data: [-32768] },
          { name: 'i32', datatype: 'INT32', shape: [1], data: [-2147483648] },
          { name: 'i64', datatype: 'INT64', shape: [2], data: [-9007199254740991, 42] },
          { name: 'f32', datatype: 'FP32', shape: [2], data: [0.5, -1.25] },
          { name: 'f64', datatype: 'FP64', shape: [1], data: [0.1] },
          { name: 's', datatype: 'BYTES', shape: [2], data: ['hello', 'wörld'] },
        ],
      }),
    );
    const byName = Object.fromEntries(request.inputs.map((t) => [t.name, t.data]));
    expect(request.id).toBe('req-1');
    expect(byName.b).toEqual(new Uint8Array([1, 0]));
    expect(byName.u8).toEqual(new Uint8Array([0, 255]));
    expect(byName.u16).toEqual(new Uint16Array([65535]));
    expect(byName.u32).toEqual(new Uint32Array([4294967295]));
    expect(byName.u64).toEqual(new BigUint64Array([9007199254740991n]));
    expect(byName.i8).toEqual(new Int8Array([-128, 127]));
    expect(byName.i16).toEqual(new Int16Array([-32768]));
    expect(byName.i32).toEqual(new Int32Array([-2147483648]));
    expect(byName.i64).toEqual(new BigInt64Array([-9007199254740991n, 42n]));
    expect(byName.f32).toEqual(new Float32Array([0.5, -1.25]));
    expect(byName.f64).toEqual(new Float64Array([0.1]));
    expect(byName.s).toEqual(['hello', 'wörld']);
  });

  it('accepts nested data that flattens to the shape', () => {
    const request = decodeInferRequest(
      json({ inputs: [{ name: 'x', datatype: 'INT32', shape: [2, 2], data: [[1, 2], [3, 4]] }] }),
    );
    expect(request.inputs[0]!.data).toEqual(new Int32Array([1, 2, 3, 4]));
    expect(request.inputs[0]!.shape).toEqual([2, 2]);
  });

  it('reads the outputs filter with per-output and default binary flags', () => {
    const request = decodeInferRequest(
      json({
        parameters: { binary_data_output: true },
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }],
        outputs: [{ name: 'a' }, { name: 'b', parameters: { binary_data: false } }],
      }),
    );
    expect(request.outputs).toEqual([
      { name: 'a', binary: true },
      { name: 'b', binary: false },
    ]);
    expect(request.binaryDataOutput).toBe(true);
  });

  it.each([
    ['malformed JSON', Buffer.from('{"inputs": ['), /^request body is not valid JSON: /],
    ['negative dimension', json({ inputs: [{ name: 'x', datatype: 'FP32', shape: [-1], data: [] }] }), /^invalid inference request at inputs\.0\.shape\.0: /],
  ])('refuses %s', (_case, body, message) => {
    expect(refusal(body)).toMatch(message);
  });

  it.each([
    [{ name: 'x', datatype: 'FLOAT', shape: [1], data: [1] }, "input 'x' has unknown datatype 'FLOAT'"],
    [{ name: 'x', datatype: 'FP32', shape: [3], data: [1, 2] }, "input 'x' has 2 elements but its shape needs 3"],
    [{ name: 'x', datatype: 'FP32', shape: [2], data: [1, 'a'] }, 'input \'x\': element 1 is "a", expected a number for FP32'],
    [{ name: 'x', datatype: 'INT32', shape: [1], data: [1.5] }, "input 'x': element 0 is 1.5, expected an integer for INT32"],
    [{ name: 'x', datatype: 'UINT8', shape: [1], data: [256] }, "input 'x': element 0 is 256, expected an integer in [0, 255] for UINT8"],
    [{ name: 'x', datatype: 'BOOL', shape: [1], data: [1] }, "input 'x': element 0 is 1, expected true or false for BOOL"],
    [{ name: 'x', datatype: 'BYTES', shape: [1], data: [7] }, "input 'x': element 0 is 7, expected a string for BYTES"],
    [{ name: 'x', datatype: 'FP32', shape: [1], data: 1 }, "input 'x': data must be an array"],
    [{ name: 'x', datatype: 'FP32', shape: [1] }, "input 'x' has neither data nor binary_data_size"],
  ])('refuses the bad tensor %j', (input, message) => {
    expect(refusal(json({ inputs: [input] }))).toBe(message);
  });

  it('refuses an input given twice', () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1], data: [1] };
    expect(refusal(json({ inputs: [x, x] }))).toBe("input 'x' appears more than once");
  });
});

describe('binary tensor data extension', () => {
  it('round-trips FP32, FP16, INT64 and BYTES tensors through the client encoder and the server decoder', () => {
    const inputs = [
      { name: 'f', datatype: 'FP32' as const, shape: [2], data: new Float32Array([1.5, -2]) },
      { name: 'h', datatype: 'FP16' as const, shape: [1], data: new Uint16Array([0x3c00]) },
      { name: 'i', datatype: 'INT64' as const, shape: [1], data: new BigInt64Array([-5n]) },
      { name: 's', datatype: 'BYTES' as const, shape: [2], data: ['ab', ''] },
    ];
    const encoded = encodeInferRequest(inputs, { binary: true });
    expect(encoded.jsonLength).toBeGreaterThan(0);
    // 8 bytes FP32 + 2 FP16 + 8 INT64 + (4+2)+(4+0) BYTES
    expect(encoded.body.length - encoded.jsonLength!).toBe(28);
    const decoded = decodeInferRequest(encoded.body, String(encoded.jsonLength));
    expect(decoded.inputs.map((t) => [t.name, t.datatype, t.shape, t.data])).toEqual(
      inputs.map((t) => [t.name, t.datatype, t.shape, t.data]),
    );
  });

  it('decodes each fixed-size datatype in binary into the typed array onnxruntime takes for it', () => {
    const inputs = [
      { name: 'b', datatype: 'BOOL' as const, shape: [2], data: new Uint8Array([1, 0]) },
      { name: 'u8', datatype: 'UINT8' as const, shape: [1], data: new Uint8Array([255]) },
      { name: 'u16', datatype: 'UINT16' as const, shape: [1], data: new Uint16Array([65535]) },
      { name: 'u32', datatype: 'UINT32' as const, shape: [1], data: new Uint32Array([4294967295]) },
      { name: 'u64', datatype: 'UINT64' as const, shape: [1], data: new BigUint64Array([18446744073709551615n]) },
      { name: 'i8', datatype: 'INT8' as const, shape: [1], data: new Int8Array([-128]) },
      { name: 'i16', datatype: 'INT16' as const, shape: [1], data: new Int16Array([-32768]) },
      { name: 'i32', datatype: 'INT32' as const, shape: [1], data: new Int32Array([-2147483648]) },
      { name: 'i64', datatype: 'INT64' as const, shape: [1], data: new BigInt64Array([-9223372036854775808n]) },
      { name: 'h', datatype: 'FP16' as const, shape: [1], data: new Uint16Array([0x3c00]) },
      { name: 'f', datatype: 'FP32' as const, shape: [1], data: new Float32Array([-0.5]) },
      { name: 'd', datatype: 'FP64' as const, shape: [1], data: new Float64Array([1e300]) },
    ];
    const encoded = encodeInferRequest(inputs, { binary: true });
    const decoded = decodeInferRequest(encoded.body, String(encoded.jsonLength));
    expect(decoded.inputs.map((t) => [t.name, (t.data as object).constructor.name, t.data])).toEqual(inputs.map((t) => [t.name, t.data.constructor.name, t.data]));
  });

  it('decodes a binary tensor that starts at an unaligned offset', () => {
    const header = json({ inputs: [{ name: 'f', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }] });
    const body = Buffer.concat([header, Buffer.from(new Float32Array([3.25]).buffer)]);
    expect(header.length % 4).not.toBe(0);
    expect(decodeInferRequest(body, String(header.length)).inputs[0]!.data).toEqual(new Float32Array([3.25]));
  });

  it('views an aligned binary tensor in the body itself, and copies an unaligned one', () => {
    const header = json({ inputs: [{ name: 'f', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }] });
    const pad = (8 - (header.length % 8)) % 8;
    const memory = Buffer.alloc(pad + header.length + 8 + 1);
    const at = (offset: number) => {
      const body = memory.subarray(offset, offset + header.length + 8);
      header.copy(body);
      Buffer.from(new Float32Array([1.5, -2]).buffer).copy(body, header.length);
      return { body, data: decodeInferRequest(body, String(header.length)).inputs[0]!.data as Float32Array };
    };
    const aligned = at(pad);
    expect(aligned.data).toEqual(new Float32Array([1.5, -2]));
    expect(aligned.data.buffer).toBe(memory.buffer); // a view: no copy
    expect(aligned.data.byteOffset).toBe(memory.byteOffset + pad + header.length);
    const unaligned = at(pad + 1);
    expect(unaligned.data).toEqual(new Float32Array([1.5, -2]));
    expect(unaligned.data.buffer).not.toBe(memory.buffer);
  });

  it.each([
    ['a header length that is not a number', 'abc', 0, 'Inference-Header-Content-Length must be a non-negative integer, got "abc"'],
    ['a header length past the body', '9999', 0, /^Inference-Header-Content-Length is 9999 but the body has only \d+ bytes$/],
    ['binary size that does not match the shape', undefined, 2, "input 'f' has 2 bytes of binary data but shape and FP32 need 4"],
    ['fewer binary bytes than declared', undefined, -1, "input 'f' declares binary_data_size 2 but only 1 binary bytes remain"],
  ])('refuses %s', (_case, headerLength, size, message) => {
    const declared = size === -1 ? 2 : size;
    const header = json({ inputs: [{ name: 'f', datatype: 'FP32', shape: [1], parameters: { binary_data_size: declared } }] });
    const body = Buffer.concat([header, Buffer.alloc(size === -1 ? 1 : size)]);
    const text = refusal(body, headerLength ?? String(header.length));
    if (typeof message === 'string') expect(text).toBe(message);
    else expect(text).toMatch(message);
  });

  it('refuses trailing binary bytes that no input accounts for', () => {
    const header = json({ inputs: [{ name: 'f', datatype: 'FP32', shape: [1], data: [1] }] });
    expect(refusal(Buffer.concat([header, Buffer.alloc(3)]), String(header.length))).toBe(
      "body has 3 binary bytes that no input's binary_data_size accounts for",
    );
  });

  it('refuses a truncated BYTES element', () => {
    const header = json({ inputs: [{ name: 's', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 6 } }] });
    const chunk = Buffer.from([10, 0, 0, 0, 65, 66]);
    expect(refusal(Buffer.concat([header, chunk]), String(header.length))).toBe(
      "input 's': BYTES element of 10 bytes overruns its binary data",
    );
  });
});

describe("decodeBase64Body, the inference handler's decoding of API Gateway binary bodies", () => {
  it('decodes exactly what Buffer.from does, with the binary part after the header 8-byte aligned', () => {
    const bytes = Buffer.from(Array.from({ length: 61 }, (_, i) => (i * 37) % 256));
    for (let headerLength = 0; headerLength <= 17; headerLength++) {
      const decoded = decodeBase64Body(bytes.toString('base64'), String(headerLength));
      expect(decoded.equals(bytes), `header ${headerLength}`).toBe(true);
      expect((decoded.byteOffset + headerLength) % 8, `header ${headerLength}`).toBe(0);
    }
    // Without a (valid) header length the whole body is the header: nothing to align.
    expect(decodeBase64Body(bytes.toString('base64'), undefined).equals(bytes)).toBe(true);
    expect(decodeBase64Body(bytes.toString('base64'), 'abc').equals(bytes)).toBe(true);
  });
});

describe('encodeInferResponse', () => {
  it('writes JSON outputs with booleans and numbers, and binary outputs after the header', () => {
    const encoded = encodeInferResponse(
      {
        model_name: 'm',
        model_version: '3',
        id: 'r',
        outputs: [
          { name: 'flag', datatype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
          { name: 'n', datatype: 'INT64', shape: [1], data: new BigInt64Array([7n]) },
          { name: 'p', datatype: 'FP32', shape: [2], data: new Float32Array([0.25, 0.75]) },
        ],
      },
      new Set(['p']),
    );
    const header = JSON.parse(encoded.body.subarray(0, encoded.jsonLength).toString('utf8'));
    expect(header).toEqual({
      model_name: 'm',
      model_version: '3',
      id: 'r',
      outputs: [
        { name: 'flag', datatype: 'BOOL', shape: [2], data: [true, false] },
        { name: 'n', datatype: 'INT64', shape: [1], data: [7] },
        { name: 'p', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } },
      ],
    });
    const decoded = decodeInferResponse(encoded.body, encoded.jsonLength);
    expect(decoded.outputs[2]!.data).toEqual(new Float32Array([0.25, 0.75]));
  });

  it('sends FP16 outputs as binary when asked, and as JSON numbers otherwise', () => {
    const response = { model_name: 'm', model_version: '1', outputs: [{ name: 'h', datatype: 'FP16' as const, shape: [2], data: new Uint16Array([0x3c00, 0x2e66]) }] };
    const binary = encodeInferResponse(response, new Set(['h']));
    expect(binary.jsonLength).toBe(binary.body.length - 4);
    expect(binary.body.subarray(binary.jsonLength)).toEqual(Buffer.from([0x00, 0x3c, 0x66, 0x2e]));
    const text = encodeInferResponse(response, new Set());
    expect(text.jsonLength).toBeUndefined();
    expect(text.body.toString()).toBe('{"model_name":"m","model_version":"1","outputs":[{"name":"h","datatype":"FP16","shape":[2],"data":[1,0.1]}]}');
  });
});
