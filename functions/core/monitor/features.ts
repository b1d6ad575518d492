/**
 * What drift is measured on: per-row features of a tensor, the same for a baseline's data set and
 * for captured requests. A small tabular input gives one feature per element; a large tensor gives
 * summary statistics (mean, standard deviation) and a 4x4 grid of block means over its last two
 * dimensions (a flat row of a square number of elements is read as a square image), which moves
 * when an image is inverted, rotated or shifted. Outputs: a row of one number is a numeric
 * prediction; a row of several is a class distribution, giving the predicted class and its score.
 */

/** Rows of at most this many elements get one feature per element. */
export const TABULAR_MAX_ELEMENTS = 32;
const GRID = 4;

export interface TensorLike {
  name: string;
  datatype: string;
  shape: readonly number[];
  data: ArrayLike<unknown>;
}

export type FeatureKind = 'numeric' | 'categorical';

export interface FeatureColumn {
  name: string;
  kind: FeatureKind;
  /** One value per row: a number, or for a categorical feature the category as a string. */
  values: (number | string)[];
}

const NUMERIC = new Set(['FP16', 'FP32', 'FP64', 'INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'BOOL']);

/** Rows of a tensor: its first dimension when it has two or more, else one row. */
export function rowCount(shape: readonly number[]): number {
  return shape.length >= 2 ? shape[0]! : 1;
}

function numberAt(data: ArrayLike<unknown>, i: number): number {
  const v = data[i];
  return typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? (v ? 1 : 0) : (v as number);
}

/** The spatial layout of one row for the grid: [planes, height, width], or undefined for none. */
function imageLayout(rowShape: readonly number[]): [number, number, number] | undefined {
  const size = rowShape.reduce((a, b) => a * b, 1);
  if (rowShape.length >= 2 && rowShape.at(-1)! >= GRID && rowShape.at(-2)! >= GRID) {
    const h = rowShape.at(-2)!;
    const w = rowShape.at(-1)!;
    return [size / (h * w), h, w];
  }
  const side = Math.round(Math.sqrt(size));
  if (side >= GRID * 2 && side * side === size) return [1, side, side];
  return undefined;
}

/** The data as numbers indexed directly: a float or integer typed array as it is, anything else converted once. */
function numericView(data: ArrayLike<unknown>): ArrayLike<number> {
  if (ArrayBuffer.isView(data) && !(data instanceof BigInt64Array) && !(data instanceof BigUint64Array)) return data as unknown as ArrayLike<number>;
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = numberAt(data, i);
  return out;
}

/** accumulateRow's sum and sum of squares (no array per row). */
const moments = new Float64Array(2);

/**
 * One row's sum, sum of squares and, with a cell map, per-cell sums: one pass in memory order
 * (planes, rows, columns), the order the sums were always taken in. Small and on its own so that the
 * JIT optimises the loop.
 */
function accumulateRow(values: ArrayLike<number>, at: number, size: number, plane: number, cellOf: Uint8Array | undefined, cells: Float64Array): void {
  let sum = 0;
  let sq = 0;
  if (cellOf) {
    cells.fill(0);
    for (let base = at; base < at + size; base += plane) {
      for (let j = 0; j < plane; j++) {
        const v = values[base + j]!;
        sum += v;
        sq += v * v;
        cells[cellOf[j]!]! += v;
      }
    }
  } else {
    for (let i = at; i < at + size; i++) {
      const v = values[i]!;
      sum += v;
      sq += v * v;
    }
  }
  moments[0] = sum;
  moments[1] = sq;
}

const gridNameLists = new Map<string, string[]>();
/** `<tensor>.grid[row,column]` for each cell, made once per tensor name. */
function gridNames(tensor: string): string[] {
  let names = gridNameLists.get(tensor);
  if (!names) {
    names = Array.from({ length: GRID * GRID }, (_, c) => `${tensor}.grid[${Math.floor(c / GRID)},${c % GRID}]`);
    if (gridNameLists.size < 256) gridNameLists.set(tensor, names);
  }
  return names;
}

const cellMaps = new Map<string, { cellOf: Uint8Array; perPlane: number[] }>();
/** The GRID x GRID cell of each element of an h x w plane, row-major, and each cell's element count. */
function gridCells(h: number, w: number): { cellOf: Uint8Array; perPlane: number[] } {
  const key = `${h}x${w}`;
  let map = cellMaps.get(key);
  if (!map) {
    const cellOf = new Uint8Array(h * w);
    const perPlane = new Array<number>(GRID * GRID).fill(0);
    for (let y = 0; y < h; y++) {
      const gy = Math.floor((y * GRID) / h);
      for (let x = 0; x < w; x++) {
        const cell = gy * GRID + Math.floor((x * GRID) / w);
        cellOf[y * w + x] = cell;
        perPlane[cell]! += 1;
      }
    }
    map = { cellOf, perPlane };
    if (cellMaps.size < 64) cellMaps.set(key, map);
  }
  return map;
}

/** Per-row features of an input tensor; none for a tensor of strings. */
export function inputFeatures(tensor: TensorLike): FeatureColumn[] {
  if (!NUMERIC.has(tensor.datatype)) return [];
  const rows = rowCount(tensor.shape);
  const rowShape = tensor.shape.length >= 2 ? tensor.shape.slice(1) : tensor.shape;
  const size = rows === 0 ? 0 : tensor.data.length / rows;
  if (size <= TABULAR_MAX_ELEMENTS) {
    return Array.from({ length: size }, (_, e) => ({
      name: size === 1 ? tensor.name : `${tensor.name}[${e}]`,
      kind: 'numeric' as const,
      values: Array.from({ length: rows }, (_, r) => numberAt(tensor.data, r * size + e)),
    }));
  }
  const layout = imageLayout(rowShape);
  const values = numericView(tensor.data);
  const mean: number[] = [];
  const std: number[] = [];
  const grid: number[][] = Array.from({ length: layout ? GRID * GRID : 0 }, () => []);
  // The grid cell of each element of a plane, and each cell's element count, worked out once per tensor.
  const plane = layout ? layout[1] * layout[2] : 0;
  const map = layout ? gridCells(layout[1], layout[2]) : undefined;
  const cellOf = map?.cellOf;
  const counts = map ? map.perPlane.map((n) => n * layout![0]) : [];
  const cells = new Float64Array(GRID * GRID);
  for (let r = 0; r < rows; r++) {
    const at = r * size;
    accumulateRow(values, at, size, plane, cellOf, cells);
    const sum = moments[0]!;
    const sq = moments[1]!;
    if (cellOf) for (let c = 0; c < GRID * GRID; c++) grid[c]!.push(cells[c]! / counts[c]!);
    const m = sum / size;
    mean.push(m);
    std.push(Math.sqrt(Math.max(0, sq / size - m * m)));
  }
  return [
    { name: `${tensor.name}.mean`, kind: 'numeric', values: mean },
    { name: `${tensor.name}.std`, kind: 'numeric', values: std },
    ...grid.map((values, c) => ({ name: gridNames(tensor.name)[c]!, kind: 'numeric' as const, values })),
  ];
}

/** Per-row features of an output: the value of a one-number row, else the top class and its score. */
export function predictionFeatures(tensor: TensorLike): FeatureColumn[] {
  const rows = rowCount(tensor.shape);
  if (tensor.datatype === 'BYTES') {
    // Triton's classification extension: "score:index[:label]" per row, the top class first.
    const size = rows === 0 ? 0 : tensor.data.length / rows;
    return [{ name: `${tensor.name}.class`, kind: 'categorical', values: Array.from({ length: rows }, (_, r) => String(tensor.data[r * size]).split(':').slice(1).join(':')) }];
  }
  if (!NUMERIC.has(tensor.datatype)) return [];
  const size = rows === 0 ? 0 : tensor.data.length / rows;
  if (size === 1) return [{ name: tensor.name, kind: 'numeric', values: Array.from({ length: rows }, (_, r) => numberAt(tensor.data, r)) }];
  const classes: string[] = [];
  const scores: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let top = -Infinity;
    for (let i = 0; i < size; i++) {
      const v = numberAt(tensor.data, r * size + i);
      if (v > top) {
        top = v;
        best = i;
      }
    }
    classes.push(String(best));
    scores.push(top);
  }
  return [
    { name: `${tensor.name}.class`, kind: 'categorical', values: classes },
    { name: `${tensor.name}.score`, kind: 'numeric', values: scores },
  ];
}

/** Feature name to its values, rows appended in order (several requests or batches into one). */
export class FeatureTable {
  readonly columns = new Map<string, FeatureColumn>();

  add(features: readonly FeatureColumn[]): void {
    for (const f of features) {
      const column = this.columns.get(f.name);
      if (column) for (const v of f.values) column.values.push(v);
      else this.columns.set(f.name, { name: f.name, kind: f.kind, values: [...f.values] });
    }
  }
}
