import { BadRequestError } from '../platform/errors.ts';

/**
 * Numbers in V2 JSON bodies, exactly: what plain JSON.parse and JSON.stringify lose (64-bit integers
 * beyond 2^53, the NaN/Infinity tokens Python's json module reads and writes, float32 and float16
 * values written with a double's digits) is kept or written here.
 */

/**
 * A JSON number a double may not carry: an integer beyond 2^53 in magnitude, a literal beyond FP64's
 * range such as `1e400`, or (from parseJsonExact, which picks them by their text) any literal of 16
 * or more significant digits or with a large exponent. Kept as its source text for the datatype to judge.
 */
export class NumberText {
  readonly source: string;
  constructor(source: string) {
    this.source = source;
  }
}

/** Node 24 passes the reviver the number's source text; ES2024's lib does not declare it yet. */
type SourceReviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

const TOKEN_VALUES: Record<string, number> = { NaN: Number.NaN, Infinity: Number.POSITIVE_INFINITY, '-Infinity': Number.NEGATIVE_INFINITY };

/**
 * A JSON string (kept as it is), a bare non-finite token (group 1), or a number literal whose double
 * may not be exact or finite (group 2): 16 or more significant digits, or a positive exponent of two
 * or more digits. Numbers inside strings are never seen: each string is consumed whole.
 */
const MAYBE_INEXACT = String.raw`-?(?:(?=(?:\.?\d){16})(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|(?:0|[1-9]\d*)(?:\.\d+)?[eE]\+?\d{2,})`;
const EXACT_SCAN = new RegExp(String.raw`"[^"\\]*(?:\\.[^"\\]*)*"|(-Infinity|Infinity|NaN)|(?<![\d.eE+-])(${MAYBE_INEXACT})`, 'g');
const MAYBE_INEXACT_TOKEN = new RegExp(`^${MAYBE_INEXACT}$`);

/** Whether a JSON number token is one whose double may not be its value (parseJsonExact keeps those as NumberText). */
export function mayBeInexact(token: string): boolean {
  return MAYBE_INEXACT_TOKEN.test(token);
}

/** Deeper than this, exactJsonText refuses a value (no row or request nests near it). */
const MAX_TEXT_NESTING = 100;

/**
 * JSON text of a value parseJsonExact gave, which reads back to the same values: NumberText as its
 * digits, NaN and ±Infinity as the bare tokens, -0 with its sign, the rest as JSON.stringify writes it.
 */
export function exactJsonText(value: unknown, depth = 0): string {
  if (value instanceof NumberText) return value.source;
  // String(-0) and JSON.stringify(-0) both drop the sign, which a float tensor keeps.
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (depth >= MAX_TEXT_NESTING) throw new BadRequestError(`a value nests deeper than ${MAX_TEXT_NESTING} levels`);
  if (Array.isArray(value)) return `[${value.map((v) => exactJsonText(v, depth + 1)).join(',')}]`;
  return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${exactJsonText(v, depth + 1)}`).join(',')}}`;
}

/** Control characters a JSON string can hold only as a \u00XX escape (\b, \t, \n, \f and \r have their own). */
const MARKER_CODES = [0, 1, 2, 3, 4, 5, 6, 7, 0x0b, ...Array.from({ length: 0x20 - 0x0e }, (_, i) => 0x0e + i)];

/**
 * Parses JSON that may hold bare `NaN`, `Infinity` and `-Infinity` tokens (as Python's json module
 * writes them) and keeps numbers a double cannot carry as NumberText (their source text). Callers
 * take it only when a plain parse failed or lost something. Each token or long number becomes a
 * string that starts with a control character no string of the body holds (JSON can only escape
 * one, and the body has no such escape), then one plain JSON.parse and a walk that turns those
 * strings back: a few times the cost of JSON.parse, where a reviver with source text costs tens.
 */
export function parseJsonExact(text: string): unknown {
  const code = MARKER_CODES.find((c) => {
    const hex = c.toString(16).padStart(4, '0');
    return !text.includes(`\\u${hex}`) && !text.includes(`\\u${hex.toUpperCase()}`);
  });
  if (code === undefined) return parseJsonExactWithReviver(text);
  const escape = `\\u${code.toString(16).padStart(4, '0')}`;
  const parts: string[] = [];
  let last = 0;
  EXACT_SCAN.lastIndex = 0;
  for (let match = EXACT_SCAN.exec(text); match !== null; match = EXACT_SCAN.exec(text)) {
    const [, token, number] = match;
    if (token === undefined && number === undefined) continue;
    parts.push(text.slice(last, match.index), token !== undefined ? `"${escape}T${token}"` : `"${escape}N${number}"`);
    last = match.index + match[0].length;
  }
  if (parts.length === 0) return JSON.parse(text);
  parts.push(text.slice(last));
  let parsed: unknown;
  try {
    parsed = JSON.parse(parts.join(''));
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    // Its message quotes our strings, perhaps cut short; the reviver's parse fails at the same place
    // (before any reviving, so at JSON.parse's cost) with a message that shows what the client sent.
    return parseJsonExactWithReviver(text);
  }
  return restoreMarkers(parsed, String.fromCharCode(code));
}

function markerValue(marked: string): number | NumberText {
  const body = marked.slice(2);
  return marked[1] === 'T' ? TOKEN_VALUES[body]! : new NumberText(body);
}

/** Replaces the marker strings in a parsed value, walking it without recursion (nesting may be deep). */
function restoreMarkers(root: unknown, marker: string): unknown {
  const code = marker.charCodeAt(0);
  if (typeof root === 'string') return root.charCodeAt(0) === code ? markerValue(root) : root;
  const pending: object[] = root !== null && typeof root === 'object' ? [root] : [];
  while (pending.length > 0) {
    const container = pending.pop()!;
    if (Array.isArray(container)) {
      for (let i = 0; i < container.length; i++) {
        const v: unknown = container[i];
        if (typeof v === 'string') {
          if (v.charCodeAt(0) === code) container[i] = markerValue(v);
        } else if (v !== null && typeof v === 'object') pending.push(v);
      }
      continue;
    }
    const record = container as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const v = record[key];
      if (typeof v === 'string') {
        // defineProperty: a key named __proto__ is an own property here, never the prototype.
        if (v.charCodeAt(0) === code) Object.defineProperty(record, key, { value: markerValue(v), writable: true, enumerable: true, configurable: true });
      } else if (v !== null && typeof v === 'object') pending.push(v);
    }
  }
  return root;
}

/** A JSON string (kept as it is) or a bare non-finite token outside any string. */
const STRING_OR_TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"|(-Infinity|Infinity|NaN)/g;

/**
 * parseJsonExact by a reviver with the numbers' source text: slow (the reviver sees every value and
 * recurses), kept for bodies whose strings escape every control character parseJsonExact could mark with.
 */
export function parseJsonExactWithReviver(text: string): unknown {
  // Each token becomes a number literal the body does not already hold, recognised by its source text.
  let exponent = 99990;
  while (text.includes(`1e${exponent}`) || text.includes(`1e${exponent + 1}`) || text.includes(`1e${exponent + 2}`)) exponent += 3;
  const literals: Record<string, string> = { NaN: `1e${exponent}`, Infinity: `1e${exponent + 1}`, '-Infinity': `1e${exponent + 2}` };
  const tokenOf = new Map(Object.entries(literals).map(([token, literal]) => [literal, token]));
  let replaced = false;
  const substituted = text.replace(STRING_OR_TOKEN, (match, token: string | undefined) => {
    if (token === undefined) return match;
    replaced = true;
    return literals[token]!;
  });
  const reviver: SourceReviver = (_key, value, context) => {
    if (typeof value !== 'number' || Number.isSafeInteger(value) || (Number.isFinite(value) && !Number.isInteger(value))) return value;
    const source = context?.source ?? String(value);
    const token = tokenOf.get(source);
    return token !== undefined ? TOKEN_VALUES[token] : new NumberText(source);
  };
  try {
    return JSON.parse(substituted, reviver as (key: string, value: unknown) => unknown);
  } catch (error) {
    if (!replaced || !(error instanceof SyntaxError)) throw error;
    // The message quotes the text around the fault: show the tokens the client sent, not our literals.
    let message = error.message;
    for (const [literal, token] of tokenOf) message = message.replaceAll(literal, token);
    throw new SyntaxError(message, { cause: error });
  }
}

/**
 * The exact integer a JSON number literal denotes, or undefined when it is not an integer
 * (`1.5`, `1e-3`). `12e2` and `1.0` are integers. Literals beyond any 64-bit range are answered
 * with a value just beyond it rather than computed in full (`1e999999999` would take gigabytes).
 */
export function exactInteger(source: string): bigint | undefined {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(source);
  if (!match) return undefined;
  const [, sign, whole, fraction = '', exponentText = '0'] = match;
  let digits = (whole! + fraction).replace(/^0+(?=\d)/, '');
  let exponent = Number(exponentText) - fraction.length;
  if (/^0+$/.test(digits)) return 0n;
  while (exponent < 0 && digits.endsWith('0')) {
    digits = digits.slice(0, -1);
    exponent++;
  }
  if (exponent < 0) return undefined;
  const magnitude = digits.length + exponent > 40 ? 10n ** 40n : BigInt(digits) * 10n ** BigInt(exponent);
  return sign === '-' ? -magnitude : magnitude;
}

// Finite values from here up round to Infinity in the narrower type (round half to even at FLT_MAX + half an ulp).
export const FP32_OVERFLOW = 2 ** 128 - 2 ** 103;
export const FP16_OVERFLOW = 65520;

interface Float16ArrayLike extends ArrayLike<number> {
  [index: number]: number;
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
}
type Float16ArrayConstructorLike = new (...args: [number] | [ArrayBufferLike, number, number]) => Float16ArrayLike;
/** Node 24 has Float16Array and Math.f16round; ES2024's lib does not declare them yet. */
export const Float16 = (globalThis as unknown as { Float16Array: Float16ArrayConstructorLike }).Float16Array;
export const f16round = (Math as unknown as { f16round: (x: number) => number }).f16round;

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i); // exact in a double

/** m·10^-k as JavaScript's Number#toString writes the double it denotes (no trailing zeros). */
function decimalText(m: number, k: number): string {
  let digits = String(m);
  while (digits.length > 1 && digits.endsWith('0')) {
    digits = digits.slice(0, -1);
    k--;
  }
  const length = digits.length;
  const point = length - k; // digits before the decimal point
  if (point >= length && point <= 21) return digits + '0'.repeat(point - length);
  if (point > 0 && point <= 21) return `${digits.slice(0, point)}.${digits.slice(point)}`;
  if (point > -6 && point <= 0) return `0.${'0'.repeat(-point)}${digits}`;
  const e = point - 1;
  return `${length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`}e${e < 0 ? '-' : '+'}${Math.abs(e)}`;
}

/** The last candidate digits found by decimalWithPlaces (module scope: no allocation per value on the hot path). */
let candidateDigits = 0;

/** Whether some decimal with k places lies between lo and hi; if so candidateDigits holds the one nearest `a` (times 10^k). */
function decimalWithPlaces(a: number, lo: number, hi: number, k: number): boolean {
  let l: number;
  let h: number;
  let m: number;
  if (k >= 0) {
    const scale = k < POWERS_OF_TEN.length ? POWERS_OF_TEN[k]! : 10 ** k;
    l = Math.ceil(lo * scale);
    h = Math.floor(hi * scale);
    if (l > h) return false;
    m = Math.round(a * scale);
  } else {
    const scale = -k < POWERS_OF_TEN.length ? POWERS_OF_TEN[-k]! : 10 ** -k;
    l = Math.ceil(lo / scale);
    h = Math.floor(hi / scale);
    if (l > h) return false;
    m = Math.round(a / scale);
  }
  candidateDigits = m < l ? l : m > h ? h : m;
  return true;
}

/**
 * The fewest decimal places k for which a decimal lies between lo and hi (the digits of the one
 * nearest `a` left in candidateDigits), where `enough` significant digits always have one (9 for
 * float32, 5 for float16). Having one only gets easier with more places, so the search starts at
 * that many digits and walks down: most values need all of them or one fewer, two or three steps.
 */
function fewestPlacesBetween(a: number, lo: number, hi: number, enough: number): number {
  const lead = Math.floor(Math.log10(a));
  // Bounds as a binary search would have them: one digit (none coarser has a decimal below an
  // infinite hi) and eleven; log10 may round a value just below a power of ten up to it, one digit
  // short of `enough`, hence the walk up.
  const fewest = -lead - 1;
  const most = fewest + 10;
  let k = enough - 1 - lead;
  while (k < most && !decimalWithPlaces(a, lo, hi, k)) k++;
  if (k === most) decimalWithPlaces(a, lo, hi, k);
  while (k > fewest && decimalWithPlaces(a, lo, hi, k - 1)) k--;
  return k;
}

/** m·10^-k correctly rounded, for an integer m below 2^53 (one exact power of ten where k allows). */
export function decimalValue(m: number, k: number): number {
  if (k >= 0 && k < POWERS_OF_TEN.length) return m / POWERS_OF_TEN[k]!; // one correctly rounded division
  if (k < 0 && -k < POWERS_OF_TEN.length) return m * POWERS_OF_TEN[-k]!;
  return Number(`${m}e${-k}`);
}

/** Shortest text by trying each precision: exact, and the fallback where floating-point bounds are too coarse. */
function shortestByPrecision(v: number, round: (x: number) => number): string {
  for (let p = 1; p < 17; p++) {
    const n = Number(v.toPrecision(p));
    if (round(n) === v) return String(n);
  }
  return String(v);
}

/** Text for values JSON has no number for: the tokens Python's json module writes, and -0 as a float. */
function specialText(v: number): string | undefined {
  if (v === 0) return 1 / v < 0 ? '-0.0' : '0';
  if (v !== v) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return undefined;
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * The shortest decimal text that reads back (as a double, then rounded to float32) as this float32
 * value, as JavaScript would write that decimal; NaN and ±Infinity as bare tokens.
 */
export function float32Text(v: number): string {
  const special = specialText(v);
  if (special !== undefined) return special;
  const a = v < 0 ? -v : v;
  const k = float32Places(a);
  if (k === undefined) return shortestByPrecision(v, Math.fround);
  return v < 0 ? `-${decimalText(candidateDigits, k)}` : decimalText(candidateDigits, k);
}

/**
 * The places k of the shortest decimal for a positive finite float32 `a`, its digits (times 10^k)
 * left in candidateDigits; undefined where only the exact fallback finds them.
 */
function float32Places(a: number): number | undefined {
  f32[0] = a;
  const bits = f32Bits[0]!;
  f32Bits[0] = bits + 1;
  const up = f32[0]!;
  f32Bits[0] = bits - 1;
  const down = f32[0]!;
  // Halfway to each neighbour, exact in a double. Above FLT_MAX the neighbour is Infinity: the bound then
  // is too wide and the check below sends the value to the exact fallback.
  const k = fewestPlacesBetween(a, (a + down) / 2, (a + up) / 2, 9);
  return Math.fround(decimalValue(candidateDigits, k)) === a ? k : undefined;
}

/** Digits of a decimal, least significant first (module scope: no allocation per value). */
const digitBytes = new Uint8Array(24);

/** ASCII text at `at`; returns the offset after it. */
export function writeAscii(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  return at;
}

/**
 * float32Text's text of `v`, written as ASCII bytes into `out` at `at` (room for 22 bytes, a sign
 * and 21 digits, is the caller's); returns the offset after it. The same digits, laid out as decimalText lays them out,
 * without building a string: batch results write millions of values.
 */
export function writeFloat32Text(out: Uint8Array, at: number, v: number): number {
  if (v === 0 || v !== v || v === Infinity || v === -Infinity) return writeAscii(out, at, specialText(v)!);
  const a = v < 0 ? -v : v;
  const k0 = float32Places(a);
  if (k0 === undefined) return writeAscii(out, at, shortestByPrecision(v, Math.fround));
  if (v < 0) out[at++] = 0x2d;
  let m = candidateDigits;
  let k = k0;
  while (m % 10 === 0 && m >= 10) {
    m /= 10;
    k--;
  }
  let length = 0;
  do {
    const q = Math.floor(m / 10);
    digitBytes[length++] = 0x30 + (m - q * 10);
    m = q;
  } while (m > 0);
  const point = length - k; // digits before the decimal point
  if (point > 0 && point <= 21) {
    for (let i = length - 1; i >= 0; i--) {
      if (i === length - 1 - point) out[at++] = 0x2e;
      out[at++] = digitBytes[i]!;
    }
    for (let i = length; i < point; i++) out[at++] = 0x30;
    return at;
  }
  if (point > -6 && point <= 0) {
    out[at++] = 0x30;
    out[at++] = 0x2e;
    for (let i = point; i < 0; i++) out[at++] = 0x30;
    for (let i = length - 1; i >= 0; i--) out[at++] = digitBytes[i]!;
    return at;
  }
  out[at++] = digitBytes[length - 1]!;
  if (length > 1) {
    out[at++] = 0x2e;
    for (let i = length - 2; i >= 0; i--) out[at++] = digitBytes[i]!;
  }
  const e = point - 1;
  out[at++] = 0x65;
  out[at++] = e < 0 ? 0x2d : 0x2b;
  return writeAscii(out, at, String(e < 0 ? -e : e));
}

const f16 = new Float16(1);
const f16Bits = new Uint16Array(f16.buffer, 0, 1);

/** As float32Text, for a float16 value. */
export function float16Text(v: number): string {
  const special = specialText(v);
  if (special !== undefined) return special;
  const a = v < 0 ? -v : v;
  f16[0] = a;
  const bits = f16Bits[0]!;
  f16Bits[0] = bits + 1;
  const up = f16[0]!;
  f16Bits[0] = bits - 1;
  const down = f16[0]!;
  const k = fewestPlacesBetween(a, (a + down) / 2, (a + up) / 2, 5);
  const m = candidateDigits;
  if (f16round(decimalValue(m, k)) !== a) return shortestByPrecision(v, f16round);
  return v < 0 ? `-${decimalText(m, k)}` : decimalText(m, k);
}

/** A double as JavaScript writes it, with NaN and ±Infinity as bare tokens and -0 kept. */
export function float64Text(v: number): string {
  return specialText(v) ?? String(v);
}
