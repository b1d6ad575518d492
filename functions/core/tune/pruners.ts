import type { Direction, Trial } from './trial.ts';

/** A pruner's answer for a running trial; `rungs` replaces the trial's recorded rung values. */
export interface PruneDecision {
  prune: boolean;
  rungs?: number[];
}

/** A pruner decides from the trial's reported intermediate values and the other trials of the study. */
export interface Pruner {
  readonly name: string;
  decide(trial: Trial, others: readonly Trial[], direction: Direction): PruneDecision;
}

/** Steps a trial reported, ascending. */
export function reportedSteps(trial: Trial): number[] {
  return Object.keys(trial.intermediate).map(Number).sort((a, b) => a - b);
}

/** Percentile with linear interpolation between order statistics (numpy's default). */
export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(position);
  const hi = Math.ceil(position);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (position - lo);
}

export interface MedianPrunerOptions {
  /** Completed trials needed before any pruning (Optuna: 5). */
  startupTrials?: number;
  /** Steps of a trial never pruned (Optuna: 0). */
  warmupSteps?: number;
  /** Prune only at the first step reported in each interval after the warm-up (Optuna: 1). */
  intervalSteps?: number;
  /** Completed trials that must have reported at the step (Optuna: 1). */
  minTrials?: number;
}

/**
 * Optuna's median pruner: at a trial's latest step, prune when its best intermediate value so far is
 * worse than the median of the completed trials' values at that same step. A NaN-only trial is pruned.
 */
export class MedianPruner implements Pruner {
  readonly name = 'median';
  readonly startupTrials: number;
  readonly warmupSteps: number;
  readonly intervalSteps: number;
  readonly minTrials: number;

  constructor(options: MedianPrunerOptions = {}) {
    this.startupTrials = options.startupTrials ?? 5;
    this.warmupSteps = options.warmupSteps ?? 0;
    this.intervalSteps = options.intervalSteps ?? 1;
    this.minTrials = options.minTrials ?? 1;
  }

  decide(trial: Trial, others: readonly Trial[], direction: Direction): PruneDecision {
    const steps = reportedSteps(trial);
    if (steps.length === 0) return { prune: false };
    const step = steps[steps.length - 1]!;
    const finished = others.filter((t) => t.state === 'complete');
    if (finished.length === 0 || finished.length < this.startupTrials) return { prune: false };
    if (step < this.warmupSteps) return { prune: false };
    const nearestPruningStep = Math.floor((step - this.warmupSteps) / this.intervalSteps) * this.intervalSteps + this.warmupSteps;
    const previousStep = steps.length > 1 ? steps[steps.length - 2]! : -1;
    if (previousStep >= nearestPruningStep) return { prune: false };

    const own = steps.map((s) => trial.intermediate[s]!).filter((v) => !Number.isNaN(v));
    if (own.length === 0) return { prune: true };
    const best = direction === 'minimize' ? Math.min(...own) : Math.max(...own);
    const atStep = finished.flatMap((t) => (String(step) in t.intermediate && !Number.isNaN(t.intermediate[step]!) ? [t.intermediate[step]!] : []));
    if (atStep.length < this.minTrials) return { prune: false };
    const median = percentile(atStep, 50);
    return { prune: direction === 'minimize' ? best > median : best < median };
  }
}

export interface SuccessiveHalvingOptions {
  /** Steps (epochs, say) every trial gets before its first rung (required: the resource's unit is the objective's). */
  minResource: number;
  /** Rung k is at minResource * reductionFactor^(k + minEarlyStoppingRate); 1/reductionFactor of trials go on (Optuna: 4). */
  reductionFactor?: number;
  /** Shifts the first rung up (Optuna: 0). */
  minEarlyStoppingRate?: number;
}

/**
 * Asynchronous successive halving (ASHA), as Optuna's: when a trial reaches a rung's step its value
 * there is recorded; it goes on only if that value is within the top 1/reductionFactor of every value
 * recorded at that rung so far (while fewer than reductionFactor trials have reached it, only the
 * best goes on). Nothing waits for a rung to fill, so workers never idle.
 */
export class SuccessiveHalvingPruner implements Pruner {
  readonly name = 'successive-halving';
  readonly minResource: number;
  readonly reductionFactor: number;
  readonly minEarlyStoppingRate: number;

  constructor(options: SuccessiveHalvingOptions) {
    this.minResource = options.minResource;
    this.reductionFactor = options.reductionFactor ?? 4;
    this.minEarlyStoppingRate = options.minEarlyStoppingRate ?? 0;
  }

  rungStep(rung: number): number {
    return this.minResource * this.reductionFactor ** (this.minEarlyStoppingRate + rung);
  }

  decide(trial: Trial, others: readonly Trial[], direction: Direction): PruneDecision {
    const steps = reportedSteps(trial);
    if (steps.length === 0) return { prune: false };
    const step = steps[steps.length - 1]!;
    const value = trial.intermediate[step]!;
    const rungs = [...(trial.rungs ?? [])];
    for (;;) {
      const rung = rungs.length;
      if (step < this.rungStep(rung)) return { prune: false, rungs };
      if (Number.isNaN(value)) return { prune: true, rungs };
      const competing = others.flatMap((t) => (t.rungs && t.rungs.length > rung ? [t.rungs[rung]!] : []));
      competing.push(value);
      rungs.push(value);
      if (!this.promotable(value, competing, direction)) return { prune: true, rungs };
    }
  }

  private promotable(value: number, competing: number[], direction: Direction): boolean {
    let index = Math.floor(competing.length / this.reductionFactor) - 1;
    if (index === -1) index = 0;
    const sorted = [...competing].sort((a, b) => (direction === 'minimize' ? a - b : b - a));
    return direction === 'minimize' ? value <= sorted[index]! : value >= sorted[index]!;
  }
}
