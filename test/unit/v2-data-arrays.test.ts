import { describe, expect, it } from 'vitest';
import { decodeInferRequest } from '../../functions/core/v2/codec.ts';
import { liftDataArrays } from '../../functions/core/v2/data-arrays.ts';

/** Number tokens whose doubles JSON.parse gets by more than summing digits, or with care. */
const TOKENS = [
  '0', '-0', '7', '-7', '123456789012345', '-999999999999999', '1234567890123456', '9007199254740993', '12345678901234567890',
  '0.1', '-0.30000000000000004', '2.5e-3', '1E5', '1e+2', '-1E-2', '3.4028235e38', '3.4028236e38', '1e400', '-1e400',
  '4.9e-324', '2e-324', '1e-400', '123.456e-7', '0.0', '100', '65504', '1.00000000000000011102230246251565404236316680908203125',
];

function request(inputs: string): string {
  return `{"id":"r","inputs":[${inputs}],"outputs":[{"name":"y"}]}`;
}

describe('data arrays read apart from JSON.parse', () => {
  it('reads every number of a flat data array as the double JSON.parse reads, and leaves the rest as it parses', () => {
    const array = `[ ${TOKENS.join(' ,\n\t')} \r]`;
    const text = request(`{"name":"a","datatype":"FP64","shape":[${TOKENS.length}],"data":${array}},{"name":"b","datatype":"INT32","shape":[2],"data":[1,2]}`);
    const lifted = liftDataArrays(text)!;
    const expected = JSON.parse(array) as number[];
    const values = lifted.lifted.get(0)!;
    expect(values.length).toBe(TOKENS.length);
    values.forEach((v, i) => expect(Object.is(v, expected[i]), `${TOKENS[i]}: ${v} vs ${expected[i]}`).toBe(true));
    expect(Array.from(lifted.lifted.get(1)!)).toEqual([1, 2]);
    const parsed = JSON.parse(text) as { inputs: { data: unknown }[] };
    for (const input of parsed.inputs) input.data = [];
    expect(JSON.parse(lifted.text)).toEqual(parsed);
  });

  it('lifts only inputs[i].data arrays of number tokens, at the right index past strings that look like structure', () => {
    const tricky = '"n\\"],\\"data\\":[9,9]}"';
    const text = request(`{"name":${tricky},"datatype":"FP32","shape":[1],"data":[[1]]},{"name":"x]}{[","datatype":"FP32","shape":[2],"parameters":{"data":[5,6]},"data":[3,4]}`);
    const lifted = liftDataArrays(text)!;
    expect([...lifted.lifted.keys()]).toEqual([1]);
    expect(Array.from(lifted.lifted.get(1)!)).toEqual([3, 4]);
    expect(lifted.text).toBe(text.replace('"data":[3,4]', '"data":[]'));
  });

  it.each([
    ['a bare NaN', '[1,NaN]'],
    ['a string', '[1,"2"]'],
    ['nesting', '[[1,2]]'],
    ['a leading zero', '[01]'],
    ['a bare point', '[1.]'],
    ['a leading point', '[.5]'],
    ['a plus sign', '[+1]'],
    ['a lone minus', '[-]'],
    ['an empty exponent', '[1e]'],
    ['a missing comma', '[1 2]'],
    ['a trailing comma', '[1,]'],
    ['no elements', '[]'],
    ['an unclosed array', '[1,2'],
  ])('lifts nothing from an array with %s', (_what, data) => {
    expect(liftDataArrays(request(`{"name":"a","datatype":"FP32","shape":[2],"data":${data}}`))).toBeUndefined();
  });

  it.each([
    ['an escaped key', request('{"name":"a","d\\u0061ta":[1,2]}')],
    ['a repeated data key', request('{"name":"a","data":[1,2],"data":[3,4]}')],
    ['a repeated inputs key', '{"inputs":[{"data":[1,2]}],"inputs":[]}'],
    ['data outside inputs', '{"parameters":{"data":[1,2]},"outputs":[{"data":[3]}],"data":[4]}'],
    ['a top-level array', '[{"inputs":[{"data":[1,2]}]}]'],
  ])('lifts nothing from a body with %s', (_what, text) => {
    expect(liftDataArrays(text)).toBeUndefined();
  });

  it('gives decodeInferRequest the values, refusals and exact fallbacks of the whole parse', () => {
    const n = 300; // over the size from which the codec lifts
    const values = Array.from({ length: n }, (_, i) => (i % 7 === 0 ? -i / 8 : i * 1.1));
    const flat = (data: string, datatype = 'FP32', count = n) => request(`{"name":"x","datatype":"${datatype}","shape":[${count}],"data":${data}}`);
    const nested = (data: string, datatype = 'FP32', count = n) => request(`{"name":"x","datatype":"${datatype}","shape":[1,${count}],"data":[${data}]}`);
    const decode = (text: string) => {
      try {
        return decodeInferRequest(text).inputs[0]!.data;
      } catch (error) {
        return (error as Error).message;
      }
    };
    const array = `[${values.join(',')}]`;
    expect(decode(flat(array))).toEqual(Float32Array.from(JSON.parse(array) as number[]));
    expect(decode(flat(array))).toEqual(decode(nested(array))); // nested data is parsed whole
    expect(decode(flat(array, 'FP64'))).toEqual(Float64Array.from(JSON.parse(array) as number[]));
    expect(decode(flat(array, 'FP16'))).toEqual(decode(nested(array, 'FP16')));
    const big = `[${values.slice(0, -1).join(',')},1e39]`;
    expect(decode(flat(big))).toBe(decode(nested(big)));
    expect(decode(flat(big))).toBe("input 'x': element 299 is 1e+39, beyond the range of FP32 (largest finite value 3.4028234663852886e+38); NaN, Infinity and -Infinity are accepted as bare tokens");
    const huge = `[${values.slice(0, -1).join(',')},1e400]`;
    expect(decode(flat(huge))).toBe("input 'x': element 299 is 1e400, beyond the range of FP32 (largest finite value 3.4028234663852886e+38); NaN, Infinity and -Infinity are accepted as bare tokens");
    expect(decode(flat(`[${values.slice(1).join(',')}]`))).toBe(`input 'x' has ${n - 1} elements but its shape needs ${n}`);
    const ints = Array.from({ length: n }, (_, i) => String(i));
    ints[5] = '9007199254740993';
    const exact = decode(flat(`[${ints.join(',')}]`, 'INT64')) as BigInt64Array;
    expect(exact[5]).toBe(9007199254740993n);
    expect(exact[6]).toBe(6n);
    expect(decode(flat(`[${ints.join(',')}]`, 'INT32'))).toBe(decode(nested(ints.join(','), 'INT32')));
    expect(decode(flat(`[${ints.join(',')}]`, 'INT32'))).toMatch(/^input 'x': element 5 is 900719925474099\d, expected an integer in \[-2147483648, 2147483647\] for INT32$/);
  });
});
