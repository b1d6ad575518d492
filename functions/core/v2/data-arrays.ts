/**
 * The flat numeric `data` arrays of a V2 request's inputs, read straight into doubles. JSON.parse
 * builds a JavaScript array element by element, several times slower than this loop reads the
 * same numbers (a 64-image MNIST request: README, the inference row of the benchmarks), and that was most of a
 * large JSON request's cost. Exactness is JSON.parse's: an integer of up to 15 digits is summed
 * from its digits (exact below 2^53), any other number is read by Number(), which rounds the same
 * token as JSON.parse does. Each lifted array is replaced by `[]` in the text, and only an array
 * whose elements are all valid JSON number tokens is lifted, so the text is valid JSON exactly when
 * the original was and parses to the same value everywhere else.
 */

/** The text with each lifted array as `[]`, and the lifted values by input index (`inputs[i].data`). */
export interface LiftedDataArrays {
  text: string;
  lifted: Map<number, Float64Array>;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const MAX_FIRST_CAPACITY = 65536;

/** An integer of this many digits or fewer is summed from its digits exactly (below 2^53). */
const SUMMED_DIGITS = 15;

interface Level {
  object: boolean;
  /** Objects: the key whose value comes next, or undefined while a key is expected. */
  key: string | undefined;
  /** Objects: keys seen (for `inputs` and `data`, which must not repeat). */
  keys: Set<string> | undefined;
  /** Arrays: the index of the current element. */
  index: number;
}

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number) => c >= ZERO && c <= NINE;

/**
 * Reads the array at `open` (its `[`) if every element is a JSON number: the values and the index
 * past its `]`; undefined otherwise (empty, nested, a string, a bare NaN, a malformed number...).
 */
function readNumberArray(text: string, open: number): { values: Float64Array; end: number } | undefined {
  // Sized for the rest of the text at two characters an element (`0,`), up to 64 Ki elements; doubled past that.
  let values = new Float64Array(Math.min(MAX_FIRST_CAPACITY, Math.max(16, (text.length - open) >> 1)));
  let count = 0;
  let i = open + 1;
  for (;;) {
    let c = text.charCodeAt(i);
    while (isSpace(c)) c = text.charCodeAt(++i);
    const start = i;
    const negative = c === MINUS;
    if (negative) c = text.charCodeAt(++i);
    let value = 0;
    let digits = 0;
    if (c === ZERO) {
      c = text.charCodeAt(++i);
      digits = 1;
    } else if (c > ZERO && c <= NINE) {
      while (isDigit(c)) {
        value = value * 10 + (c - ZERO);
        digits++;
        c = text.charCodeAt(++i);
      }
    } else {
      return undefined;
    }
    let plain = digits <= SUMMED_DIGITS;
    if (c === DOT) {
      c = text.charCodeAt(++i);
      if (!isDigit(c)) return undefined;
      while (isDigit(c)) c = text.charCodeAt(++i);
      plain = false;
    }
    if (c === 0x65 || c === 0x45) {
      c = text.charCodeAt(++i);
      if (c === PLUS || c === MINUS) c = text.charCodeAt(++i);
      if (!isDigit(c)) return undefined;
      while (isDigit(c)) c = text.charCodeAt(++i);
      plain = false;
    }
    if (count === values.length) {
      const grown = new Float64Array(values.length * 2);
      grown.set(values);
      values = grown;
    }
    values[count++] = plain ? (negative ? -value : value) : Number(text.slice(start, i));
    while (isSpace(c)) c = text.charCodeAt(++i);
    if (c === COMMA) {
      i++;
      continue;
    }
    return c === CLOSE_ARRAY ? { values: values.subarray(0, count), end: i + 1 } : undefined;
  }
}

/**
 * The `inputs[i].data` arrays of a request body that hold only numbers, lifted out of the text;
 * undefined when there is none, or when the text is not an object this reader follows (an escaped
 * key, a repeated `inputs` or `data` key, unbalanced brackets): the caller then parses it whole.
 */
export function liftDataArrays(text: string): LiftedDataArrays | undefined {
  const stack: Level[] = [];
  const lifted = new Map<number, Float64Array>();
  const kept: string[] = [];
  let from = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    const top = stack[stack.length - 1];
    if (c === QUOTE) {
      // A string: to its closing quote, past escapes. In key position it names the next value.
      let j = i + 1;
      let escaped = false;
      for (;;) {
        const d = text.charCodeAt(j);
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          escaped = true;
          j++;
        } else if (j >= n) {
          return undefined;
        }
        j++;
      }
      if (top?.object && top.key === undefined) {
        if (escaped) return undefined; // `"d\u0061ta"` is `data` once parsed
        const key = text.slice(i + 1, j);
        if ((stack.length === 1 && key === 'inputs') || (stack.length === 3 && key === 'data')) {
          if (top.keys!.has(key)) return undefined; // JSON.parse keeps the last one
          top.keys!.add(key);
        }
        top.key = key;
      }
      i = j + 1;
      continue;
    }
    if (c === OPEN_ARRAY) {
      const parent = stack[1];
      const liftable = stack.length === 3 && top!.object && top!.key === 'data' && stack[0]!.key === 'inputs' && parent !== undefined && !parent.object;
      const read = liftable ? readNumberArray(text, i) : undefined;
      if (read) {
        lifted.set(parent!.index, read.values);
        kept.push(text.slice(from, i), '[]');
        from = i = read.end;
        continue;
      }
      stack.push({ object: false, key: undefined, keys: undefined, index: 0 });
    } else if (c === OPEN_OBJECT) {
      stack.push({ object: true, key: undefined, keys: stack.length === 0 || stack.length === 2 ? new Set() : undefined, index: 0 });
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      if (stack.pop() === undefined) return undefined;
    } else if (c === COMMA && top) {
      if (top.object) top.key = undefined;
      else top.index++;
    }
    i++;
  }
  if (lifted.size === 0 || stack.length !== 0) return undefined;
  kept.push(text.slice(from));
  return { text: kept.join(''), lifted };
}
