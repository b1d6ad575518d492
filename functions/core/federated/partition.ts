/**
 * Splits a labelled data set among simulated clients: `iid` (a seeded shuffle cut in equal parts),
 * `shards:k` (the FedAvg paper's pathological non-IID split: rows sorted by label, cut into
 * clients x k shards, k shards to each client) and `dirichlet:alpha` (per class, client shares drawn
 * from Dirichlet(alpha): small alpha, few classes per client).
 */
import { seededRandom } from '../platform/random.ts';
import { seededPermutation, type TrainingData } from '../train/loop.ts';
import { gaussianSource } from './privacy.ts';

export type Partition = { kind: 'iid' } | { kind: 'shards'; perClient: number } | { kind: 'dirichlet'; alpha: number };

export function parsePartition(text: string): Partition {
  if (text === 'iid') return { kind: 'iid' };
  const [kind, value] = text.split(':');
  const number = Number(value);
  if (kind === 'shards' && Number.isInteger(number) && number >= 1) return { kind: 'shards', perClient: number };
  if (kind === 'dirichlet' && number > 0 && Number.isFinite(number)) return { kind: 'dirichlet', alpha: number };
  throw new RangeError(`partition '${text}' is not iid, shards:<k> (k >= 1) or dirichlet:<alpha> (alpha > 0)`);
}

/** Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 boosted by U^(1/shape)). */
function gamma(shape: number, uniform: () => number, normal: () => number): number {
  if (shape < 1) return gamma(shape + 1, uniform, normal) * uniform() ** (1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal();
    const v = (1 + c * x) ** 3;
    if (v <= 0) continue;
    const u = uniform();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** Row indices of each client. */
export function partitionRows(labels: ArrayLike<number>, clients: number, partition: Partition, seed: number): Uint32Array[] {
  const rows = labels.length;
  if (!Number.isInteger(clients) || clients < 1 || clients > rows) throw new RangeError(`${clients} clients for ${rows} rows`);
  if (partition.kind === 'iid') {
    const order = seededPermutation(rows, seed);
    const size = Math.floor(rows / clients);
    return Array.from({ length: clients }, (_, client) => order.slice(client * size, (client + 1) * size));
  }
  if (partition.kind === 'shards') {
    const shardCount = clients * partition.perClient;
    const size = Math.floor(rows / shardCount);
    // Stable sort by label after a shuffle: shards are label-pure, their rows random within a label.
    const order = Array.from(seededPermutation(rows, seed)).sort((a, b) => (labels[a] as number) - (labels[b] as number));
    const shards = seededPermutation(shardCount, seed ^ 0x5bd1e995);
    return Array.from({ length: clients }, (_, client) => {
      const mine = new Uint32Array(size * partition.perClient);
      for (let k = 0; k < partition.perClient; k++) {
        const shard = shards[client * partition.perClient + k] as number;
        mine.set(order.slice(shard * size, (shard + 1) * size), k * size);
      }
      return mine;
    });
  }
  const uniform = seededRandom(seed);
  const normal = gaussianSource(seededRandom(seed ^ 0x68e31da4));
  const byClass = new Map<number, number[]>();
  for (const row of seededPermutation(rows, seed)) {
    const label = labels[row] as number;
    byClass.set(label, [...(byClass.get(label) ?? []), row]);
  }
  const out: number[][] = Array.from({ length: clients }, () => []);
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = byClass.get(label) as number[];
    const draws = Array.from({ length: clients }, () => gamma(partition.alpha, uniform, normal));
    const total = draws.reduce((sum, value) => sum + value, 0);
    let at = 0;
    draws.forEach((draw, client) => {
      const end = client === clients - 1 ? members.length : Math.min(members.length, at + Math.round((draw / total) * members.length));
      out[client]?.push(...members.slice(at, end));
      at = end;
    });
  }
  return out.map((mine) => Uint32Array.from(mine));
}

/** The rows of one client as a data set of its own. */
export function subset(data: TrainingData, rows: Uint32Array): TrainingData {
  return {
    columns: data.columns.map((column) => {
      const source = column.data as unknown as { constructor: new (length: number) => Float32Array; subarray(start: number, end: number): Float32Array };
      const values = new source.constructor(rows.length * column.rowSize);
      rows.forEach((row, index) => values.set(source.subarray(row * column.rowSize, (row + 1) * column.rowSize), index * column.rowSize));
      return { ...column, data: values as never };
    }),
    ...(data.labels ? { labels: Int32Array.from(rows, (row) => data.labels?.[row] as number) } : {}),
  };
}
