import * as z from 'zod';
import { BadRequestError } from '../platform/errors.ts';
import type { Configuration } from './space.ts';

export type Direction = 'minimize' | 'maximize';

export const objectiveSchema = z.strictObject({
  metric: z.string().min(1),
  direction: z.enum(['minimize', 'maximize']),
});
export type Objective = z.infer<typeof objectiveSchema>;

/** `metric <= bound` or `metric >= bound`; a trial that breaks one is infeasible. */
export const constraintSchema = z.strictObject({
  metric: z.string().min(1),
  op: z.enum(['<=', '>=']),
  bound: z.number(),
});
export type Constraint = z.infer<typeof constraintSchema>;

export type TrialState = 'running' | 'complete' | 'pruned' | 'failed';

/** One trial as samplers, pruners and storage see it: plain data, so it serializes as it is. */
export interface Trial {
  number: number;
  params: Configuration;
  state: TrialState;
  /** Metrics the objective measured (complete trials). */
  metrics?: Record<string, number>;
  /** Objective values, in the order of the study's objectives (complete trials). */
  values?: number[];
  /** Violation of each constraint, 0 when it holds (complete trials). */
  violations?: number[];
  /** Reported intermediate values by step (for pruning). */
  intermediate: Record<string, number>;
  /** Values recorded at each successive-halving rung this trial reached. */
  rungs?: number[];
  /** Why a failed trial failed (its objective's error, or its lease running out). */
  error?: string;
}

/** Parses "p99_ms:min, accuracy:max" (the CLI's form). */
export function parseObjectives(text: string): Objective[] {
  const objectives = text.split(',').map((part) => part.trim()).filter(Boolean).map((part) => {
    const match = /^([A-Za-z_][A-Za-z0-9_.-]*)\s*:\s*(min|max|minimize|maximize)$/.exec(part);
    if (!match) throw new BadRequestError(`objective '${part}' must be <metric>:min or <metric>:max`);
    return { metric: match[1]!, direction: match[2]!.startsWith('min') ? 'minimize' : 'maximize' } as Objective;
  });
  if (objectives.length === 0) throw new BadRequestError('at least one objective is required');
  return objectives;
}

/** Parses "accuracy_drop<=0.5". */
export function parseConstraint(text: string): Constraint {
  const match = /^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(<=|>=)\s*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*$/i.exec(text);
  if (!match) throw new BadRequestError(`constraint '${text}' must be <metric><=<number> or <metric>>=<number>`);
  return { metric: match[1]!, op: match[2] as Constraint['op'], bound: Number(match[3]) };
}

export function violation(constraint: Constraint, value: number): number {
  return Math.max(0, constraint.op === '<=' ? value - constraint.bound : constraint.bound - value);
}

export const isFeasible = (t: Trial) => (t.violations ?? []).every((v) => v === 0);
export const totalViolation = (t: Trial) => (t.violations ?? []).reduce((a, b) => a + b, 0);

/** Values turned so that smaller is better for every objective. */
export function losses(values: readonly number[], directions: readonly Direction[]): number[] {
  return values.map((v, i) => (directions[i] === 'maximize' ? -v : v));
}

/** a Pareto-dominates b (both as losses): no worse anywhere, better somewhere. */
export function dominates(a: readonly number[], b: readonly number[]): boolean {
  let better = false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]! > b[i]!) return false;
    if (a[i]! < b[i]!) better = true;
  }
  return better;
}

/**
 * Deb's constrained domination: a feasible trial beats an infeasible one, of two infeasible ones the
 * smaller total violation wins, two feasible ones compare by Pareto domination.
 */
export function constrainedDominates(a: Trial, b: Trial, directions: readonly Direction[]): boolean {
  const fa = isFeasible(a);
  const fb = isFeasible(b);
  if (fa !== fb) return fa;
  if (!fa) return totalViolation(a) < totalViolation(b);
  return dominates(losses(a.values!, directions), losses(b.values!, directions));
}

/** Non-dominated fronts, best first (Deb's fast non-dominated sort); entries are indices into trials. */
export function nonDominatedSort(trials: readonly Trial[], directions: readonly Direction[]): number[][] {
  const n = trials.length;
  const dominatedBy = Array.from({ length: n }, () => [] as number[]);
  const dominationCount = new Array<number>(n).fill(0);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (constrainedDominates(trials[i]!, trials[j]!, directions)) {
        dominatedBy[i]!.push(j);
        dominationCount[j]!++;
      } else if (constrainedDominates(trials[j]!, trials[i]!, directions)) {
        dominatedBy[j]!.push(i);
        dominationCount[i]!++;
      }
    }
  }
  const fronts: number[][] = [];
  let current = dominationCount.flatMap((c, i) => (c === 0 ? [i] : []));
  while (current.length > 0) {
    fronts.push(current);
    const next: number[] = [];
    for (const i of current) {
      for (const j of dominatedBy[i]!) if (--dominationCount[j]! === 0) next.push(j);
    }
    current = next.sort((a, b) => a - b);
  }
  return fronts;
}

/**
 * Crowding distance of each member of one front: the ends of every objective get Infinity, the
 * others the sum over objectives of the gap between their neighbours, over that objective's range.
 */
export function crowdingDistances(values: readonly (readonly number[])[]): number[] {
  const n = values.length;
  const distance = new Array<number>(n).fill(0);
  if (n === 0) return distance;
  const m = values[0]!.length;
  for (let k = 0; k < m; k++) {
    const order = [...values.keys()].sort((a, b) => values[a]![k]! - values[b]![k]! || a - b);
    const lo = values[order[0]!]![k]!;
    const hi = values[order[n - 1]!]![k]!;
    distance[order[0]!] = Infinity;
    distance[order[n - 1]!] = Infinity;
    if (hi === lo) continue;
    for (let r = 1; r < n - 1; r++) {
      distance[order[r]!]! += (values[order[r + 1]!]![k]! - values[order[r - 1]!]![k]!) / (hi - lo);
    }
  }
  return distance;
}

/**
 * Orders trials for one objective, best first: feasible before infeasible, infeasible by total
 * violation, then by the objective, then by trial number (so ties resolve the same everywhere).
 */
export function compareForObjective(a: Trial, b: Trial, direction: Direction, index = 0): number {
  const va = totalViolation(a);
  const vb = totalViolation(b);
  if (va !== vb) return va - vb;
  const la = direction === 'maximize' ? -a.values![index]! : a.values![index]!;
  const lb = direction === 'maximize' ? -b.values![index]! : b.values![index]!;
  return la - lb || a.number - b.number;
}
