import { decimalValue, FP32_OVERFLOW, mayBeInexact, NumberText } from '../v2/json-numbers.ts';
import type { InputSpec, RowId } from './rows.ts';

/**
 * A JSONL row read straight from its UTF-8 bytes into the batch tensors, without JSON.parse: the
 * common row (an optional string or number `id`, `inputs` of flat FP32/FP64 `data` arrays of plain
 * numbers) never becomes a string or a JavaScript array, which is most of what parsing it cost.
 *
 * It accepts a subset of what writeJsonlRowInto (rows.ts) accepts and gives the same values: every
 * number is the correctly rounded double JSON.parse gives (its digits as an exact integer, then
 * decimalValue of v2/json-numbers.ts: one correctly rounded multiply or divide by an exact power of
 * ten, Clinger's fast path, where the exponent allows; `Number` of the token's text for more digits
 * than a double holds exactly). Anything else (escapes, other keys, nesting, a token that is
 * not JSON) returns undefined, and the caller decodes the line with the full decoder, which accepts
 * everything a row may hold or says exactly what is wrong. Returns the row's id holder on success.
 */
export function writeJsonlRowBytes(
  bytes: Uint8Array,
  start: number,
  end: number,
  specs: readonly InputSpec[],
  targets: readonly (Float32Array | Float64Array)[],
  slot: number,
): { id?: RowId } | undefined {
  const p = new RowParser(bytes, start, end);
  return p.row(specs, targets, slot) ? (p.id === undefined ? {} : { id: p.id }) : undefined;
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const BACKSLASH = 0x5c;

/** A mantissa below this takes one more digit and stays below 2^53, so it is exact. */
const MANTISSA_LIMIT = Math.floor((2 ** 53 - 9) / 10);

/** A tensor the fast path does not take (valid JSON it leaves to the full decoder, or not JSON). */
const FALLBACK = -1;

class RowParser {
  private at: number;
  private readonly bytes: Uint8Array;
  private readonly end: number;
  id: RowId | undefined;
  /** The last number parsed by number(). */
  private value = 0;
  /** The characters of the last simple string, or of an id's number, in `bytes`. */
  private spanFrom = 0;
  private spanTo = 0;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.bytes = bytes;
    this.at = start;
    this.end = end;
  }

  row(specs: readonly InputSpec[], targets: readonly (Float32Array | Float64Array)[], slot: number): boolean {
    if (!this.expect(OPEN_BRACE)) return false;
    let sawId = false;
    let sawInputs = false;
    if (this.peek() === CLOSE_BRACE) return false;
    for (;;) {
      if (!this.key()) return false;
      if (this.spanIs('id') && !sawId) {
        sawId = true;
        if (!this.readId()) return false;
      } else if (this.spanIs('inputs') && !sawInputs) {
        sawInputs = true;
        if (!this.inputs(specs, targets, slot)) return false;
      } else {
        return false;
      }
      const next = this.next();
      if (next === CLOSE_BRACE) break;
      if (next !== COMMA) return false;
    }
    this.skipSpace();
    return sawInputs && this.at === this.end;
  }

  private inputs(specs: readonly InputSpec[], targets: readonly (Float32Array | Float64Array)[], slot: number): boolean {
    if (!this.expect(OPEN_BRACKET)) return false;
    let seen = 0;
    let count = 0;
    if (this.peek() === CLOSE_BRACKET) return false;
    for (;;) {
      const index = this.tensor(specs, targets, slot);
      if (index < 0 || (seen & (1 << index)) !== 0) return false;
      seen |= 1 << index;
      count++;
      const next = this.next();
      if (next === CLOSE_BRACKET) break;
      if (next !== COMMA) return false;
    }
    return count === specs.length;
  }

  /** One `{"name":..,"datatype":..,"shape":..,"data":[..]}` object; its spec's index, or -1. */
  private tensor(specs: readonly InputSpec[], targets: readonly (Float32Array | Float64Array)[], slot: number): number {
    if (specs.length > 30 || !this.expect(OPEN_BRACE)) return FALLBACK;
    let index = FALLBACK;
    let sawDatatype = false;
    let sawShape = false;
    let sawData = false;
    if (this.peek() === CLOSE_BRACE) return FALLBACK;
    for (;;) {
      if (!this.key()) return FALLBACK;
      if (this.spanIs('name') && index === FALLBACK) {
        if (!this.simpleString()) return FALLBACK;
        for (let i = 0; i < specs.length && index === FALLBACK; i++) if (this.spanIs(specs[i]!.name)) index = i;
        if (index === FALLBACK) return FALLBACK;
      } else if (this.spanIs('datatype') && !sawDatatype) {
        sawDatatype = true;
        // Before the name is known its datatype cannot be checked: leave such a row to the full decoder.
        if (index === FALLBACK || !this.simpleString() || !this.spanIs(specs[index]!.datatype)) return FALLBACK;
      } else if (this.spanIs('shape') && !sawShape) {
        sawShape = true;
        if (index === FALLBACK || !this.shape(specs[index]!.rowShape)) return FALLBACK;
      } else if (this.spanIs('data') && !sawData) {
        sawData = true;
        if (index === FALLBACK || !this.data(specs[index]!, targets[index]!, slot)) return FALLBACK;
      } else {
        return FALLBACK;
      }
      const next = this.next();
      if (next === CLOSE_BRACE) break;
      if (next !== COMMA) return FALLBACK;
    }
    return sawData ? index : FALLBACK;
  }

  /** The row's shape, with or without a leading 1, must be the model's row shape exactly. */
  private shape(rowShape: readonly number[]): boolean {
    if (!this.expect(OPEN_BRACKET)) return false;
    const dims: number[] = [];
    if (this.peek() === CLOSE_BRACKET) {
      this.at++;
    } else {
      for (;;) {
        if (!this.number()) return false;
        dims.push(this.value);
        const next = this.next();
        if (next === CLOSE_BRACKET) break;
        if (next !== COMMA) return false;
      }
    }
    const bare = dims.length === rowShape.length + 1 && dims[0] === 1 ? dims.slice(1) : dims;
    return bare.length === rowShape.length && rowShape.every((d, k) => d === bare[k]);
  }

  /** A flat array of exactly rowElements in-range numbers, written at the row's slot. */
  private data(spec: InputSpec, target: Float32Array | Float64Array, slot: number): boolean {
    if (!this.expect(OPEN_BRACKET)) return false;
    const to = readValues(this.bytes, this.at, this.end, target, slot * spec.rowElements!, spec.rowElements!, spec.datatype === 'FP32' ? FP32_OVERFLOW : Infinity);
    if (to < 0) return false;
    this.at = to;
    return true;
  }

  private readId(): boolean {
    const c = this.peek();
    if (c === QUOTE) {
      if (!this.simpleString()) return false;
      this.id = this.spanText();
      return true;
    }
    const from = this.at;
    if (!this.number()) return false;
    // An id is JSON.parse's double where that is its value, else its own digits (echoed as they are).
    this.spanFrom = from;
    this.spanTo = this.at;
    const text = this.spanText();
    this.id = mayBeInexact(text) ? new NumberText(text) : Number(text);
    return true;
  }

  /** A JSON number at the cursor (after whitespace) into this.value; false where there is none. */
  private number(): boolean {
    this.skipSpace();
    const to = readNumber(this.bytes, this.at, this.end);
    if (to < 0) return false;
    this.at = to;
    this.value = numberRead;
    return true;
  }

  /**
   * A string without escapes or non-ASCII bytes (keys, names, datatypes, ids): false for any other.
   * Its characters are left as a span of the bytes, compared where they are (spanIs) and turned into
   * a string only for an id (spanText).
   */
  private simpleString(): boolean {
    if (!this.expect(QUOTE)) return false;
    const bytes = this.bytes;
    const from = this.at;
    let i = from;
    while (i < this.end) {
      const c = bytes[i]!;
      if (c === QUOTE) break;
      if (c === BACKSLASH || c < 0x20 || c >= 0x80) return false;
      i++;
    }
    if (i >= this.end) return false;
    this.spanFrom = from;
    this.spanTo = i;
    this.at = i + 1;
    return true;
  }

  private spanIs(text: string): boolean {
    const from = this.spanFrom;
    if (this.spanTo - from !== text.length) return false;
    for (let i = 0; i < text.length; i++) if (this.bytes[from + i] !== text.charCodeAt(i)) return false;
    return true;
  }

  private spanText(): string {
    return asciiText(this.bytes, this.spanFrom, this.spanTo);
  }

  /** An object key (left as the span) and its colon. */
  private key(): boolean {
    return this.simpleString() && this.expect(COLON);
  }

  private skipSpace(): void {
    const bytes = this.bytes;
    let i = this.at;
    while (i < this.end && isSpace(bytes[i]!)) i++;
    this.at = i;
  }

  private peek(): number {
    this.skipSpace();
    return this.at < this.end ? this.bytes[this.at]! : -1;
  }

  /** The next non-space byte, consumed. */
  private next(): number {
    const c = this.peek();
    if (c !== -1) this.at++;
    return c;
  }

  private expect(byte: number): boolean {
    if (this.peek() !== byte) return false;
    this.at++;
    return true;
  }
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * The values of a flat JSON array whose "[" is already read, into target[base..base+count): the
 * position after its "]", or -1 where it is not exactly `count` in-range numbers. The hot loop of
 * the reader: integers and plain decimals are read inline, any other number by readNumber.
 */
function readValues(bytes: Uint8Array, at: number, end: number, target: Float32Array | Float64Array, base: number, count: number, limit: number): number {
  let i = at;
  let k = base;
  const last = base + count;
  for (;;) {
    let c = bytes[i]!;
    if (c <= 0x20) {
      while (i < end && isSpace(c)) c = bytes[++i]!;
    }
    if (i >= end || k === last) return -1;
    let d = c - ZERO;
    let value: number;
    if (d >= 0 && d <= 9) {
      // The common case inline: an unsigned integer of at most 15 digits, exactly a double.
      const from = i;
      value = d;
      c = bytes[++i]!;
      d = c - ZERO;
      if (d >= 0 && d <= 9 && i < end) {
        if (value === 0) return -1; // a leading zero: not JSON
        do {
          value = value * 10 + d;
          c = bytes[++i]!;
          d = c - ZERO;
        } while (d >= 0 && d <= 9 && i < end && i - from < 15);
      }
      if (i < end && (c === DOT || c === 0x65 || c === 0x45 || (d >= 0 && d <= 9))) {
        // A fraction, an exponent, or more digits than the inline loop keeps exactly.
        i = readNumber(bytes, from, end);
        if (i < 0) return -1;
        value = numberRead;
        if (!(value < limit && value > -limit)) return -1;
        c = bytes[i]!;
      }
    } else {
      // A sign, or not a number: the full reader decides.
      i = readNumber(bytes, i, end);
      if (i < 0) return -1;
      value = numberRead;
      if (!(value < limit && value > -limit)) return -1;
      c = bytes[i]!;
    }
    target[k++] = value;
    if (c === COMMA && i < end) {
      i++;
      continue;
    }
    while (i < end && isSpace(c)) c = bytes[++i]!;
    if (i >= end) return -1;
    i++;
    if (c === CLOSE_BRACKET) return k === last ? i : -1;
    if (c !== COMMA) return -1;
  }
}

/** The value readNumber read last (a module slot, so the hot loop allocates nothing). */
let numberRead = 0;

/**
 * A JSON number starting at `from` into numberRead: the position after it, or -1 where the grammar
 * is not JSON's (leading zeros, a bare dot, a missing exponent digit) or there is no number.
 */
function readNumber(bytes: Uint8Array, from: number, end: number): number {
  let i = from;
  let negative = false;
  if (bytes[i] === MINUS) {
    negative = true;
    i++;
  }
  let mantissa = 0;
  let exponent = 0;
  let exact = true;
  let c = bytes[i]!;
  if (i >= end) return -1;
  if (c === ZERO) {
    c = bytes[++i]!;
    if (i < end && c >= ZERO && c <= NINE) return -1;
  } else if (c > ZERO && c <= NINE) {
    while (i < end && c >= ZERO && c <= NINE) {
      if (mantissa < MANTISSA_LIMIT) mantissa = mantissa * 10 + (c - ZERO);
      else if (c === ZERO) exponent++;
      else exact = false;
      c = bytes[++i]!;
    }
  } else {
    return -1;
  }
  if (i < end && c === DOT) {
    c = bytes[++i]!;
    if (!(i < end && c >= ZERO && c <= NINE)) return -1;
    while (i < end && c >= ZERO && c <= NINE) {
      if (mantissa < MANTISSA_LIMIT) {
        mantissa = mantissa * 10 + (c - ZERO);
        exponent--;
      } else if (c !== ZERO) {
        exact = false;
      }
      c = bytes[++i]!;
    }
  }
  if (i < end && (c === 0x65 || c === 0x45)) {
    c = bytes[++i]!;
    let sign = 1;
    if (i < end && (c === PLUS || c === MINUS)) {
      if (c === MINUS) sign = -1;
      c = bytes[++i]!;
    }
    if (!(i < end && c >= ZERO && c <= NINE)) return -1;
    let e = 0;
    while (i < end && c >= ZERO && c <= NINE) {
      if (e < 100000) e = e * 10 + (c - ZERO);
      c = bytes[++i]!;
    }
    exponent += sign * e;
  }
  if (!exact) {
    // Digits beyond 2^53: the engine's own correctly rounded conversion of the token.
    numberRead = Number(asciiText(bytes, from, i));
    return i;
  }
  const v = decimalValue(mantissa, -exponent);
  numberRead = negative ? -v : v;
  return i;
}

/** Bytes already checked to be ASCII, as a string. */
function asciiText(bytes: Uint8Array, from: number, to: number): string {
  let text = '';
  for (let i = from; i < to; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}
