/**
 * A study's report (report.json): its optimization history, parameter importances, the Pareto front
 * (several objectives) or the best trial (one), and the best configurations.
 */
import { isActive, type SearchSpace } from './space.ts';
import type { Study } from './study.ts';
import { compareForObjective, isFeasible, type Direction, type Trial } from './trial.ts';

export interface ReportTrial {
  number: number;
  state: Trial['state'];
  params: Trial['params'];
  metrics?: Record<string, number>;
  values?: number[];
  feasible: boolean;
  /** Best feasible value of the first objective so far (one objective). */
  bestSoFar?: number;
  /** Intermediate values by step (the last reported one ended a pruned trial). */
  intermediate: Record<string, number>;
  error?: string;
}

export interface Importance {
  parameter: string;
  /** Share of the objective's variance its marginal explains, normalized to sum to 1 over parameters. */
  importance: number;
}

export const IMPORTANCE_METHOD =
  "first-order variance share (correlation ratio, eta squared) of each parameter's marginal over complete feasible trials: numeric parameters binned into at most 4 quantile bins, categorical ones by choice, an inactive parameter as its own group; normalized to sum to 1";

export interface StudyReport {
  study: string;
  job?: string;
  generated: string;
  objective: { type: string; options: unknown };
  objectives: { metric: string; direction: Direction }[];
  constraints: { metric: string; op: string; bound: number }[];
  sampler: string;
  pruner: string;
  budget: { maxTrials?: number; timeBudgetSeconds?: number };
  counts: Record<Trial['state'], number> & { total: number };
  history: ReportTrial[];
  importances: { method: string; byObjective: { metric: string; values: Importance[] }[] };
  /** The best feasible trial (one objective). */
  best?: ReportTrial;
  /** Feasible trials no other feasible trial dominates (several objectives). */
  paretoFront?: ReportTrial[];
  /** The best feasible configurations, best first (one objective: by value; several: the front). */
  bestConfigurations: ReportTrial[];
  /** Facts the objective states with its figures (the Lambda price the serving cost uses). */
  notes?: Record<string, unknown>;
  registered?: { model: string; version: string };
}

/** Each parameter's share of the variance of `value` over the trials (see IMPORTANCE_METHOD). */
export function parameterImportances(space: SearchSpace, trials: readonly Trial[], value: (t: Trial) => number): Importance[] {
  const names = Object.keys(space.parameters);
  const ys = trials.map(value);
  const mean = ys.reduce((a, b) => a + b, 0) / Math.max(1, ys.length);
  const total = ys.reduce((a, y) => a + (y - mean) ** 2, 0);
  const raw = names.map((name) => {
    if (trials.length < 2 || total === 0) return 0;
    const p = space.parameters[name]!;
    const groupOf = groupFunction(p.type === 'categorical', trials.map((t) => t.params[name]).filter((v): v is number => typeof v === 'number'));
    const groups = new Map<string, number[]>();
    trials.forEach((t, i) => {
      const key = isActive(p, t.params) && name in t.params ? groupOf(t.params[name]!) : 'inactive';
      groups.set(key, [...(groups.get(key) ?? []), ys[i]!]);
    });
    let between = 0;
    for (const members of groups.values()) {
      const m = members.reduce((a, b) => a + b, 0) / members.length;
      between += members.length * (m - mean) ** 2;
    }
    return between / total;
  });
  const sum = raw.reduce((a, b) => a + b, 0);
  return names.map((parameter, i) => ({ parameter, importance: sum > 0 ? raw[i]! / sum : 0 })).sort((a, b) => b.importance - a.importance || a.parameter.localeCompare(b.parameter));
}

/** A numeric value's quantile bin (at most 4 bins, from the distinct values seen), or a choice as it is. */
function groupFunction(categorical: boolean, numbers: number[]): (v: unknown) => string {
  if (categorical) return (v) => JSON.stringify(v);
  const distinct = [...new Set(numbers)].sort((a, b) => a - b);
  if (distinct.length <= 4) return (v) => String(v);
  const edges = [1, 2, 3].map((q) => distinct[Math.floor((q * distinct.length) / 4)]!);
  return (v) => `bin${edges.filter((e) => (v as number) >= e).length}`;
}

export function buildStudyReport(input: { study: string; job?: string; objective: { type: string; options: unknown }; state: Study; notes?: Record<string, unknown>; registered?: { model: string; version: string }; now?: () => Date }): StudyReport {
  const { state: study } = input;
  const config = study.config;
  const history = study.history();
  const byNumber = new Map(study.trials.map((t) => [t.number, t]));
  const view = (t: Trial): ReportTrial => {
    const h = history.find((e) => e.number === t.number)!;
    return {
      number: t.number,
      state: t.state,
      params: t.params,
      ...(t.metrics ? { metrics: t.metrics } : {}),
      ...(t.values ? { values: t.values } : {}),
      feasible: h.feasible,
      ...(h.bestSoFar !== undefined ? { bestSoFar: h.bestSoFar } : {}),
      intermediate: t.intermediate,
      ...(t.error ? { error: t.error } : {}),
    };
  };
  const trials = study.trials;
  const counts = { running: 0, complete: 0, pruned: 0, failed: 0, total: trials.length };
  for (const t of trials) counts[t.state]++;
  const feasible = trials.filter((t) => t.state === 'complete' && isFeasible(t));
  const single = config.objectives.length === 1;
  const best = single ? study.bestTrial() : undefined;
  const front = single ? undefined : study.paretoFront();
  const direction = config.objectives[0]!.direction;
  return {
    study: input.study,
    ...(input.job ? { job: input.job } : {}),
    generated: (input.now ?? (() => new Date()))().toISOString(),
    objective: input.objective,
    objectives: config.objectives,
    constraints: config.constraints,
    sampler: config.sampler.type,
    pruner: config.pruner.type,
    budget: { ...(config.maxTrials !== undefined ? { maxTrials: config.maxTrials } : {}), ...(config.timeBudgetSeconds !== undefined ? { timeBudgetSeconds: config.timeBudgetSeconds } : {}) },
    counts,
    history: trials.map(view),
    importances: {
      method: IMPORTANCE_METHOD,
      byObjective: config.objectives.map((o, i) => ({ metric: o.metric, values: parameterImportances(config.space, feasible, (t) => t.values![i]!) })),
    },
    ...(best ? { best: view(byNumber.get(best.number)!) } : {}),
    ...(front ? { paretoFront: front.map(view) } : {}),
    bestConfigurations: single ? [...feasible].sort((a, b) => compareForObjective(a, b, direction)).slice(0, 5).map(view) : front!.map(view),
    ...(input.notes ? { notes: input.notes } : {}),
    ...(input.registered ? { registered: input.registered } : {}),
  };
}
