import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  decodeInferRequest,
  decodeInferResponse,
  decodeJsonTensorData,
  encodeInferRequest,
  encodeInferResponse,
  MAX_JSON_NESTING,
  type ResponseTensor,
} from '../../functions/core/v2/codec.ts';
import { BadRequestError } from '../../functions/core/platform/errors.ts';
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

const text = (value: string) => Buffer.from(value);
const tensorRequest = (datatype: string, shape: number[], data: string) =>
  text(`{"inputs":[{"name":"x","datatype":"${datatype}","shape":${JSON.stringify(shape)},"data":${data}}]}`);
const decodedData = (body: Uint8Array) => decodeInferRequest(body).inputs[0]!.data;
const responseText = (outputs: ResponseTensor[]) => encodeInferResponse({ model_name: 'm', model_version: '1', outputs }, new Set()).body.toString();

/** Runs a Python snippet with the body on stdin; undefined when this machine has no python3. */
function python(script: string, input: string | Buffer): string | undefined {
  try {
    return execFileSync('python3', ['-c', script], { input, encoding: 'utf8' }).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
const hasPython = python('print(1)', '') === '1';

describe('64-bit integers in JSON, exact over their whole range', () => {
  it('reads INT64 and UINT64 values beyond 2^53 exactly', () => {
    expect(decodedData(tensorRequest('INT64', [5], '[9223372036854775807,-9223372036854775808,9007199254740993,-9007199254740993,42]'))).toEqual(
      new BigInt64Array([9223372036854775807n, -9223372036854775808n, 9007199254740993n, -9007199254740993n, 42n]),
    );
    expect(decodedData(tensorRequest('UINT64', [3], '[18446744073709551615,9007199254740993,0]'))).toEqual(
      new BigUint64Array([18446744073709551615n, 9007199254740993n, 0n]),
    );
    // Integer-valued literals in other spellings are the integers they denote.
    expect(decodedData(tensorRequest('INT64', [2], '[9.007199254740993e15,9223372036854775807.0]'))).toEqual(
      new BigInt64Array([9007199254740993n, 9223372036854775807n]),
    );
  });

  it('reads integers written as long literals on the exact path, for every integer datatype', () => {
    const body = text(
      '{"inputs":[{"name":"nan","datatype":"FP32","shape":[1],"data":[NaN]},' +
        '{"name":"i32","datatype":"INT32","shape":[3],"data":[1.0000000000000000,2e+01,-0.0000000001e10]},' +
        '{"name":"u8","datatype":"UINT8","shape":[1],"data":[25.50000000000000e1]},' +
        '{"name":"i64","datatype":"INT64","shape":[1],"data":[1.0000000000000000]}]}',
    );
    expect(decodeInferRequest(body).inputs.map((t) => t.data)).toEqual([
      new Float32Array([Number.NaN]),
      new Int32Array([1, 20, -1]),
      new Uint8Array([255]),
      new BigInt64Array([1n]),
    ]);
  });

  it.each([
    ['INT64', '[9223372036854775808]', "input 'x': element 0 is 9223372036854775808, expected an integer in [-9223372036854775808, 9223372036854775807] for INT64"],
    ['INT64', '[-9223372036854775809]', "input 'x': element 0 is -9223372036854775809, expected an integer in [-9223372036854775808, 9223372036854775807] for INT64"],
    ['UINT64', '[18446744073709551616]', "input 'x': element 0 is 18446744073709551616, expected an integer in [0, 18446744073709551615] for UINT64"],
    ['UINT64', '[-1]', "input 'x': element 0 is -1, expected an integer in [0, 18446744073709551615] for UINT64"],
    ['INT64', '[9007199254740993.5]', "input 'x': element 0 is 9007199254740993.5, expected an integer for INT64"],
    ['INT64', '[1e400]', "input 'x': element 0 is 1e400, expected an integer in [-9223372036854775808, 9223372036854775807] for INT64"],
    ['INT64', '[1e999999999]', "input 'x': element 0 is 1e999999999, expected an integer in [-9223372036854775808, 9223372036854775807] for INT64"],
    ['INT64', '[1.5]', "input 'x': element 0 is 1.5, expected an integer for INT64"],
    ['INT32', '[2147483648]', "input 'x': element 0 is 2147483648, expected an integer in [-2147483648, 2147483647] for INT32"],
    ['INT32', '[1e400]', "input 'x': element 0 is 1e400, expected an integer in [-2147483648, 2147483647] for INT32"],
    ['UINT8', '[0.5]', "input 'x': element 0 is 0.5, expected an integer for UINT8"],
  ])('refuses %s data %s', (datatype, data, message) => {
    expect(refusal(tensorRequest(datatype, [1], data))).toBe(message);
  });

  it('writes INT64 and UINT64 outputs as exact integers', () => {
    expect(
      responseText([
        { name: 'i', datatype: 'INT64', shape: [4], data: new BigInt64Array([9223372036854775807n, -9223372036854775808n, 9007199254740993n, 0n]) },
        { name: 'u', datatype: 'UINT64', shape: [2], data: new BigUint64Array([18446744073709551615n, 9007199254740993n]) },
      ]),
    ).toBe(
      '{"model_name":"m","model_version":"1","outputs":[' +
        '{"name":"i","datatype":"INT64","shape":[4],"data":[9223372036854775807,-9223372036854775808,9007199254740993,0]},' +
        '{"name":"u","datatype":"UINT64","shape":[2],"data":[18446744073709551615,9007199254740993]}]}',
    );
  });

  it('round-trips the extremes through the client encoder, the server decoder and the client response decoder', () => {
    const i64 = new BigInt64Array([9223372036854775807n, -9223372036854775808n, 9007199254740993n]);
    const u64 = new BigUint64Array([18446744073709551615n, 9007199254740993n]);
    const request = encodeInferRequest([
      { name: 'i', datatype: 'INT64', shape: [3], data: i64 },
      { name: 'u', datatype: 'UINT64', shape: [2], data: u64 },
    ]);
    const decoded = decodeInferRequest(request.body);
    expect(decoded.inputs.map((t) => t.data)).toEqual([i64, u64]);
    const response = encodeInferResponse({ model_name: 'm', model_version: '1', outputs: decoded.inputs }, new Set());
    expect(decodeInferResponse(response.body).outputs.map((o) => o.data)).toEqual([i64, u64]);
  });

  it.skipIf(!hasPython)("is read exactly by Python's json module", () => {
    const body = responseText([{ name: 'i', datatype: 'UINT64', shape: [2], data: new BigUint64Array([18446744073709551615n, 9007199254740993n]) }]);
    expect(python('import json, sys; print(json.load(sys.stdin)["outputs"][0]["data"])', body)).toBe('[18446744073709551615, 9007199254740993]');
    // And a request Python wrote is read exactly.
    const fromPython = python('import json; print(json.dumps({"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [2**63 - 1, -2**63]}]}))', '')!;
    expect(decodedData(text(fromPython))).toEqual(new BigInt64Array([9223372036854775807n, -9223372036854775808n]));
  });
});

describe('non-finite floats in JSON', () => {
  it('writes NaN, Infinity and -Infinity as bare tokens and keeps -0', () => {
    expect(
      responseText([
        { name: 'f', datatype: 'FP32', shape: [5], data: new Float32Array([Number.NaN, Infinity, -Infinity, -0, 0]) },
        { name: 'd', datatype: 'FP64', shape: [4], data: new Float64Array([Number.NaN, -Infinity, -0, 0.1]) },
        { name: 'h', datatype: 'FP16', shape: [3], data: new Uint16Array([0x7e00, 0xfc00, 0x8000]) },
      ]),
    ).toBe(
      '{"model_name":"m","model_version":"1","outputs":[' +
        '{"name":"f","datatype":"FP32","shape":[5],"data":[NaN,Infinity,-Infinity,-0.0,0]},' +
        '{"name":"d","datatype":"FP64","shape":[4],"data":[NaN,-Infinity,-0.0,0.1]},' +
        '{"name":"h","datatype":"FP16","shape":[3],"data":[NaN,-Infinity,-0.0]}]}',
    );
  });

  it.skipIf(!hasPython)("writes them so that Python's json module reads back the same values", () => {
    const body = responseText([{ name: 'f', datatype: 'FP32', shape: [5], data: new Float32Array([Number.NaN, Infinity, -Infinity, -0, 0.5]) }]);
    expect(python('import json, sys; print([repr(v) for v in json.load(sys.stdin)["outputs"][0]["data"]])', body)).toBe(
      "['nan', 'inf', '-inf', '-0.0', '0.5']",
    );
  });

  it.skipIf(!hasPython)('reads the tokens Python writes, for FP16, FP32 and FP64 inputs', () => {
    const fromPython = python(
      'import json; n, i = float("nan"), float("inf"); print(json.dumps({"inputs": [' +
        '{"name": "f", "datatype": "FP32", "shape": [4], "data": [n, i, -i, 0.1]},' +
        '{"name": "d", "datatype": "FP64", "shape": [2, 1], "data": [[n], [-i]]},' +
        '{"name": "h", "datatype": "FP16", "shape": [2], "data": [i, -0.0]},' +
        '{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["NaN", "x Infinity \\" NaN"]}]}))',
      '',
    )!;
    expect(fromPython).toContain('[NaN, Infinity, -Infinity, 0.1]');
    const decoded = decodeInferRequest(text(fromPython));
    expect(decoded.inputs.map((t) => t.data)).toEqual([
      new Float32Array([Number.NaN, Infinity, -Infinity, 0.1]),
      new Float64Array([Number.NaN, -Infinity]),
      new Uint16Array([0x7c00, 0x8000]),
      ['NaN', 'x Infinity " NaN'],
    ]);
  });

  it('reads the tokens back in the client response decoder', () => {
    const body = responseText([{ name: 'f', datatype: 'FP32', shape: [3], data: new Float32Array([Number.NaN, -Infinity, 1.5]) }]);
    expect(decodeInferResponse(Buffer.from(body)).outputs[0]!.data).toEqual(new Float32Array([Number.NaN, -Infinity, 1.5]));
  });

  it.each([
    ['INT32', '[NaN]', "input 'x': element 0 is NaN, expected an integer for INT32"],
    ['INT64', '[-Infinity]', "input 'x': element 0 is -Infinity, expected an integer for INT64"],
    ['BOOL', '[Infinity]', "input 'x': element 0 is Infinity, expected true or false for BOOL"],
    ['BYTES', '[NaN]', "input 'x': element 0 is NaN, expected a string for BYTES"],
    ['FP32', '["NaN"]', 'input \'x\': element 0 is "NaN", expected a number for FP32'],
  ])('refuses the tokens for %s (%s)', (datatype, data, message) => {
    expect(refusal(tensorRequest(datatype, [1], data))).toBe(message);
  });

  it('names the fault of a body with tokens as the client wrote it', () => {
    expect(refusal(text('{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[NaN,]}]}'))).toBe(
      'request body is not valid JSON: Unexpected token \']\', ...":[NaN,]}]}" is not valid JSON',
    );
    expect(refusal(text('{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[nan]}]}'))).toBe(
      'request body is not valid JSON: Unexpected token \'a\', ...","data":[nan]}]}" is not valid JSON',
    );
  });
});

describe('values checked against the datatype', () => {
  const rangeMessage = (shown: string, datatype: string, largest: string) =>
    `input 'x': element 0 is ${shown}, beyond the range of ${datatype} (largest finite value ${largest}); NaN, Infinity and -Infinity are accepted as bare tokens`;

  it.each([
    ['FP64', '[1e400]', rangeMessage('1e400', 'FP64', '1.7976931348623157e+308')],
    ['FP64', '[-1e400]', rangeMessage('-1e400', 'FP64', '1.7976931348623157e+308')],
    ['FP32', '[1e400]', rangeMessage('1e400', 'FP32', '3.4028234663852886e+38')],
    ['FP32', '[3.5e38]', rangeMessage('3.5e+38', 'FP32', '3.4028234663852886e+38')],
    ['FP32', '[-3.4028236e38]', rangeMessage('-3.4028236e+38', 'FP32', '3.4028234663852886e+38')],
    ['FP16', '[65520]', rangeMessage('65520', 'FP16', '65504')],
    ['FP16', '[-1e5]', rangeMessage('-100000', 'FP16', '65504')],
  ])('refuses %s %s, a finite value beyond its range', (datatype, data, message) => {
    expect(refusal(tensorRequest(datatype, [1], data))).toBe(message);
  });

  it('names the element that is out of range, with NaN tokens beside it', () => {
    expect(refusal(tensorRequest('FP32', [3], '[NaN, 1, 1e39]'))).toBe(
      "input 'x': element 2 is 1e39, beyond the range of FP32 (largest finite value 3.4028234663852886e+38); NaN, Infinity and -Infinity are accepted as bare tokens",
    );
  });

  it('takes the largest finite values and those that round to them', () => {
    expect(decodedData(tensorRequest('FP32', [2], '[3.4028235e38, -3.4028235677973362e38]'))).toEqual(new Float32Array([3.4028234663852886e38, -3.4028234663852886e38]));
    expect(decodedData(tensorRequest('FP16', [3], '[65504, 65519.99, 0.1]'))).toEqual(new Uint16Array([0x7bff, 0x7bff, 0x2e66]));
    expect(decodedData(tensorRequest('FP64', [1], '[1.7976931348623157e308]'))).toEqual(new Float64Array([Number.MAX_VALUE]));
  });
});

describe('nested data', () => {
  const ragged = `[[${new Array(782).fill(1).join(',')}],[1,2]]`;

  it.each([
    [[2, 392], ragged, "input 'x': data[0] has 782 elements where shape [2,392] needs 392"],
    [[1, 784], ragged, "input 'x': data has 2 elements where shape [1,784] needs 1"],
    [[2, 2], '[[1,2],[3]]', "input 'x': data[1] has 1 elements where shape [2,2] needs 2"],
    [[2, 2], '[[1,2],3]', "input 'x': data[1] is 3 where shape [2,2] needs an array of 2 elements"],
    [[2, 2], '[[1,2],[3,[4]]]', "input 'x': data[1][1] is an array, deeper than shape [2,2] allows"],
    [[4], '[[1],[2],[3],[4]]', "input 'x': data[0] is an array, deeper than shape [4] allows"],
    [[], '[[5]]', "input 'x': data is an array, deeper than shape [] allows"],
    [[2, 2], '[1,[2],3,4]', "input 'x': element 1 is an array, expected a number for FP32"],
    [[1, 2], `${'['.repeat(100_000)}${']'.repeat(100_000)}`, "input 'x': data[0] has 1 elements where shape [1,2] needs 2"],
    [[1, 1], `[${'['.repeat(100_000)}${']'.repeat(100_000)}]`, "input 'x': data[0][0] is an array, deeper than shape [1,1] allows"],
  ])('refuses shape %j with data %s', (shape, data, message) => {
    expect(refusal(tensorRequest('FP32', shape, data))).toBe(message);
  });

  it('walks deep nesting without recursion on the exact parse too', () => {
    expect(refusal(tensorRequest('FP32', [2], `[NaN,${'['.repeat(100_000)}${']'.repeat(100_000)}]`))).toBe("input 'x': element 1 is an array, expected a number for FP32");
  });

  it('takes nesting that mirrors the shape, and flat data whatever the shape', () => {
    expect(decodedData(tensorRequest('INT32', [2, 1, 2], '[[[1,2]],[[3,4]]]'))).toEqual(new Int32Array([1, 2, 3, 4]));
    expect(decodedData(tensorRequest('INT32', [2, 1, 2], '[1,2,3,4]'))).toEqual(new Int32Array([1, 2, 3, 4]));
    expect(decodedData(tensorRequest('INT32', [2, 0], '[[],[]]'))).toEqual(new Int32Array([]));
    expect(decodedData(tensorRequest('INT32', [0, 3], '[]'))).toEqual(new Int32Array([]));
    expect(decodedData(tensorRequest('INT32', [], '[7]'))).toEqual(new Int32Array([7]));
  });

  it("flattens any nesting for callers that ask for it (batch rows), up to a bound, without recursion", () => {
    expect(decodeJsonTensorData('x', 'INT32', [[1, 2], [[3], 4]], [4], { nesting: 'any' })).toEqual(new Int32Array([1, 2, 3, 4]));
    let deep: unknown = [1];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => decodeJsonTensorData('x', 'INT32', deep, [1], { nesting: 'any' })).toThrow(
      new BadRequestError(`input 'x': data is nested more than ${MAX_JSON_NESTING} levels deep`),
    );
    expect(() => decodeJsonTensorData('x', 'INT32', deep, [1])).toThrow(new BadRequestError("input 'x': data[0] is an array, deeper than shape [1] allows"));
  });
});

describe('BYTES elements that onnxruntime cannot carry', () => {
  const bytesRequest = (elements: Buffer[]) => {
    const chunk = Buffer.concat(elements.flatMap((e) => [Buffer.from(new Uint32Array([e.length]).buffer), e]));
    const header = json({ inputs: [{ name: 's', datatype: 'BYTES', shape: [elements.length], parameters: { binary_data_size: chunk.length } }] });
    return { body: Buffer.concat([header, chunk]), headerLength: String(header.length) };
  };

  it('refuses a binary element that is not UTF-8, naming it, instead of replacing its bytes', () => {
    const { body, headerLength } = bytesRequest([Buffer.from('ok'), Buffer.from([0x61, 0xff, 0x62])]);
    expect(refusal(body, headerLength)).toBe(
      "input 's': BYTES element 1 is not valid UTF-8; onnxruntime-node carries string tensors as text, so BYTES elements must be UTF-8",
    );
  });

  it('passes UTF-8 elements exactly, empty ones and those with NUL included', () => {
    const elements = ['wörld', '𝄞', '', 'a\u0000b'];
    const { body, headerLength } = bytesRequest(elements.map((e) => Buffer.from(e)));
    expect(decodeInferRequest(body, headerLength).inputs[0]!.data).toEqual(elements);
  });

  it('refuses a JSON element with a lone surrogate, which has no UTF-8 form', () => {
    expect(refusal(tensorRequest('BYTES', [2], '["ok","a\\ud800"]'))).toBe("input 'x': BYTES element 1 holds a lone UTF-16 surrogate, which has no UTF-8 form");
  });
});

describe('FP32 and FP16 in JSON with the fewest digits that read back as the same value', () => {
  it('writes FP32 outputs in their shortest form', () => {
    const values = new Float32Array([0.1, 1 / 3, 3.4028234663852886e38, 1.401298464324817e-45, 16777217, 123456789, -2.5, 1e-7, 0.000123, 1e21]);
    expect(responseText([{ name: 'f', datatype: 'FP32', shape: [values.length], data: values }])).toBe(
      '{"model_name":"m","model_version":"1","outputs":[{"name":"f","datatype":"FP32","shape":[10],' +
        '"data":[0.1,0.33333334,3.4028235e+38,1e-45,16777216,123456790,-2.5,1e-7,0.000123,1e+21]}]}',
    );
    const back = Float32Array.from(JSON.parse(responseText([{ name: 'f', datatype: 'FP32', shape: [values.length], data: values }])).outputs[0].data as number[]);
    expect(back).toEqual(values);
  });

  it('reads FP16 inputs from JSON numbers, rounded to the nearest half', () => {
    expect(decodedData(tensorRequest('FP16', [4], '[1, 0.1, -2, 6e-8]'))).toEqual(new Uint16Array([0x3c00, 0x2e66, 0xc000, 0x0001]));
  });
});

describe('inputs and outputs lists', () => {
  it('takes a request without inputs, for models that have none', () => {
    expect(decodeInferRequest(json({ inputs: [] }))).toEqual({ id: undefined, parameters: undefined, inputs: [], outputs: undefined, binaryDataOutput: false });
  });

  it('reads an empty outputs list as every output', () => {
    expect(decodeInferRequest(json({ inputs: [], outputs: [] })).outputs).toBeUndefined();
  });
});
