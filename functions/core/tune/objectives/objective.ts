import { BadRequestError } from '../../platform/errors.ts';
import type { Json } from '../../jobs/record.ts';
import type { ModelRepository } from '../../registry/repository.ts';
import type { ModelManifest } from '../../artifacts/manifest.ts';
import { matchDatasetToModel, readDatasetManifest, type DatasetManifest } from '../../evaluate/datasets.ts';
import type { Configuration, SearchSpace } from '../space.ts';

/** What a running trial may do besides measuring: report intermediate values (the pruner may stop it). */
export interface TrialIo {
  report(step: number, value: number): Promise<{ prune: boolean }>;
}

export type TrialOutcome =
  /** Every metric the objective measures; `artifact` is the trial's model in the bucket, when it made one. */
  | { metrics: Record<string, number>; artifact?: string }
  /** Stopped by the pruner at its last reported step. */
  | { pruned: true };

/** An objective prepared in one worker invocation: loads what every trial shares once. */
export interface PreparedObjective {
  run(params: Configuration, trialNumber: number, io: TrialIo): Promise<TrialOutcome>;
}

export interface ObjectiveContext {
  store: ModelRepository;
  /** The job running the study: artifacts go under jobs/<job>/. */
  job: string;
}

/**
 * An objective the tune kind runs: it checks its options and the study's space and metrics when the
 * study is submitted (a 400 naming what is wrong), and measures one configuration per trial.
 */
export interface ObjectiveDefinition {
  type: string;
  /** Metrics every complete trial reports: objectives and constraints may name only these. */
  metrics: readonly string[];
  /** Parameters the objective reads from a configuration; a space may hold only these. */
  parameters: readonly string[];
  parseOptions(input: unknown): Json;
  /** At submission: the model version and data set exist and fit each other and the space (404 / 400 otherwise). */
  checkReferences(options: Json, store: ModelRepository, space: SearchSpace): Promise<void>;
  /** At submission, before anything is read: the space's ranges and choices are values the objective accepts (400 naming the parameter). */
  checkSpace?(space: SearchSpace, options: Json): void;
  /** The space searched when the request gives none. */
  defaultSpace(options: Json): unknown;
  prepare(options: Json, context: ObjectiveContext): Promise<PreparedObjective>;
  /**
   * Registers the winning trial's model as a new version of the objective's model (never routed:
   * a new version is served only when asked for by number until it is promoted).
   */
  registerWinner(options: Json, trial: { number: number; params: Configuration; artifact?: string }, context: ObjectiveContext & { study: string }): Promise<{ model: string; version: string }>;
}

/**
 * What both objectives check at submission: the model version exists (404), the data set exists
 * (404) and fits the model, and its rows are labelled (400 with `refusal`'s message otherwise).
 */
export async function checkLabelledReferences(
  store: ModelRepository,
  options: { model: string; version: string; dataset: string },
  refusal: (labels: DatasetManifest['labels']) => string,
): Promise<{ manifest: ModelManifest; dataset: DatasetManifest }> {
  const manifest = await store.getManifest(options.model, options.version);
  const dataset = await readDatasetManifest(store, options.dataset);
  matchDatasetToModel(dataset, manifest);
  if (dataset.labels !== 'label') throw new BadRequestError(refusal(dataset.labels));
  return { manifest, dataset };
}

/** Refuses a space with a parameter the objective does not read, naming it and the ones it does. */
export function checkParameters(objective: ObjectiveDefinition, space: SearchSpace): void {
  for (const name of Object.keys(space.parameters)) {
    if (!objective.parameters.includes(name)) {
      throw new BadRequestError(`invalid search space: the ${objective.type} objective has no parameter '${name}'; it reads ${objective.parameters.join(', ')}`);
    }
  }
}

/** Refuses an objective or constraint on a metric the objective does not measure. */
export function checkMetrics(objective: ObjectiveDefinition, names: readonly string[]): void {
  for (const name of names) {
    if (!objective.metrics.includes(name)) {
      throw new BadRequestError(`invalid study: the ${objective.type} objective measures no metric '${name}'; it measures ${objective.metrics.join(', ')}`);
    }
  }
}

/** Zod issues as one 400 message prefixed with what was being read. */
export function zodRefusal(what: string, error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }): BadRequestError {
  const issue = error.issues[0]!;
  const path = issue.path.map(String).join('.');
  return new BadRequestError(`invalid ${what}: ${path ? `${path}: ` : ''}${issue.message}`);
}
