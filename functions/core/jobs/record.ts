/**
 * The job runtime's records, one DynamoDB partition per job in the registry table:
 *   JOB#<id> / JOB            the job: kind, state, idempotency key and request hash, step counters,
 *                             progress, attempts, result or error, parent reference
 *   JOB#<id> / STEP#<name>    one step: its handler, input and checkpoint, the owner lease, attempts
 * Every change is a conditional write on one item (dynalite has no transactions; none are needed).
 */

/** queued → running → succeeded | failed | partial | cancelled; a terminal state is final. */
export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'partial', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'partial', 'cancelled'];
export const isTerminal = (state: JobState): boolean => TERMINAL_STATES.includes(state);

/** JSON values a record can hold (DynamoDB maps, lists, strings, numbers, booleans, null). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface JobProgress {
  done: number;
  total: number;
  /** Items per second over the current step's run in this invocation. */
  ratePerSecond: number;
  /** What the job is doing now, for the CLI's progress line. */
  stage?: string;
  updated: string;
}

/**
 * Where a job's steps run: on Lambda (its kind's queue and worker, continued across the 15-minute
 * limit) or on the container worker (the one container queue, for every kind, with no time limit).
 */
export const PLACEMENTS = ['lambda', 'container'] as const;
export type Placement = (typeof PLACEMENTS)[number];
/** The queue of every job placed on the container worker, whatever its kind. */
export const CONTAINER_QUEUE = 'container';

export interface JobParent {
  model: string;
  version?: string;
}

export interface JobRecord {
  id: string;
  kind: string;
  state: JobState;
  /** The client's idempotency key, when it gave one. */
  key?: string;
  /** sha256 of the canonical request: the same key with another request is refused. */
  requestHash: string;
  request: Json;
  parent?: JobParent;
  /** The queue its steps go to, when its kind has several (batch: Lambda or GPU workers); else the kind's. */
  queue?: string;
  /** Where its kind placed it at submission, for a kind that places its jobs; `container`: every step on the container queue. */
  placement?: Placement;
  /** The kind's final step: planned with the job, sent once every other step has finished (a fan-in). */
  finalStep?: string;
  /** The kind's counters (rows scored, ...): each step's `count` is added once, when the step is counted. */
  counters?: Record<string, number>;
  /** A submission refused before it could run (an upload with bad options): failed, with no steps; a later submission under its id replaces it. */
  refused?: boolean;
  /** Step attempts taken, every step and every retry. */
  attempts: number;
  stepsTotal: number;
  stepsSucceeded: number;
  stepsFailed: number;
  progress?: JobProgress;
  result?: Json;
  error?: string;
  created: string;
  updated: string;
  /** When its first step began. */
  started?: string;
  finished?: string;
}

export type StepState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface StepRecord {
  job: string;
  name: string;
  /** The kind's step function that runs it. */
  handler: string;
  input?: Json;
  /** Where the step resumes: written by a step that ran out of time. */
  checkpoint?: Json;
  state: StepState;
  /** The worker that holds the lease, until `leaseUntil` (epoch ms); 0 when nobody holds it. */
  owner?: string;
  leaseUntil: number;
  /** Attempts of the current segment (a checkpoint starts a new segment at 0). */
  attempts: number;
  /** Invocations the step has spanned so far, one more per checkpoint. */
  segments: number;
  lastError?: string;
  result?: Json;
  /** What it adds to the job's counters (kept so a redelivery can finish its bookkeeping). */
  count?: Record<string, number>;
  /** Steps this one enqueued when it finished (kept so a redelivery can finish its bookkeeping). */
  next?: string[];
  updated: string;
}

/** A step to enqueue: a name unique within the job, the kind's handler, its input. */
export interface StepSpec {
  name: string;
  handler: string;
  input?: Json;
}

/** The message on a kind's step queue. */
export interface StepMessage {
  job: string;
  step: string;
}

/** What the API and the CLI show: the record as stored, less the runtime's bookkeeping. */
export function jobView(job: JobRecord & { finishedSteps?: unknown }) {
  const { finishedSteps: _finished, ...rest } = job;
  return { ...rest, links: { self: `/v2/jobs/${job.id}`, cancel: `/v2/jobs/${job.id}/cancel` } };
}
export type JobView = ReturnType<typeof jobView>;
