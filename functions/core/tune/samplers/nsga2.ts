import { fromUnit, isActive, toUnit, type Configuration, type ParamValue } from '../space.ts';
import { crowdingDistances, losses, nonDominatedSort, type Direction, type Trial } from '../trial.ts';
import { gaussian } from './gp.ts';
import { sampleConfiguration, sampleUniform } from './random.ts';
import { completed, type SampleContext, type Sampler } from './sampler.ts';

export interface Nsga2Options {
  /** Trials per generation (Optuna: 50). */
  populationSize?: number;
  /** Chance that a child is bred from two parents rather than copied from one (Optuna: 0.9). */
  crossoverProbability?: number;
  /** Chance per parameter of a mutation; default 1 / number of parameters. */
  mutationProbability?: number;
  /** Distribution index of simulated binary crossover: larger keeps children nearer their parents. */
  sbxEta?: number;
}

/** A member of a population with its rank (0 = first front) and crowding distance. */
export interface RankedTrial {
  trial: Trial;
  rank: number;
  crowding: number;
}

/** Ranks trials by constrained non-dominated sorting and crowding distance within each front. */
export function rankPopulation(trials: readonly Trial[], directions: readonly Direction[]): RankedTrial[] {
  const ranked: RankedTrial[] = [];
  nonDominatedSort(trials, directions).forEach((front, rank) => {
    const distances = crowdingDistances(front.map((i) => losses(trials[i]!.values!, directions)));
    front.forEach((i, k) => ranked.push({ trial: trials[i]!, rank, crowding: distances[k]! }));
  });
  return ranked;
}

/** The best `size` trials: whole fronts in order, the last one cut by crowding distance (larger first). */
export function selectElite(trials: readonly Trial[], directions: readonly Direction[], size: number): Trial[] {
  return rankPopulation(trials, directions)
    .sort((a, b) => a.rank - b.rank || b.crowding - a.crowding || a.trial.number - b.trial.number)
    .slice(0, size)
    .map((r) => r.trial);
}

/** Binary tournament: the lower rank wins, then the larger crowding distance, then the lower number. */
export function tournament(a: RankedTrial, b: RankedTrial): RankedTrial {
  if (a.rank !== b.rank) return a.rank < b.rank ? a : b;
  if (a.crowding !== b.crowding) return a.crowding > b.crowding ? a : b;
  return a.trial.number < b.trial.number ? a : b;
}

/** Simulated binary crossover of two positions in [0, 1]: one of the two children, clipped. */
export function sbx(x1: number, x2: number, eta: number, random: () => number): number {
  const u = random();
  const beta = u <= 0.5 ? (2 * u) ** (1 / (eta + 1)) : (1 / (2 * (1 - u))) ** (1 / (eta + 1));
  const child = random() < 0.5 ? 0.5 * ((1 + beta) * x1 + (1 - beta) * x2) : 0.5 * ((1 - beta) * x1 + (1 + beta) * x2);
  return Math.min(1, Math.max(0, child));
}

/**
 * NSGA-II. Trial n belongs to generation floor(n / populationSize); generation 0 is random. The
 * parents of generation g are the elite of generation g-1's parents and its completed trials,
 * recomputed from the stored trials, so every worker agrees on them. A child takes two tournament
 * winners; numeric parameters cross by SBX in their normalized (log) range and mutate by a Gaussian
 * step, categorical ones take either parent's choice and mutate to a uniform choice. Constraints rank
 * by Deb's rule (feasible first). With one objective it is a plain genetic algorithm.
 */
export class Nsga2Sampler implements Sampler {
  readonly name = 'nsga2';
  readonly populationSize: number;
  readonly crossoverProbability: number;
  readonly mutationProbability: number | undefined;
  readonly sbxEta: number;

  constructor(options: Nsga2Options = {}) {
    this.populationSize = options.populationSize ?? 50;
    this.crossoverProbability = options.crossoverProbability ?? 0.9;
    this.mutationProbability = options.mutationProbability;
    this.sbxEta = options.sbxEta ?? 20;
  }

  /** Parents of a generation, from the trials so far. */
  parents(trials: readonly Trial[], directions: readonly Direction[], generation: number): Trial[] {
    const done = completed(trials);
    let parents: Trial[] = [];
    for (let g = 1; g <= generation; g++) {
      const offspring = done.filter((t) => Math.floor(t.number / this.populationSize) === g - 1);
      parents = selectElite([...parents, ...offspring], directions, this.populationSize);
    }
    return parents;
  }

  sample(context: SampleContext): Configuration {
    const { space, random, directions } = context;
    const generation = Math.floor(context.trialNumber / this.populationSize);
    const parents = generation === 0 ? [] : this.parents(context.trials, directions, generation);
    if (parents.length === 0) return sampleConfiguration(space, random);
    const ranked = rankPopulation(parents, directions);
    const pick = () => tournament(ranked[Math.floor(random() * ranked.length)]!, ranked[Math.floor(random() * ranked.length)]!).trial;
    const first = pick();
    const second = pick();
    const cross = random() < this.crossoverProbability;
    const names = Object.keys(space.parameters);
    const mutation = this.mutationProbability ?? 1 / names.length;
    const out: Configuration = {};
    for (const name of names) {
      const p = space.parameters[name]!;
      if (!isActive(p, out)) continue;
      const a = first.params[name];
      const b = second.params[name];
      let value: ParamValue;
      if (a === undefined && b === undefined) value = sampleUniform(p, random);
      else if (!cross || a === undefined || b === undefined) value = (a ?? b)!;
      else if (p.type === 'categorical') value = random() < 0.5 ? a : b;
      else value = fromUnit(p, sbx(toUnit(p, a as number), toUnit(p, b as number), this.sbxEta, random));
      if (random() < mutation) {
        value = p.type === 'categorical' ? sampleUniform(p, random) : fromUnit(p, toUnit(p, value as number) + 0.1 * gaussian(random));
      }
      out[name] = value;
    }
    return out;
  }
}
