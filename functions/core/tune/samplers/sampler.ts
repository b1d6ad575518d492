import { seededRandom } from '../../platform/random.ts';
import type { Configuration, SearchSpace } from '../space.ts';
import type { Constraint, Direction, Trial } from '../trial.ts';

/** What a sampler sees when asked for a trial's configuration. */
export interface SampleContext {
  space: SearchSpace;
  directions: readonly Direction[];
  /** The study's constraints (a sampler may model where they hold). */
  constraints?: readonly Constraint[];
  /** Every trial of the study so far, this one excluded, in trial-number order. */
  trials: readonly Trial[];
  /** The number of the trial being sampled (unique within the study). */
  trialNumber: number;
  /** Draws for this trial only: seeded from the study's seed and the trial number. */
  random: () => number;
}

/**
 * A sampler proposes one configuration from the trials so far. It keeps no state between calls, so a
 * worker that rebuilds a study from stored trials samples exactly what any other worker would: the
 * same seed, trial number and trials give the same configuration. Undefined means the sampler has
 * nothing left to propose (a grid fully enumerated).
 */
export interface Sampler {
  readonly name: string;
  sample(context: SampleContext): Configuration | undefined;
}

/** The stream of draws for one trial: independent of which worker asks, or in which order. */
export function trialRandom(seed: number, trialNumber: number): () => number {
  return seededRandom((seed ^ Math.imul(trialNumber + 1, 0x9e3779b1)) >>> 0);
}

/** Completed trials, the only ones whose values samplers learn from. */
export const completed = (trials: readonly Trial[]) => trials.filter((t) => t.state === 'complete' && t.values !== undefined);
