import { totalViolation, type Direction, type Trial } from '../trial.ts';

/**
 * One trial as TPE ranks it, Optuna 3.1's `_get_observation_pairs` for one objective: a complete
 * trial scores (-inf, loss); a pruned one (-last step, its loss there), so among pruned trials the
 * one that got further ranks first, and every complete trial before them all; a pruned trial with no
 * intermediate value scores (1, 0), a NaN value +inf. The loss is the value, negated to maximize.
 */
export interface Observation {
  trial: Trial;
  step: number;
  loss: number;
  /** Total constraint violation; a pruned trial has no constraint values, which Optuna ranks as +inf. */
  violation: number;
}

/** The trials TPE learns from (complete and pruned, in number order), each with its score. */
export function observations(trials: readonly Trial[], direction: Direction): Observation[] {
  const sign = direction === 'maximize' ? -1 : 1;
  const constrained = trials.some((t) => t.state === 'complete' && (t.violations?.length ?? 0) > 0);
  const out: Observation[] = [];
  for (const trial of [...trials].sort((a, b) => a.number - b.number)) {
    if (trial.state === 'complete' && trial.values !== undefined) {
      out.push({ trial, step: -Infinity, loss: sign * trial.values[0]!, violation: totalViolation(trial) });
    } else if (trial.state === 'pruned') {
      const steps = Object.keys(trial.intermediate).map(Number);
      const violation = constrained ? Infinity : 0;
      if (steps.length === 0) {
        out.push({ trial, step: 1, loss: 0, violation });
        continue;
      }
      const last = Math.max(...steps);
      const value = trial.intermediate[String(last)]!;
      out.push({ trial, step: -last, loss: Number.isNaN(value) ? Infinity : sign * value, violation });
    }
  }
  return out;
}

/**
 * Optuna's `_split_observation_pairs` for one objective: the best `nBelow` (feasible first, then by
 * smaller violation; then lexicographically by (step, loss); ties by trial number) and the rest, each
 * back in number order.
 */
export function splitObservations(observed: readonly Observation[], nBelow: number): { below: Trial[]; above: Trial[] } {
  const ranked = [...observed].sort((a, b) => a.violation - b.violation || a.step - b.step || a.loss - b.loss || a.trial.number - b.trial.number);
  const byNumber = (a: Trial, b: Trial) => a.number - b.number;
  return { below: ranked.slice(0, nBelow).map((o) => o.trial).sort(byNumber), above: ranked.slice(nBelow).map((o) => o.trial).sort(byNumber) };
}
