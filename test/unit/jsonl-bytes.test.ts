import { describe, expect, it } from 'vitest';
import { writeJsonlRowBytes } from '../../functions/core/batch/jsonl-bytes.ts';
import { inputSpecs, writeJsonlRowInto } from '../../functions/core/batch/rows.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';

// The byte reader against the JSON.parse reader it stands in for: on every line it takes, the same
// id and bitwise the same tensor values; every line it leaves, the other reader decides.

const specs = inputSpecs([
  { name: 'x', datatype: 'FP32', shape: [-1, 2, 3] },
  { name: 'w', datatype: 'FP64', shape: [-1, 4] },
]);

/** Number texts as writers print them, and the edges of the fast path's exact arithmetic. */
function numberText(r: () => number): string {
  const pick = Math.floor(r() * 14);
  const sign = r() < 0.3 ? '-' : '';
  switch (pick) {
    case 0: return `${sign}${Math.floor(r() * 256)}`;
    case 1: return `${sign}${r()}`;
    case 2: return `${sign}${Math.fround(r() * 10)}`;
    case 3: return `${sign}${(r() * 1000).toFixed(Math.floor(r() * 20))}`;
    case 4: return `${sign}${(r() * 10).toExponential(Math.floor(r() * 18))}`.replace('e+', r() < 0.5 ? 'e+' : 'E');
    case 5: return `${sign}${Math.floor(r() * 2 ** 53) * 10 ** Math.floor(r() * 8)}`;
    case 6: return `${sign}${String(Math.floor(r() * 1e9))}${'0'.repeat(Math.floor(r() * 20))}`;
    case 7: return `${sign}0.${'0'.repeat(Math.floor(r() * 30))}${Math.floor(r() * 1e6)}`;
    case 8: return `${sign}${Math.floor(r() * 1e5)}e${Math.floor(r() * 60) - 30}`;
    case 9: return `${sign}3.4028234663852886e38`;
    case 10: return `${sign}${['0', '0.0', '0e0', '1e-400', '9007199254740993', '123456789012345678901234567890', '1.00000000000000011102230246251565404236316680908203125'][Math.floor(r() * 7)]}`;
    case 11: return `${sign}${(r() * 1e-5).toPrecision(17)}`;
    case 12: return `${sign}${(2 ** 53 + Math.floor(r() * 1000))}.${Math.floor(r() * 1000)}`;
    default: return `${sign}${(r() * 2 ** 70).toPrecision(1 + Math.floor(r() * 21))}`;
  }
}

function space(r: () => number): string {
  return r() < 0.7 ? '' : [' ', '  ', '\t', ' \r\n '][Math.floor(r() * 4)]!;
}

function tensorText(r: () => number, name: string, count: number, shapes: string[]): string {
  const s = () => space(r);
  const fields = [`${s()}"name"${s()}:${s()}"${name}"`];
  if (r() < 0.6) fields.push(`"datatype":"${name === 'x' ? 'FP32' : 'FP64'}"`);
  if (r() < 0.6) fields.push(`"shape":${shapes[Math.floor(r() * shapes.length)]}`);
  const values = Array.from({ length: count }, () => numberText(r));
  fields.push(`"data"${s()}:${s()}[${values.map((v) => `${s()}${v}${s()}`).join(r() < 0.5 ? ',' : ', ')}]`);
  return `{${fields.join(`,${s()}`)}${s()}}`;
}

function rowText(r: () => number): string {
  const tensors = [tensorText(r, 'x', 6, ['[1,2,3]', '[2,3]', '[ 1 , 2 , 3 ]', '[1.0,2,3]']), tensorText(r, 'w', 4, ['[1,4]', '[4]'])];
  if (r() < 0.5) tensors.reverse();
  const fields = [`"inputs":[${tensors.join(',')}]`];
  const id = r();
  if (id < 0.3) fields.push(`"id":"row-${Math.floor(r() * 1000)}"`);
  else if (id < 0.6) fields.push(`"id":${numberText(r)}`);
  if (r() < 0.5) fields.reverse();
  return `${space(r)}{${fields.join(',')}}${space(r)}`;
}

const slot = 1;
function both(line: string) {
  const bytes = Buffer.from(`\n${line}\r\n`, 'utf8');
  const viaBytes = [new Float32Array(12), new Float64Array(8)] as const;
  const viaParse = [new Float32Array(12), new Float64Array(8)] as const;
  return {
    bytes: writeJsonlRowBytes(bytes, 1, bytes.length - 2, specs, viaBytes, slot),
    parse: writeJsonlRowInto(line, specs, viaParse, slot),
    same: () => Buffer.from(viaBytes[0].buffer).equals(Buffer.from(viaParse[0].buffer)) && Buffer.from(viaBytes[1].buffer).equals(Buffer.from(viaParse[1].buffer)),
    values: viaBytes,
  };
}

describe('the JSONL byte reader', () => {
  it('reads a plain row into its slot, numbers as JSON.parse reads them', () => {
    const line = '{"id":"a-1","inputs":[{"name":"x","datatype":"FP32","shape":[1,2,3],"data":[1, 2.5, -0, 0.1, 1e-7, 255]},{"name":"w","data":[0.1,1E+2,-3.25e-3,123456789012345678]}]}';
    const r = both(line);
    expect(r.bytes).toEqual({ id: 'a-1' });
    expect(Array.from(r.values[0].subarray(6))).toEqual([1, 2.5, -0, Math.fround(0.1), Math.fround(1e-7), 255]);
    expect(Array.from(r.values[1].subarray(4))).toEqual([0.1, 100, -3.25e-3, 123456789012345680]);
    expect(r.same()).toBe(true);
  });

  it('gives bitwise the values, and the id, of the JSON.parse reader on 3000 generated rows', () => {
    const r = seededRandom(7);
    let taken = 0;
    for (let n = 0; n < 3000; n++) {
      const line = rowText(r);
      const result = both(line);
      expect(result.parse, line).toBeDefined();
      if (result.bytes === undefined) continue;
      taken++;
      expect(result.bytes, line).toEqual(result.parse);
      expect(result.same(), line).toBe(true);
    }
    // Only rows with an out-of-range value (e.g. ±3.4028234663852886e38 rounds past FP32) are left.
    expect(taken).toBeGreaterThan(2500);
  });

  it('takes no line JSON.parse refuses: 3000 rows with one byte changed, dropped or added', () => {
    const r = seededRandom(11);
    const noise = '{}[],:"\\-+.eE0123456789 \tx\u00e9';
    let refused = 0;
    for (let n = 0; n < 3000; n++) {
      const chars = [...rowText(r)];
      const at = Math.floor(r() * chars.length);
      const c = noise[Math.floor(r() * noise.length)]!;
      const edit = r();
      if (edit < 0.4) chars[at] = c;
      else if (edit < 0.7) chars.splice(at, 1);
      else chars.splice(at, 0, c);
      const line = chars.join('');
      let valid = true;
      try {
        JSON.parse(line);
      } catch {
        valid = false;
      }
      const result = both(line);
      if (!valid) {
        refused++;
        expect(result.bytes, line).toBeUndefined();
      } else if (result.bytes !== undefined) {
        expect(result.bytes, line).toEqual(result.parse);
        expect(result.same(), line).toBe(true);
      }
    }
    expect(refused).toBeGreaterThan(1000);
  });

  it('leaves to the full decoder what it does not take: escapes, other keys, nesting, names after data', () => {
    for (const line of [
      '{"inputs":[{"name":"x","data":[[1,2,3],[4,5,6]]},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"\\u0078","data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"data":[1,2,3,4,5,6],"name":"x"},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,6],"parameters":{}},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}],"model":"m"}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}],"inputs":[]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,6]},{"name":"x","data":[1,2,3,4,5,6]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,6]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5]},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,6,7]},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","datatype":"FP64","data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","shape":[6],"data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}]}',
      '{"inputs":[{"name":"x","data":[1,2,3,4,5,1e39]},{"name":"w","data":[1,2,3,4]}]}',
      '{"id":"\u00e9","inputs":[{"name":"x","data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}]}',
      '{"id":null,"inputs":[{"name":"x","data":[1,2,3,4,5,6]},{"name":"w","data":[1,2,3,4]}]}',
    ]) {
      expect(both(line).bytes, line).toBeUndefined();
    }
  });
});
