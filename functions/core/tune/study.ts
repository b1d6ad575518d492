import * as z from 'zod';
import { BadRequestError, ConflictError, NotFoundError } from '../platform/errors.ts';
import { MedianPruner, SuccessiveHalvingPruner, type Pruner } from './pruners.ts';
import { GpSampler } from './samplers/gp.ts';
import { GridSampler } from './samplers/grid.ts';
import { IncrementalGridSampler } from './samplers/incremental-grid.ts';
import { Nsga2Sampler } from './samplers/nsga2.ts';
import { RandomSampler } from './samplers/random.ts';
import { trialRandom, type Sampler } from './samplers/sampler.ts';
import { TpeSampler } from './samplers/tpe.ts';
import { activeConfiguration, parseSearchSpace, type Configuration, type SearchSpace } from './space.ts';
import {
  compareForObjective,
  constraintSchema,
  isFeasible,
  nonDominatedSort,
  objectiveSchema,
  violation,
  type Direction,
  type Trial,
} from './trial.ts';

const count = z.number().int().positive();
const samplerSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('grid') }),
  z.strictObject({ type: z.literal('incremental-grid'), groups: z.array(z.array(z.string()).min(1)).min(1) }),
  z.strictObject({ type: z.literal('random') }),
  z.strictObject({ type: z.literal('tpe'), startupTrials: count.optional(), eiCandidates: count.optional(), priorWeight: z.number().positive().optional(), multivariate: z.boolean().optional() }),
  z.strictObject({ type: z.literal('gp'), kernel: z.enum(['matern52', 'rbf']).optional(), startupTrials: count.optional(), candidates: count.optional() }),
  z.strictObject({
    type: z.literal('nsga2'),
    populationSize: z.number().int().min(2).optional(),
    crossoverProbability: z.number().min(0).max(1).optional(),
    mutationProbability: z.number().min(0).max(1).optional(),
    sbxEta: z.number().positive().optional(),
  }),
]);

const prunerSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({
    type: z.literal('median'),
    startupTrials: z.number().int().min(0).optional(),
    warmupSteps: z.number().int().min(0).optional(),
    intervalSteps: count.optional(),
    minTrials: count.optional(),
  }),
  z.strictObject({
    type: z.literal('successive-halving'),
    minResource: count,
    reductionFactor: z.number().int().min(2).optional(),
    minEarlyStoppingRate: z.number().int().min(0).optional(),
  }),
]);

/** A study as submitted (the body of POST /v2/studies, less the objective function's own options). */
export const studyConfigSchema = z.strictObject({
  space: z.unknown(),
  objectives: z.array(objectiveSchema).min(1),
  constraints: z.array(constraintSchema).default([]),
  sampler: samplerSchema,
  pruner: prunerSchema.default({ type: 'none' }),
  seed: z.number().int().min(0).max(0xffffffff).default(0),
  /** Trials the study runs at most; a grid also stops when it is enumerated. */
  maxTrials: count.optional(),
  /** Seconds after the study's creation when no new trial starts (trials already running finish). */
  timeBudgetSeconds: count.optional(),
  /**
   * Constant liar (default on): a model-based sampler (TPE, GP) sees every other running trial as
   * complete with the worst value so far, so workers asking at once get configurations apart.
   */
  constantLiar: z.boolean().optional(),
});
export type StudyConfigInput = z.input<typeof studyConfigSchema>;
export type StudyConfig = Omit<z.infer<typeof studyConfigSchema>, 'space'> & { space: SearchSpace };
export type SamplerConfig = z.infer<typeof samplerSchema>;
export type PrunerConfig = z.infer<typeof prunerSchema>;

/** Parses and checks a study's configuration; anything wrong is a BadRequestError naming it. */
export function parseStudyConfig(input: unknown): StudyConfig {
  const parsed = studyConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.join('.');
    throw new BadRequestError(`invalid study: ${path ? `${path}: ` : ''}${issue.message}`);
  }
  const config = { ...parsed.data, space: parseSearchSpace(parsed.data.space) };
  const metrics = config.objectives.map((o) => o.metric);
  const repeated = metrics.find((m, i) => metrics.indexOf(m) !== i);
  if (repeated) throw new BadRequestError(`invalid study: objective '${repeated}' is named twice`);
  const several = config.objectives.length > 1;
  if (several && ['tpe', 'gp', 'incremental-grid'].includes(config.sampler.type)) {
    throw new BadRequestError(`invalid study: sampler '${config.sampler.type}' optimizes one objective; use 'nsga2', 'random' or 'grid' for ${config.objectives.length}`);
  }
  if (several && config.pruner.type !== 'none') throw new BadRequestError(`invalid study: pruner '${config.pruner.type}' needs a single objective`);
  createSampler(config.sampler, config.space);
  return config;
}

export function createSampler(config: SamplerConfig, space: SearchSpace): Sampler {
  switch (config.type) {
    case 'grid': {
      const grid = new GridSampler();
      grid.size(space); // refuses continuous parameters now rather than at the first trial
      return grid;
    }
    case 'incremental-grid': {
      const sampler = new IncrementalGridSampler(config.groups);
      sampler.check(space);
      return sampler;
    }
    case 'random':
      return new RandomSampler();
    case 'tpe':
      return new TpeSampler(config);
    case 'gp':
      return new GpSampler(config);
    case 'nsga2':
      return new Nsga2Sampler(config);
  }
}

export function createPruner(config: PrunerConfig): Pruner | undefined {
  switch (config.type) {
    case 'none':
      return undefined;
    case 'median':
      return new MedianPruner(config);
    case 'successive-halving':
      return new SuccessiveHalvingPruner(config);
  }
}

/** Everything a study is: its configuration and its trials. A worker rebuilds the study from it. */
export interface StudyState {
  config: StudyConfig;
  trials: Trial[];
}

export interface HistoryEntry {
  number: number;
  state: Trial['state'];
  values?: number[];
  feasible: boolean;
  /** Best feasible value of the first objective up to and including this trial (single objective). */
  bestSoFar?: number;
}

/**
 * A study: ask for a trial's configuration, report intermediate values (the pruner may stop it),
 * tell its metrics; the best trial (one objective) or the Pareto front (several), both among
 * feasible trials only. Samplers keep no state, so `Study.fromState` on stored trials continues
 * exactly where any other worker would.
 */
export class Study {
  readonly config: StudyConfig;
  readonly sampler: Sampler;
  readonly pruner: Pruner | undefined;
  private readonly byNumber = new Map<number, Trial>();

  constructor(config: StudyConfig, trials: readonly Trial[] = []) {
    this.config = config;
    this.sampler = createSampler(config.sampler, config.space);
    this.pruner = createPruner(config.pruner);
    for (const t of trials) this.byNumber.set(t.number, structuredClone(t));
  }

  static create(input: unknown): Study {
    return new Study(parseStudyConfig(input));
  }

  static fromState(state: StudyState): Study {
    return new Study(state.config, state.trials);
  }

  get directions(): Direction[] {
    return this.config.objectives.map((o) => o.direction);
  }

  /** Trials in number order. */
  get trials(): Trial[] {
    return [...this.byNumber.values()].sort((a, b) => a.number - b.number);
  }

  /**
   * The configuration trial `number` gets, from the trials other than it; undefined when there is
   * none left. The budget counts every trial but failed ones (a failed trial gives its place back).
   */
  propose(number: number): Configuration | undefined {
    const spent = this.trials.filter((t) => t.number !== number && t.state !== 'failed').length;
    if (this.config.maxTrials !== undefined && spent >= this.config.maxTrials) return undefined;
    const others = this.trials.filter((t) => t.number !== number);
    const params = this.sampler.sample({
      space: this.config.space,
      directions: this.directions,
      constraints: this.config.constraints,
      trials: this.config.constantLiar !== false && LIAR_SAMPLERS.has(this.config.sampler.type) ? withLies(others, this.directions) : others,
      trialNumber: number,
      random: trialRandom(this.config.seed, number),
    });
    return params && activeConfiguration(this.config.space, params);
  }

  /** Starts the next trial (or trial `number`, as a shared counter gave it); undefined when the study is done. */
  ask(number = this.nextNumber()): Trial | undefined {
    if (this.byNumber.has(number)) throw new ConflictError(`trial ${number} already exists`);
    const params = this.propose(number);
    if (!params) return undefined;
    const trial: Trial = { number, params, state: 'running', intermediate: {} };
    this.byNumber.set(number, trial);
    return structuredClone(trial);
  }

  nextNumber(): number {
    return this.byNumber.size === 0 ? 0 : Math.max(...this.byNumber.keys()) + 1;
  }

  /** Records an intermediate value; when the pruner says so the trial ends as pruned. */
  report(number: number, step: number, value: number): { prune: boolean } {
    const trial = this.running(number);
    if (!Number.isInteger(step) || step < 0) throw new BadRequestError(`trial ${number}: step must be an integer of at least 0, got ${step}`);
    trial.intermediate[String(step)] = value;
    if (!this.pruner) return { prune: false };
    const others = this.trials.filter((t) => t.number !== number);
    const decision = this.pruner.decide(trial, others, this.directions[0]!);
    if (decision.rungs) trial.rungs = decision.rungs;
    if (decision.prune) trial.state = 'pruned';
    return { prune: decision.prune };
  }

  /** Completes a trial with the metrics its objective measured (every objective and constraint metric). */
  tell(number: number, metrics: Record<string, number>): Trial {
    const trial = this.running(number);
    const { values, violations } = evaluateMetrics(this.config, number, metrics);
    Object.assign(trial, { state: 'complete', metrics: { ...metrics }, values, violations });
    return structuredClone(trial);
  }

  fail(number: number): void {
    this.running(number).state = 'failed';
  }

  /** The best feasible complete trial of a single-objective study; undefined when there is none. */
  bestTrial(): Trial | undefined {
    if (this.directions.length > 1) throw new BadRequestError('a study with several objectives has a Pareto front, not a best trial');
    const feasible = this.trials.filter((t) => t.state === 'complete' && isFeasible(t));
    return feasible.sort((a, b) => compareForObjective(a, b, this.directions[0]!))[0];
  }

  /** Feasible complete trials no other feasible trial dominates, in number order. */
  paretoFront(): Trial[] {
    const feasible = this.trials.filter((t) => t.state === 'complete' && isFeasible(t));
    const first = nonDominatedSort(feasible, this.directions)[0] ?? [];
    return first.map((i) => feasible[i]!).sort((a, b) => a.number - b.number);
  }

  history(): HistoryEntry[] {
    const single = this.directions.length === 1;
    let best: Trial | undefined;
    return this.trials.map((t) => {
      const feasible = t.state === 'complete' && isFeasible(t);
      if (single && feasible && (!best || compareForObjective(t, best, this.directions[0]!) < 0)) best = t;
      return { number: t.number, state: t.state, values: t.values, feasible, ...(single && best ? { bestSoFar: best.values![0]! } : {}) };
    });
  }

  toState(): StudyState {
    return { config: this.config, trials: this.trials.map((t) => structuredClone(t)) };
  }

  private running(number: number): Trial {
    const trial = this.byNumber.get(number);
    if (!trial) throw new NotFoundError(`trial ${number} does not exist`);
    if (trial.state !== 'running') throw new ConflictError(`trial ${number} is ${trial.state}, not running`);
    return trial;
  }
}

const LIAR_SAMPLERS = new Set(['tpe', 'gp']);

/**
 * The trials as a model-based sampler sees them under the constant liar: each running trial is told
 * the worst value of the completed ones (and no violation), so its neighbourhood looks bad and a
 * parallel ask goes elsewhere. Nothing changes before the first trial completes.
 */
export function withLies(trials: readonly Trial[], directions: readonly Direction[]): Trial[] {
  const done = trials.filter((t) => t.state === 'complete' && t.values !== undefined);
  if (done.length === 0) return [...trials];
  const worst = directions.map((d, i) => {
    const values = done.map((t) => t.values![i]!);
    return d === 'maximize' ? Math.min(...values) : Math.max(...values);
  });
  const violations = done[0]!.violations?.map(() => 0) ?? [];
  return trials.map((t) => (t.state === 'running' ? { ...t, state: 'complete', values: [...worst], violations: [...violations] } : t));
}

/** Objective values and constraint violations from a trial's metrics; a missing or non-finite metric is refused. */
export function evaluateMetrics(config: Pick<StudyConfig, 'objectives' | 'constraints'>, number: number, metrics: Record<string, number>) {
  const read = (metric: string) => {
    const v = metrics[metric];
    if (v === undefined) throw new BadRequestError(`trial ${number}: metric '${metric}' is missing`);
    if (!Number.isFinite(v)) throw new BadRequestError(`trial ${number}: metric '${metric}' is ${v}, not a finite number`);
    return v;
  };
  return {
    values: config.objectives.map((o) => read(o.metric)),
    violations: config.constraints.map((c) => violation(c, read(c.metric))),
  };
}
