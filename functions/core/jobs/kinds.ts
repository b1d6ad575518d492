import { BadRequestError } from '../platform/errors.ts';
import type { JobRecord, JobState, Json, Placement, StepRecord, StepSpec } from './record.ts';

/**
 * A job kind tells the runtime what its steps do and how its job ends; the runtime knows no kind.
 * Batch (parallel shard steps, `partial` when some fail), quantize (one step), evaluate (a step
 * per chunk, continued across invocations) and the long training, federation and tuning jobs all
 * fit this one shape.
 */
export interface StepContext {
  job: JobRecord;
  step: StepRecord;
  /** The step's input, as enqueued. */
  input: Json | undefined;
  /** Where a previous invocation stopped; undefined on the first. */
  checkpoint: Json | undefined;
  /** Milliseconds left before the step must checkpoint (the invocation's time less a reserve). */
  remainingMs(): number;
  /**
   * Records progress on the job (done of total, a stage, the rate). Throws JobCancelledError once
   * the job is cancelled and LeaseLostError once another worker holds the step: the step stops there.
   */
  progress(done: number, total: number, stage?: string): Promise<void>;
  /** Every step of the job as recorded (for a final step that joins the others' results). */
  steps(): Promise<StepRecord[]>;
  /** Aborted when the worker is stopping: a step that then throws is handed back to the queue, not counted as failed. */
  signal: AbortSignal;
}

export type StepOutcome =
  /** Out of time: the runtime stores the checkpoint and enqueues the same step again. */
  | { continue: Json }
  /**
   * The step is done; `next` are the steps it enqueues (a fan-out, or the next phase); `count` is
   * added to the job's counters in the same write that counts the step, so exactly once.
   */
  | { result?: Json; next?: StepSpec[]; count?: Record<string, number> };

export type StepFunction = (context: StepContext) => Promise<StepOutcome>;

/** How a job ends once every step has finished (or at its first failed step, with `failFast`). */
export interface TerminalDecision {
  state: Extract<JobState, 'succeeded' | 'failed' | 'partial'>;
  result?: Json;
  error?: string;
}

export type TerminalRule = (job: JobRecord, steps: readonly StepRecord[]) => TerminalDecision;

export interface JobKind {
  /** [a-z0-9-]: the `kind` of its records. */
  name: string;
  /** Checks a submission; throws a 4xx error (BadRequestError) for a request it cannot run. */
  parseRequest(body: unknown): Json;
  /** The first steps of a new job. */
  plan(request: Json, job: JobRecord): StepSpec[];
  steps: Record<string, StepFunction>;
  /** A step that runs once every other step has finished, whatever their outcome (batch's in-order merge). */
  finalStep?(request: Json, job: JobRecord): StepSpec;
  /** The queue a job's steps go to (default: the kind's name); for a kind whose jobs run on different workers. */
  queue?(request: Json): string;
  /**
   * Where a job runs, chosen once at submission from `available` (the placements this stack runs),
   * e.g. from the job's estimated size or an option of the request; default `lambda`. A choice not
   * available (a request that asks for the container worker where none runs) is refused with a 400.
   */
  placement?(request: Json, available: readonly Placement[]): Placement | Promise<Placement>;
  /** Names of the job's counters, each starting at 0, that steps add to with `count`. */
  counters?: readonly string[];
  /** Attempts of one step segment before the step fails for good; below the queue's maxReceiveCount. */
  maxAttempts?: number;
  /** true (the default): the first failed step ends the job `failed`, and its other steps do nothing. */
  failFast?: boolean;
  /** Default: `failed` with the first failed step's reason, else `succeeded` with the last step's result. */
  terminal?: TerminalRule;
  /** Called once, by the worker whose write ended the job. */
  onFinished?(job: JobRecord): Promise<void>;
}

/** A failure a step reports with a reason for the user (shown in the job's `error`). */
export class JobStepError extends Error {
  readonly expose = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'JobStepError';
  }
}

/** Thrown by `progress` in a step whose job was cancelled (or ended otherwise, by a failed sibling step). */
export class JobCancelledError extends Error {
  constructor(job: string, state: string) {
    super(`job ${job} is ${state}`);
    this.name = 'JobCancelledError';
  }
}

/** Thrown by `progress` in a step whose lease another worker took (this one was presumed dead). */
export class LeaseLostError extends Error {
  constructor(job: string, step: string) {
    super(`step ${step} of job ${job} is held by another worker`);
    this.name = 'LeaseLostError';
  }
}

export const defaultTerminalRule: TerminalRule = (_job, steps) => {
  const failed = steps.find((s) => s.state === 'failed');
  if (failed) return { state: 'failed', error: `step ${failed.name} failed: ${failed.lastError ?? 'no reason recorded'}` };
  const last = [...steps].sort((a, b) => (a.updated < b.updated ? -1 : a.updated > b.updated ? 1 : 0)).at(-1);
  return { state: 'succeeded', ...(last?.result !== undefined ? { result: last.result } : {}) };
};

const KIND_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** The kinds a runtime runs, by name. */
export class JobKinds {
  private readonly kinds = new Map<string, JobKind>();

  constructor(kinds: readonly JobKind[] = []) {
    for (const kind of kinds) this.register(kind);
  }

  register(kind: JobKind): this {
    if (!KIND_NAME.test(kind.name)) throw new Error(`job kind name ${JSON.stringify(kind.name)} must match ${KIND_NAME.source}`);
    if (this.kinds.has(kind.name)) throw new Error(`job kind '${kind.name}' is registered twice`);
    this.kinds.set(kind.name, kind);
    return this;
  }

  /** The kind of a submission: 400 for one this runtime does not run. */
  get(name: string): JobKind {
    const kind = this.kinds.get(name);
    if (!kind) throw new BadRequestError(`unknown job kind ${JSON.stringify(name.slice(0, 40))}; known: ${[...this.kinds.keys()].join(', ') || 'none'}`);
    return kind;
  }

  has(name: string): boolean {
    return this.kinds.has(name);
  }
}
