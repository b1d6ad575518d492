/**
 * Aggregation strategies as pure functions over flat parameter vectors (every float initializer of
 * the model, in the global layout's order). Each takes the current global weights and the clients'
 * trained weights and returns the next global weights, plus the server state a strategy carries
 * from round to round (momentum, moments). The names and defaults follow Flower's strategies.
 */

export interface ClientWeights {
  client: string;
  /** Training examples behind the update: FedAvg's weight. */
  examples: number;
  weights: Float64Array;
}

/** What a stateful strategy keeps between rounds (FedAvgM's velocity, FedOpt's moments). */
export interface ServerState {
  round: number;
  vectors: Record<string, Float64Array>;
}

export type StrategySpec =
  | { kind: 'fedavg' }
  /** Server momentum on the pseudo-gradient (global - average): v = beta v + d; w = w - lr v. */
  | { kind: 'fedavgm'; serverLearningRate?: number; momentum?: number }
  /** Adaptive server optimizers (Reddi et al. 2021, Algorithm 2) on delta = average - global. */
  | { kind: 'fedadam' | 'fedyogi' | 'fedadagrad'; serverLearningRate?: number; beta1?: number; beta2?: number; tau?: number }
  /** FedProx aggregates as FedAvg; `mu` goes to the clients, whose loss adds mu/2 |w - w_global|^2. */
  | { kind: 'fedprox'; mu: number }
  | { kind: 'median' }
  /** Per coordinate, drop the `beta` fraction of lowest and highest values, average the rest. */
  | { kind: 'trimmed-mean'; beta?: number }
  /** Krum (selected 1) or Multi-Krum: keep the `selected` updates closest to their n - f - 2 neighbours. */
  | { kind: 'multi-krum'; byzantine: number; selected?: number }
  /** Bulyan: n - 2f updates picked by Krum one at a time, then per coordinate the n - 4f values nearest the median averaged. */
  | { kind: 'bulyan'; byzantine: number };

export type StrategyKind = StrategySpec['kind'];

/** The strategies that start from a mean of the updates (the ones differential privacy can wrap). */
export const averagingKinds: ReadonlySet<StrategyKind> = new Set(['fedavg', 'fedprox', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad']);

export interface AggregationResult {
  weights: Float64Array;
  state?: ServerState;
  /** Clients whose updates entered the average (Multi-Krum leaves some out). */
  used: string[];
}

export class AggregationError extends Error {
  readonly expose = true;
  constructor(message: string) {
    super(message);
    this.name = 'AggregationError';
  }
}

function checkUpdates(global: Float64Array, updates: readonly ClientWeights[]): void {
  if (updates.length === 0) throw new AggregationError('no updates to aggregate');
  for (const update of updates) {
    if (update.weights.length !== global.length) throw new AggregationError(`update of ${update.client} has ${update.weights.length} values; the global model has ${global.length}`);
    if (!(update.examples > 0) || !Number.isFinite(update.examples)) throw new AggregationError(`update of ${update.client} claims ${update.examples} examples`);
  }
}

/** FedAvg: the example-weighted mean. */
export function weightedAverage(updates: readonly ClientWeights[]): Float64Array {
  const length = updates[0]?.weights.length ?? 0;
  const total = updates.reduce((sum, update) => sum + update.examples, 0);
  const out = new Float64Array(length);
  for (const update of updates) {
    const share = update.examples / total;
    const w = update.weights;
    for (let i = 0; i < length; i++) out[i] = (out[i] as number) + share * (w[i] as number);
  }
  return out;
}

function zeros(length: number): Float64Array {
  return new Float64Array(length);
}

function serverMomentum(global: Float64Array, average: Float64Array, state: ServerState | undefined, lr: number, momentum: number): { weights: Float64Array; state: ServerState } {
  const velocity = state?.vectors.velocity ? Float64Array.from(state.vectors.velocity) : zeros(global.length);
  const weights = new Float64Array(global.length);
  for (let i = 0; i < global.length; i++) {
    const pseudoGradient = (global[i] as number) - (average[i] as number);
    const v = momentum > 0 && state ? momentum * (velocity[i] as number) + pseudoGradient : pseudoGradient;
    velocity[i] = v;
    weights[i] = (global[i] as number) - lr * v;
  }
  return { weights, state: { round: (state?.round ?? 0) + 1, vectors: { velocity } } };
}

function adaptive(kind: 'fedadam' | 'fedyogi' | 'fedadagrad', global: Float64Array, average: Float64Array, state: ServerState | undefined, options: { serverLearningRate?: number; beta1?: number; beta2?: number; tau?: number }) {
  const eta = options.serverLearningRate ?? 0.1;
  const beta1 = options.beta1 ?? 0.9;
  const beta2 = options.beta2 ?? 0.99;
  const tau = options.tau ?? 1e-9;
  const m = state?.vectors.m ? Float64Array.from(state.vectors.m) : zeros(global.length);
  const v = state?.vectors.v ? Float64Array.from(state.vectors.v) : zeros(global.length);
  const weights = new Float64Array(global.length);
  for (let i = 0; i < global.length; i++) {
    const delta = (average[i] as number) - (global[i] as number);
    const squared = delta * delta;
    m[i] = beta1 * (m[i] as number) + (1 - beta1) * delta;
    if (kind === 'fedadagrad') v[i] = (v[i] as number) + squared;
    else if (kind === 'fedadam') v[i] = beta2 * (v[i] as number) + (1 - beta2) * squared;
    else v[i] = (v[i] as number) - (1 - beta2) * squared * Math.sign((v[i] as number) - squared);
    weights[i] = (global[i] as number) + (eta * (m[i] as number)) / (Math.sqrt(v[i] as number) + tau);
  }
  return { weights, state: { round: (state?.round ?? 0) + 1, vectors: { m, v } } };
}

/** Each coordinate's values across the updates, sorted, reduced to one value by `reduce`. */
function perCoordinate(updates: readonly ClientWeights[], reduce: (sorted: Float64Array) => number): Float64Array {
  const length = updates[0]?.weights.length ?? 0;
  const column = new Float64Array(updates.length);
  return Float64Array.from({ length }, (_, i) => {
    updates.forEach((update, k) => (column[k] = update.weights[i] as number));
    return reduce(column.sort());
  });
}

/** Coordinate-wise median (the mean of the two middle values for an even count). */
export function coordinateMedian(updates: readonly ClientWeights[]): Float64Array {
  const n = updates.length;
  return perCoordinate(updates, (sorted) => (n % 2 === 1 ? (sorted[(n - 1) / 2] as number) : ((sorted[n / 2 - 1] as number) + (sorted[n / 2] as number)) / 2));
}

/** Coordinate-wise trimmed mean: floor(beta n) values cut from each end, the rest averaged (unweighted). */
export function trimmedMean(updates: readonly ClientWeights[], beta: number): Float64Array {
  if (!(beta >= 0 && beta < 0.5)) throw new AggregationError(`trimmed-mean beta ${beta} is outside [0, 0.5)`);
  const n = updates.length;
  const cut = Math.floor(beta * n);
  return perCoordinate(updates, (sorted) => {
    let sum = 0;
    for (let k = cut; k < n - cut; k++) sum += sorted[k] as number;
    return sum / (n - 2 * cut);
  });
}

function squaredDistance(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    sum += d * d;
  }
  return sum;
}

function distanceMatrix(updates: readonly ClientWeights[]): number[][] {
  const n = updates.length;
  const out = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const d = squaredDistance((updates[i] as ClientWeights).weights, (updates[j] as ClientWeights).weights);
      (out[i] as number[])[j] = d;
      (out[j] as number[])[i] = d;
    }
  }
  return out;
}

/** Krum scores of the updates at `members` (indices): each one's summed squared distances to its `neighbours` nearest members. */
function krumScores(distances: readonly number[][], members: readonly number[], neighbours: number): number[] {
  return members.map((i) =>
    members
      .filter((j) => j !== i)
      .map((j) => (distances[i] as number[])[j] as number)
      .sort((x, y) => x - y)
      .slice(0, neighbours)
      .reduce((sum, d) => sum + d, 0),
  );
}

/**
 * Multi-Krum (Blanchard et al. 2017): each update's score is the sum of its squared distances to its
 * n - f - 2 nearest others; the `selected` lowest-scoring updates are averaged by examples. Ties keep
 * the earlier update.
 */
export function multiKrum(updates: readonly ClientWeights[], byzantine: number, selected: number): { weights: Float64Array; used: string[]; scores: number[] } {
  const n = updates.length;
  const neighbours = n - byzantine - 2;
  if (!Number.isInteger(byzantine) || byzantine < 0 || neighbours < 1) throw new AggregationError(`multi-krum needs n - f - 2 >= 1: ${n} updates, f = ${byzantine}`);
  if (!Number.isInteger(selected) || selected < 1 || selected > n) throw new AggregationError(`multi-krum selects ${selected} of ${n} updates`);
  const scores = krumScores(distanceMatrix(updates), updates.map((_, i) => i), neighbours);
  const order = scores.map((score, index) => ({ score, index })).sort((a, b) => a.score - b.score || a.index - b.index);
  const chosen = order.slice(0, selected).map((entry) => updates[entry.index] as ClientWeights);
  return { weights: weightedAverage(chosen), used: chosen.map((update) => update.client), scores };
}

/**
 * Bulyan (El Mhamdi, Guerraoui and Rouault 2018), as Flower's: needs n >= 4f + 3. Krum picks one
 * update at a time from those left (scores over the max(1, n' - f - 2) nearest of the n' left, ties
 * to the earlier update) until theta = n - 2f are picked; then, per coordinate, the beta = theta - 2f
 * picked values nearest that coordinate's median (ties to the lower value) are averaged, unweighted.
 */
export function bulyan(updates: readonly ClientWeights[], byzantine: number): { weights: Float64Array; used: string[] } {
  const n = updates.length;
  if (!Number.isInteger(byzantine) || byzantine < 0) throw new AggregationError(`bulyan's f must be a whole number of updates, not ${byzantine}`);
  if (n < 4 * byzantine + 3) throw new AggregationError(`bulyan needs n >= 4f + 3 updates: ${n} updates, f = ${byzantine} needs ${4 * byzantine + 3}`);
  const theta = n - 2 * byzantine;
  const beta = theta - 2 * byzantine;
  const distances = distanceMatrix(updates);
  let left = updates.map((_, i) => i);
  const picked: number[] = [];
  while (picked.length < theta) {
    const scores = krumScores(distances, left, Math.max(1, left.length - byzantine - 2));
    let best = 0;
    for (let k = 1; k < left.length; k++) if ((scores[k] as number) < (scores[best] as number)) best = k;
    picked.push(left[best] as number);
    left = left.filter((_, k) => k !== best);
  }
  const chosen = picked.map((i) => updates[i] as ClientWeights);
  const weights = perCoordinate(chosen, (sorted) => {
    // The beta nearest the median form a window of the sorted values: widen it from the middle.
    const median = theta % 2 === 1 ? (sorted[(theta - 1) / 2] as number) : ((sorted[theta / 2 - 1] as number) + (sorted[theta / 2] as number)) / 2;
    let low = Math.floor((theta - 1) / 2);
    let high = low;
    let sum = sorted[low] as number;
    while (high - low + 1 < beta) {
      const below = low > 0 ? median - (sorted[low - 1] as number) : Infinity;
      const above = high < theta - 1 ? (sorted[high + 1] as number) - median : Infinity;
      if (below <= above) sum += sorted[--low] as number;
      else sum += sorted[++high] as number;
    }
    return sum / beta;
  });
  return { weights, used: chosen.map((update) => update.client) };
}

/**
 * Runs one strategy on one round's updates. `average` replaces FedAvg's example-weighted mean where a
 * strategy starts from one (the differential privacy's clipped, noised mean: privacy.ts).
 */
export function aggregate(spec: StrategySpec, global: Float64Array, updates: readonly ClientWeights[], state?: ServerState, average?: (updates: readonly ClientWeights[]) => Float64Array): AggregationResult {
  checkUpdates(global, updates);
  const everyone = updates.map((update) => update.client);
  const mean = average ?? weightedAverage;
  if (average && !averagingKinds.has(spec.kind)) throw new AggregationError(`strategy ${spec.kind} does not aggregate by a mean; differential privacy needs fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad`);
  switch (spec.kind) {
    case 'fedavg':
    case 'fedprox':
      return { weights: mean(updates), used: everyone };
    case 'fedavgm': {
      const out = serverMomentum(global, mean(updates), state, spec.serverLearningRate ?? 1, spec.momentum ?? 0.9);
      return { ...out, used: everyone };
    }
    case 'fedadam':
    case 'fedyogi':
    case 'fedadagrad':
      return { ...adaptive(spec.kind, global, mean(updates), state, spec), used: everyone };
    case 'median':
      return { weights: coordinateMedian(updates), used: everyone };
    case 'trimmed-mean':
      return { weights: trimmedMean(updates, spec.beta ?? 0.2), used: everyone };
    case 'multi-krum': {
      const out = multiKrum(updates, spec.byzantine, spec.selected ?? Math.max(1, updates.length - spec.byzantine));
      return { weights: out.weights, used: out.used };
    }
    case 'bulyan':
      return bulyan(updates, spec.byzantine);
  }
}
