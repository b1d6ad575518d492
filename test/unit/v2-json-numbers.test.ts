import { describe, expect, it } from 'vitest';
import { exactInteger, exactJsonText, f16round, mayBeInexact, float16Text, float32Text, float64Text, NumberText, parseJsonExact, parseJsonExactWithReviver, writeFloat32Text } from '../../functions/core/v2/json-numbers.ts';

/** The definition, slowly: the fewest significant digits whose decimal reads back as v, written as a double. */
function shortestByDefinition(v: number, round: (x: number) => number): string {
  for (let p = 1; p <= 17; p++) {
    const n = Number(v.toPrecision(p));
    if (round(n) === v) return String(n);
  }
  throw new Error(`no precision reads back ${v}`);
}

/** A small deterministic generator (mulberry32), so a failure names the same values on every run. */
function random32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

describe('float32Text', () => {
  it('agrees with the definition on 100,000 random float32 bit patterns, and reads back exactly', () => {
    const next = random32(14);
    const value = new Float32Array(1);
    const bits = new Uint32Array(value.buffer);
    const mismatches: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      bits[0] = next();
      const v = value[0]!;
      if (Number.isNaN(v) || v === 0) continue;
      const written = float32Text(v);
      if (written !== shortestByDefinition(v, Math.fround) || Math.fround(Number(written)) !== v) mismatches.push(`${bits[0]}: ${written}`);
    }
    expect(mismatches).toEqual([]);
  });

  it('writes the edges of the float32 range', () => {
    const f = (x: number) => float32Text(Math.fround(x));
    expect([f(3.4028234663852886e38), f(-3.4028234663852886e38), f(2 ** -149), f(2 ** -126), f(1), f(0.1), f(0), f(-0)]).toEqual([
      '3.4028235e+38', '-3.4028235e+38', '1e-45', '1.1754944e-38', '1', '0.1', '0', '-0.0',
    ]);
    expect([float32Text(Number.NaN), float32Text(Infinity), float32Text(-Infinity)]).toEqual(['NaN', 'Infinity', '-Infinity']);
  });
});

describe('writeFloat32Text', () => {
  it("writes float32Text's text as bytes, for random bit patterns, the range's edges and every layout", () => {
    // Prepare: random patterns (NaNs of every payload, zeros, subnormals, infinities included) and values
    // at each switch of decimalText's layout (exponent form below 1e-6 and from 1e21).
    const next = random32(23);
    const value = new Float32Array(1);
    const bits = new Uint32Array(value.buffer);
    const values = [0, -0, Number.NaN, Infinity, -Infinity, -3.4e20, 2 ** -149, -(2 ** -149), 2 ** -126, 3.4028234663852886e38, 1e-7, 1e-6, 1.5e-6, 0.1, 1, 10, 123456789, 1e20, 1e21, 1.5e21, -33554432, 0.6666667];
    for (let i = 0; i < 100_000; i++) {
      bits[0] = next();
      values.push(value[0]!);
    }
    const out = new Uint8Array(40);
    const mismatches: string[] = [];

    // Act and assert: each value written after a 3-byte prefix, which stays untouched.
    for (const v of values) {
      out.fill(0x7e);
      const end = writeFloat32Text(out, 3, Math.fround(v));
      const written = Buffer.from(out.subarray(3, end)).toString('latin1');
      if (written !== float32Text(Math.fround(v)) || out[0] !== 0x7e || out[2] !== 0x7e || end - 3 > 22) mismatches.push(`${v}: ${written}`);
    }
    expect(mismatches).toEqual([]);
  });
});

describe('float16Text', () => {
  it('agrees with the definition on every float16 value', () => {
    const value = new Uint16Array(1);
    const halves = new (globalThis as unknown as { Float16Array: new (b: ArrayBufferLike) => ArrayLike<number> }).Float16Array(value.buffer);
    const mismatches: string[] = [];
    for (let b = 0; b < 0x10000; b++) {
      value[0] = b;
      const v = halves[0]!;
      if (!Number.isFinite(v) || v === 0) continue;
      const written = float16Text(v);
      if (written !== shortestByDefinition(v, f16round)) mismatches.push(`${b}: ${written}`);
    }
    expect(mismatches).toEqual([]);
    expect([float16Text(65504), float16Text(2 ** -24), float16Text(-0), float16Text(Number.NaN)]).toEqual(['65500', '6e-8', '-0.0', 'NaN']);
  });
});

describe('float64Text', () => {
  it('writes doubles as JavaScript does, with the tokens and -0', () => {
    expect([0.1, 1e300, -0, Number.NaN, -Infinity].map(float64Text)).toEqual(['0.1', '1e+300', '-0.0', 'NaN', '-Infinity']);
  });
});

describe('exactInteger', () => {
  it.each([
    ['9223372036854775807', 9223372036854775807n],
    ['-9223372036854775808', -9223372036854775808n],
    ['1.8446744073709551615e19', 18446744073709551615n],
    ['12e2', 1200n],
    ['1.0', 1n],
    ['-0', 0n],
    ['0.000e5', 0n],
    ['1e999999999', 10n ** 40n],
  ])('reads %s as %s', (source, value) => {
    expect(exactInteger(source)).toBe(value);
  });

  it.each(['1.5', '1e-3', '9007199254740993.5', '12.34e1'])('finds no integer in %s', (source) => {
    expect(exactInteger(source)).toBeUndefined();
  });
});

describe('parseJsonExact', () => {
  it('reads the tokens outside strings and keeps what a double cannot hold as source text', () => {
    const parsed = parseJsonExact('{"a":[NaN,-Infinity,Infinity,1.5,18446744073709551615,1e400,2],"s":"NaN \\" Infinity"}') as { a: unknown[]; s: string };
    expect(parsed.a).toEqual([Number.NaN, -Infinity, Infinity, 1.5, new NumberText('18446744073709551615'), new NumberText('1e400'), 2]);
    expect(parsed.s).toBe('NaN " Infinity');
  });

  it('tells a token from the same literal sent by the client', () => {
    expect(parseJsonExactWithReviver('[NaN, 1e99990, 1e99991, 1e99992]')).toEqual([Number.NaN, new NumberText('1e99990'), new NumberText('1e99991'), new NumberText('1e99992')]);
  });

  const body =
    '{"__proto__":NaN,"a":[[-Infinity,0.30000000000000004,12345678901234567890,1.5e10,-9.2e18,1e-400,7]],' +
    '"s":["NaN","\\u0000N1","\\u0001x"],"n":{"deep":[Infinity]}}';
  const expected = (parsed: unknown) => {
    const value = parsed as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(value, '__proto__')?.value).toBeNaN();
    expect(value.a).toEqual([[-Infinity, new NumberText('0.30000000000000004'), new NumberText('12345678901234567890'), new NumberText('1.5e10'), new NumberText('-9.2e18'), 0, 7]]);
    expect(value.s).toEqual(['NaN', '\u0000N1', '\u0001x']);
    expect(value.n).toEqual({ deep: [Infinity] });
  };

  it('marks tokens and long numbers outside strings only, and leaves a __proto__ key an own property', () => {
    expected(parseJsonExact(body));
  });

  it('falls back to the reviver when the body escapes every control character it could mark with', () => {
    const escapes = Array.from({ length: 32 }, (_, c) => `\\u${c.toString(16).padStart(4, '0')}`).join('');
    const parsed = parseJsonExact(`{"e":"${escapes}","a":[NaN,9223372036854775807]}`) as { e: string; a: unknown[] };
    expect(parsed.e).toBe(Array.from({ length: 32 }, (_, c) => String.fromCharCode(c)).join(''));
    expect(parsed.a).toEqual([Number.NaN, new NumberText('9223372036854775807')]);
    // The reviver agrees with the marking parse on the same body, values for values.
    const viaReviver = parseJsonExactWithReviver(body) as Record<string, unknown>;
    expect((viaReviver.a as unknown[][])[0]!.slice(0, 3)).toEqual([-Infinity, 0.30000000000000004, new NumberText('12345678901234567890')]);
  });

  it('keeps JSON.parse\'s refusal of what is not JSON, quoting the tokens as sent', () => {
    expect(() => parseJsonExact('[NaN, 12345678901234567890,]')).toThrow(new SyntaxError('Unexpected token \']\', ..."234567890,]" is not valid JSON'));
    expect(() => parseJsonExact('[NaN, 1, NaN,,]')).toThrow(new SyntaxError('Unexpected token \',\', ...", NaN,,]" is not valid JSON'));
    expect(() => parseJsonExact('[1.2.3.4.5.6.7.8.9.1.2.3.4.5.6.7.8]')).toThrow(SyntaxError);
    expect(() => parseJsonExact('[01234567890123456789]')).toThrow(SyntaxError);
  });
});

describe('exactJsonText', () => {
  it("writes parseJsonExact's values back as text that reads back to them: long numbers as their digits, the bare tokens", () => {
    const text = '{"id":9007199254740993,"a":[NaN,-Infinity,Infinity,1e400,0.10000000000000000555,-0,"s\\u0000\\"",null,true,{"__proto__":1.5}]}';
    const value = parseJsonExact(text);
    const written = exactJsonText(value);
    expect(written).toBe('{"id":9007199254740993,"a":[NaN,-Infinity,Infinity,1e400,0.10000000000000000555,-0,"s\\u0000\\"",null,true,{"__proto__":1.5}]}');
    expect(parseJsonExact(written)).toEqual(value);
    expect(['9007199254740993', '1e400', '0.10000000000000000555', '1.5', '1e5', '-12345'].map(mayBeInexact)).toEqual([true, true, true, false, false, false]);
  });

  it('refuses a value nested deeper than 100 levels with a 400, not a stack overflow', () => {
    expect(() => exactJsonText(parseJsonExact(`${'['.repeat(101)}${']'.repeat(101)}`))).toThrow(expect.objectContaining({ statusCode: 400, message: 'a value nests deeper than 100 levels' }));
    expect(exactJsonText(parseJsonExact(`${'['.repeat(100)}${']'.repeat(100)}`))).toBe(`${'['.repeat(100)}${']'.repeat(100)}`);
  });
});
