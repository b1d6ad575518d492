import { createHash, randomBytes } from 'node:crypto';
import { BadRequestError, ConflictError } from '../platform/errors.ts';
import { assertValidName, isValidName } from '../artifacts/names.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { cancelJob, readJob } from './control.ts';
import type { JobTable } from './job-table.ts';
import { defaultTerminalRule, JobCancelledError, type JobKind, type JobKinds, LeaseLostError, type StepContext, type StepOutcome, type TerminalDecision } from './kinds.ts';
import { CONTAINER_QUEUE, isTerminal, type JobParent, type JobRecord, type Json, type Placement, type StepMessage, type StepRecord, type StepSpec } from './record.ts';
import type { StepQueue } from './step-queue.ts';

type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

export interface JobRuntimeOptions {
  table: JobTable;
  kinds: JobKinds;
  queue: StepQueue;
  /** The step queues' visibility timeout: a step lease lasts as long, and both are renewed together. */
  visibilitySeconds: number;
  /**
   * The placements this stack runs (default `lambda` only): with `container`, a kind may place a job
   * on the container worker, and every message of that job goes to the queue named CONTAINER_QUEUE.
   */
  placements?: readonly Placement[];
  /** How long a failed attempt waits before SQS hands it out again. */
  retryDelaySeconds?: number;
  /** Time kept back from the invocation's remaining time to checkpoint and enqueue. */
  reserveMs?: number;
  /**
   * A duplicate submission of a job still queued sends its first steps again only once the job has
   * been queued this long (default 0: at once), so concurrent duplicates do not multiply messages.
   */
  resendQueuedAfterMs?: number;
  now?: () => number;
  log?: Log;
}

/** One delivery of a step message: the time its invocation has left, and the handle to extend it. */
export interface StepDelivery {
  receiptHandle?: string;
  remainingMs(): number;
  /** Aborted when the worker stops (a container told to scale in): the step is handed back, not failed. */
  signal?: AbortSignal;
}

/** What a delivery did; every outcome but a retry deletes the message. */
export type StepRunOutcome =
  | 'succeeded'
  | 'failed'
  | 'continued'
  | 'cancelled'
  | 'already-finished'
  | 'job-ended'
  | 'unknown-job'
  | 'unknown-step';

/** Step records written at once when a job starts (a batch job plans up to 10,000 shards). */
const STEP_WRITE_CONCURRENCY = 16;

/** Thrown for a delivery SQS must hand out again (a failed attempt, or a step another worker holds). */
export class StepRetryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StepRetryError';
  }
}

/** Thrown for a step handed back because its worker is stopping: visible again at once, for another worker. */
export class StepReleasedError extends StepRetryError {
  constructor(message: string) {
    super(message);
    this.name = 'StepReleasedError';
  }
}

/**
 * Another worker took the step while this one ran (its lease had run out). The message is not
 * deleted: it may be the new owner's own delivery, which only the worker that finishes may end.
 */
function leaseLost(job: string, step: string): never {
  throw new StepRetryError(`step ${step} of job ${job} is now held by another worker; this attempt's work is dropped`);
}

export interface SubmitRequest {
  kind: string;
  request: unknown;
  /** Idempotency key: the same key and request give the same job; the same key and another request, 409. */
  key?: string;
  /** The job's id, for a kind that names its jobs itself (a batch upload by its file name); else derived from the key. */
  id?: string;
  parent?: JobParent;
}

const KEY_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const MAX_JSON_BYTES = 64 * 1024;
const DEFAULT_MAX_ATTEMPTS = 3;

/** JSON with its object keys sorted, so equal requests hash equally whatever order they came in. */
function canonical(value: unknown): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(sort(value));
}

/** A step a kind planned: a name that can be a key, an input that fits the record. */
function assertStep(spec: StepSpec): void {
  if (!isValidName(spec.name)) throw new Error(`step name ${JSON.stringify(spec.name.slice(0, 80))} must match [a-z0-9][a-z0-9._-]{0,63}`);
  if (spec.input !== undefined) assertSmall(`the input of step ${spec.name}`, spec.input);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The id of the job submitted under an idempotency key: a kind can find its job again from the key alone. */
export const jobIdForKey = (kind: string, key: string): string => `j-${sha256(`${kind}\n${key}`).slice(0, 32)}`;

function assertSmall(what: string, value: unknown): void {
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? '');
  if (bytes > MAX_JSON_BYTES) throw new BadRequestError(`${what} is ${bytes} bytes; at most ${MAX_JSON_BYTES} fit in the job record (larger state goes to S3 under jobs/<job>/)`);
}

/**
 * The one job runtime: submission (idempotent by key), steps delivered by SQS and run under a lease,
 * retries bounded per step, continuation from a checkpoint across invocations, cancel, and one
 * terminal transition per job. Kinds plug in through JobKinds; nothing here knows one.
 */
export class JobRuntime {
  private readonly table: JobTable;
  private readonly kinds: JobKinds;
  private readonly queue: StepQueue;
  private readonly visibilitySeconds: number;
  private readonly placements: readonly Placement[];
  private readonly retryDelaySeconds: number;
  private readonly reserveMs: number;
  private readonly resendQueuedAfterMs: number;
  private readonly now: () => number;
  private readonly log: Log;

  constructor(options: JobRuntimeOptions) {
    this.table = options.table;
    this.kinds = options.kinds;
    this.queue = options.queue;
    this.visibilitySeconds = options.visibilitySeconds;
    this.placements = options.placements ?? ['lambda'];
    this.retryDelaySeconds = options.retryDelaySeconds ?? 10;
    this.reserveMs = options.reserveMs ?? 30_000;
    this.resendQueuedAfterMs = options.resendQueuedAfterMs ?? 0;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => undefined);
  }

  /** The job, or 404; 400 for an id that is not a valid name. */
  get(id: string): Promise<JobRecord> {
    return readJob(this.table, id);
  }

  /**
   * Where a job of this kind and request would run, or the 400 its submission would get, with
   * nothing written: for a service that records something of its own before it submits (a study).
   */
  async place(kindName: string, body: Json): Promise<Placement | undefined> {
    const kind = this.kinds.get(kindName);
    return this.placementOf(kind, kind.parseRequest(body));
  }

  private async placementOf(kind: JobKind, request: Json): Promise<Placement | undefined> {
    const placement = kind.placement ? await kind.placement(request, this.placements) : undefined;
    if (placement !== undefined && !this.placements.includes(placement)) {
      throw new BadRequestError(`a ${kind.name} job cannot be placed on '${placement}': this stack runs ${this.placements.join(' and ')} workers only`);
    }
    return placement;
  }

  async submit(submission: SubmitRequest): Promise<{ job: JobRecord; created: boolean }> {
    const kind = this.kinds.get(submission.kind);
    if (submission.key !== undefined && !KEY_PATTERN.test(submission.key)) {
      throw new BadRequestError(`invalid idempotency key ${JSON.stringify(submission.key.slice(0, 40))}: must match ${KEY_PATTERN.source}`);
    }
    if (submission.parent) {
      assertValidName(submission.parent.model, 'model name');
      if (submission.parent.version !== undefined) assertValidName(submission.parent.version, 'version');
    }
    const request = kind.parseRequest(submission.request);
    assertSmall('the job request', request);
    const placement = await this.placementOf(kind, request);
    const requestHash = sha256(canonical({ kind: kind.name, request, parent: submission.parent ?? null }));
    if (submission.id !== undefined) assertValidName(submission.id, 'job id');
    const id = submission.id ?? (submission.key !== undefined ? jobIdForKey(kind.name, submission.key) : `j-${randomBytes(16).toString('hex')}`);
    const stamp = new Date(this.now()).toISOString();
    const job: JobRecord = {
      id,
      kind: kind.name,
      state: 'queued',
      ...(submission.key !== undefined ? { key: submission.key } : {}),
      requestHash,
      request,
      ...(submission.parent ? { parent: submission.parent } : {}),
      ...(kind.queue ? { queue: kind.queue(request) } : {}),
      ...(placement !== undefined ? { placement } : {}),
      ...(kind.counters ? { counters: Object.fromEntries(kind.counters.map((name) => [name, 0])) } : {}),
      attempts: 0,
      stepsTotal: 0,
      stepsSucceeded: 0,
      stepsFailed: 0,
      created: stamp,
      updated: stamp,
    };
    const planned = kind.plan(request, job);
    const final = kind.finalStep?.(request, job);
    const steps = final ? [...planned, final] : planned;
    if (steps.length === 0) throw new Error(`job kind '${kind.name}' planned no steps`);
    steps.forEach(assertStep);
    if (final) job.finalStep = final.name;
    job.stepsTotal = steps.length;
    if (await this.table.createJob(job)) {
      await this.enqueue(job, steps.map((s) => ({ ...s })));
      this.log('info', 'job submitted', { job: id, kind: kind.name, steps: steps.length });
      return { job, created: true };
    }
    const existing = (await this.table.getJob(id))!;
    if (existing.requestHash !== requestHash) {
      throw new ConflictError(
        submission.key !== undefined
          ? `idempotency key '${submission.key}' was used for a different ${kind.name} request (job ${id})`
          : `job '${id}' exists for a different ${kind.name} request`,
      );
    }
    // A submission that died between its record and its messages left the job queued: send them again.
    if (existing.state === 'queued' && this.now() - Date.parse(existing.updated) >= this.resendQueuedAfterMs) await this.enqueue(existing, steps);
    return { job: existing, created: false };
  }

  /**
   * Records a submission refused before it could run, for a client nobody can answer (an upload):
   * a failed job with the reason and no steps, which a later submission under the same id replaces.
   * Leaves any other job under that id as it is.
   */
  async refuse(submission: { kind: string; id: string; request: Json; error: string }): Promise<void> {
    const kind = this.kinds.get(submission.kind);
    assertValidName(submission.id, 'job id');
    const stamp = new Date(this.now()).toISOString();
    const created = await this.table.createJob({
      id: submission.id,
      kind: kind.name,
      state: 'failed',
      refused: true,
      requestHash: '',
      request: submission.request,
      attempts: 0,
      stepsTotal: 0,
      stepsSucceeded: 0,
      stepsFailed: 0,
      error: submission.error,
      created: stamp,
      updated: stamp,
      finished: stamp,
    });
    if (created) this.log('info', 'submission refused', { job: submission.id, kind: kind.name, error: submission.error });
  }

  /** Cancels a queued or running job: its pending steps do nothing, a running one stops at its next progress report. */
  async cancel(id: string): Promise<JobRecord> {
    const job = await cancelJob(this.table, id, this.now);
    this.log('info', 'job cancelled', { job: id, kind: job.kind });
    return job;
  }

  /** Where a job's steps go: the container queue for a job placed there, its own queue when its kind spreads jobs over several, else its kind's. */
  private queueOf(job: JobRecord): string {
    return job.placement === 'container' ? CONTAINER_QUEUE : (job.queue ?? job.kind);
  }

  /** Creates the steps (many at once: a batch job has thousands) and sends all but a final step that still waits for others. */
  private async enqueue(job: JobRecord, steps: readonly StepSpec[]): Promise<void> {
    const stamp = new Date(this.now()).toISOString();
    let next = 0;
    const lanes = Array.from({ length: Math.min(STEP_WRITE_CONCURRENCY, steps.length) }, async () => {
      while (next < steps.length) {
        const spec = steps[next++]!;
        await this.table.createStep({ job: job.id, name: spec.name, handler: spec.handler, ...(spec.input !== undefined ? { input: spec.input } : {}), state: 'pending', leaseUntil: 0, attempts: 0, segments: 1, updated: stamp });
      }
    });
    await Promise.all(lanes);
    const others = steps.filter((s) => s.name !== job.finalStep);
    // A final step is sent once every other step has finished: at once when there are none.
    const send = others.length > 0 ? others : steps;
    await this.queue.send(this.queueOf(job), send.map((s) => ({ job: job.id, step: s.name })));
  }

  /**
   * Runs one delivery of a step message. Returns what it did (the message is then deleted), or
   * throws StepRetryError for a delivery SQS must hand out again.
   */
  async runStep(message: StepMessage, delivery: StepDelivery): Promise<StepRunOutcome> {
    const job = await this.table.getJob(message.job);
    if (!job) {
      this.log('warn', 'step message for an unknown job', { ...message });
      return 'unknown-job';
    }
    if (isTerminal(job.state)) return 'job-ended';
    const kind = this.kinds.get(job.kind);
    const step = await this.table.getStep(job.id, message.step);
    if (!step) {
      this.log('warn', 'step message for an unknown step', { ...message });
      return 'unknown-step';
    }
    if (step.state !== 'pending' && step.state !== 'running') {
      await this.settle(kind, job, step);
      return 'already-finished';
    }
    const owner = randomBytes(8).toString('hex');
    const leaseMs = this.visibilitySeconds * 1000;
    const taken = await this.table.takeStep(job.id, step.name, owner, leaseMs, this.now());
    if (!taken) return this.lostTake(kind, job, message, delivery);
    const running = await this.table.startAttempt(job.id, this.now());
    if (!running) {
      await this.table.finishStep(job.id, step.name, owner, { state: 'cancelled' }, this.now());
      return 'job-ended';
    }

    let leaseTaken = false;
    const heartbeat = setInterval(
      () => {
        void (async () => {
          if (!(await this.table.renewLease(job.id, step.name, owner, leaseMs, this.now()))) leaseTaken = true;
          else if (delivery.receiptHandle) await this.queue.setVisibility(this.queueOf(job), delivery.receiptHandle, this.visibilitySeconds);
        })().catch((error: unknown) => this.log('warn', 'lease renewal failed', { ...message, error: (error as Error).message }));
      },
      Math.max(1, Math.floor(this.visibilitySeconds / 3)) * 1000,
    );
    const began = this.now();
    let firstDone: number | undefined;
    const signal = delivery.signal ?? new AbortController().signal;
    const context: StepContext = {
      signal,
      steps: () => this.table.listSteps(job.id),
      job: running,
      step: taken,
      input: taken.input,
      checkpoint: taken.checkpoint,
      remainingMs: () => delivery.remainingMs() - this.reserveMs,
      progress: async (done, total, stage) => {
        if (leaseTaken) throw new LeaseLostError(job.id, step.name);
        firstDone ??= done;
        const seconds = (this.now() - began) / 1000;
        const progress = { done, total, ratePerSecond: seconds > 0 ? (done - firstDone) / seconds : 0, ...(stage !== undefined ? { stage } : {}), updated: new Date(this.now()).toISOString() };
        if (!(await this.table.setProgress(job.id, progress))) {
          const now = await this.table.getJob(job.id);
          throw new JobCancelledError(job.id, now?.state ?? 'gone');
        }
      },
    };
    const handler = kind.steps[taken.handler];
    let outcome: StepOutcome;
    try {
      if (!handler) throw new Error(`job kind '${kind.name}' has no step function '${taken.handler}'`);
      outcome = await handler(context);
    } catch (error) {
      if (signal.aborted && !(error instanceof LeaseLostError) && !(error instanceof JobCancelledError)) return await this.released(running, taken, owner, delivery);
      return await this.stepFailed(kind, running, taken, owner, error, delivery);
    } finally {
      clearInterval(heartbeat);
    }
    if ('continue' in outcome) {
      assertSmall(`the checkpoint of step ${step.name}`, outcome.continue);
      if (!(await this.table.releaseStep(job.id, step.name, owner, { checkpoint: outcome.continue }, this.now()))) leaseLost(job.id, step.name);
      await this.queue.send(this.queueOf(job), [{ job: job.id, step: step.name }]);
      this.log('info', 'step checkpointed; continues in a new invocation', { ...message, segment: taken.segments });
      return 'continued';
    }
    const next = outcome.next ?? [];
    next.forEach(assertStep);
    for (const spec of next) {
      await this.table.createStep({ job: job.id, name: spec.name, handler: spec.handler, ...(spec.input !== undefined ? { input: spec.input } : {}), state: 'pending', leaseUntil: 0, attempts: 0, segments: 1, updated: new Date(this.now()).toISOString() });
    }
    const finished = await this.table.finishStep(
      job.id,
      step.name,
      owner,
      { state: 'succeeded', ...(outcome.result !== undefined ? { result: outcome.result } : {}), ...(outcome.count ? { count: outcome.count } : {}), next: next.map((s) => s.name) },
      this.now(),
    );
    if (!finished) return leaseLost(job.id, step.name);
    await this.settle(kind, running, finished);
    return 'succeeded';
  }

  /**
   * A step message the queue gave up on (maxReceiveCount deliveries, none of which could end the
   * step: the table unreachable, the kind missing on this worker): the step fails with that reason
   * and the job ends by its kind's rule, instead of waiting for a step that will never come back.
   */
  async deadLetter(message: StepMessage): Promise<StepRunOutcome> {
    const job = await this.table.getJob(message.job);
    if (!job) return 'unknown-job';
    if (isTerminal(job.state)) return 'job-ended';
    const kind = this.kinds.get(job.kind);
    const step = await this.table.getStep(job.id, message.step);
    if (!step) return 'unknown-step';
    const reason = `its message went to the dead-letter queue: no delivery could run it${step.lastError ? ` (last error: ${step.lastError})` : ''}`;
    const failed = (await this.table.failUnfinishedStep(job.id, step.name, reason, this.now())) ?? (await this.table.getStep(job.id, step.name))!;
    this.log('error', 'step given up by the queue', { ...message });
    await this.settle(kind, job, failed);
    return failed.state === 'failed' ? 'failed' : 'already-finished';
  }

  /** Another worker's write landed first: either the step is finished, or it is held by a live lease. */
  private async lostTake(kind: JobKind, job: JobRecord, message: StepMessage, delivery: StepDelivery): Promise<StepRunOutcome> {
    const step = (await this.table.getStep(job.id, message.step))!;
    if (step.state !== 'pending' && step.state !== 'running') {
      await this.settle(kind, job, step);
      return 'already-finished';
    }
    // Back when the holder's lease would run out: then either the step is done, or its holder died.
    if (delivery.receiptHandle) {
      const seconds = Math.min(43_200, Math.max(1, Math.ceil((step.leaseUntil - this.now()) / 1000)));
      await this.queue.setVisibility(this.queueOf(job), delivery.receiptHandle, seconds);
    }
    throw new StepRetryError(`step ${message.step} of job ${message.job} is held by another worker`);
  }

  private async stepFailed(kind: JobKind, job: JobRecord, step: StepRecord, owner: string, error: unknown, delivery: StepDelivery): Promise<StepRunOutcome> {
    if (error instanceof LeaseLostError) leaseLost(job.id, step.name);
    if (error instanceof JobCancelledError) {
      await this.table.finishStep(job.id, step.name, owner, { state: 'cancelled' }, this.now());
      this.log('info', 'step stopped: its job ended', { job: job.id, step: step.name });
      return 'cancelled';
    }
    // A reason the user may read (the step said so), or the error's class only: details stay in the logs.
    const reason = (error as { expose?: boolean }).expose ? runtimeMessage(error) : `internal error (${(error as Error).name ?? 'Error'}); see the worker's logs`;
    const maxAttempts = kind.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.log('error', 'step attempt failed', { job: job.id, step: step.name, attempt: step.attempts, maxAttempts, error: (error as Error).message });
    if (step.attempts >= maxAttempts) {
      const failed = await this.table.finishStep(job.id, step.name, owner, { state: 'failed', lastError: `${reason} (after ${step.attempts} attempts)` }, this.now());
      if (!failed) return leaseLost(job.id, step.name);
      await this.settle(kind, job, failed);
      return 'failed';
    }
    if (!(await this.table.releaseStep(job.id, step.name, owner, { lastError: reason }, this.now()))) leaseLost(job.id, step.name);
    if (delivery.receiptHandle) await this.queue.setVisibility(this.queueOf(job), delivery.receiptHandle, this.retryDelaySeconds);
    throw new StepRetryError(`step ${step.name} of job ${job.id} failed (attempt ${step.attempts} of ${maxAttempts}): ${reason}`);
  }

  /** Its worker is stopping: the step goes back to pending and its message is visible again at once. */
  private async released(job: JobRecord, step: StepRecord, owner: string, delivery: StepDelivery): Promise<never> {
    if (!(await this.table.releaseStep(job.id, step.name, owner, { lastError: 'handed back: its worker stopped' }, this.now()))) leaseLost(job.id, step.name);
    if (delivery.receiptHandle) await this.queue.setVisibility(this.queueOf(job), delivery.receiptHandle, 0);
    this.log('info', 'step handed back: its worker is stopping', { job: job.id, step: step.name });
    throw new StepReleasedError(`step ${step.name} of job ${job.id} was handed back: its worker is stopping`);
  }

  /**
   * The bookkeeping after a step ended, safe to repeat (a redelivery after a crash repeats it): send
   * the steps it enqueued, count it once, and end the job when the kind's rule says so.
   */
  private async settle(kind: JobKind, job: JobRecord, step: StepRecord): Promise<void> {
    if (step.state === 'cancelled') return;
    if (step.next?.length) await this.queue.send(this.queueOf(job), step.next.map((name) => ({ job: job.id, step: name })));
    const { job: counted } = await this.table.countStep(job.id, step.name, step.state === 'succeeded' ? 'succeeded' : 'failed', step.next?.length ?? 0, this.now(), step.count);
    if (isTerminal(counted.state)) return;
    const finishedSteps = counted.stepsSucceeded + counted.stepsFailed;
    if (counted.finalStep && step.name !== counted.finalStep && finishedSteps === counted.stepsTotal - 1 && !(step.state === 'failed' && kind.failFast !== false)) {
      // Every other step has finished: the final one may run. Sent by each settle that sees this (a
      // redelivery repeats it); the step's lease runs it once.
      await this.queue.send(this.queueOf(job), [{ job: job.id, step: counted.finalStep }]);
      return;
    }
    let decision: TerminalDecision | undefined;
    if (step.state === 'failed' && kind.failFast !== false) {
      decision = { state: 'failed', error: `step ${step.name} failed: ${step.lastError ?? 'no reason recorded'}` };
    } else if (finishedSteps === counted.stepsTotal) {
      decision = (kind.terminal ?? defaultTerminalRule)(counted, await this.table.listSteps(job.id));
    }
    if (!decision) return;
    const ended = await this.table.transition(job.id, ['queued', 'running'], decision.state, { ...(decision.result !== undefined ? { result: decision.result } : {}), ...(decision.error !== undefined ? { error: decision.error } : {}) }, this.now());
    if (!ended) return; // another delivery ended it first
    this.log('info', 'job ended', { job: job.id, kind: kind.name, state: ended.state });
    await kind.onFinished?.(ended);
  }
}
