import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { ConditionalTable, strip } from './conditional-table.ts';
import type { JobProgress, JobRecord, JobState, Json, StepRecord, StepState } from './record.ts';

const jobKey = (id: string) => ({ pk: `JOB#${id}`, sk: 'JOB' });
const stepKey = (id: string, step: string) => ({ pk: `JOB#${id}`, sk: `STEP#${step}` });

/**
 * The job runtime's reads and conditional writes. Each method that changes something returns what
 * it changed, or undefined when its condition did not hold (a lost race, or a state that moved on);
 * any other failure is thrown.
 */
export class JobTable extends ConditionalTable {
  async getJob(id: string): Promise<JobRecord | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: jobKey(id), ConsistentRead: true }));
    const job = strip<JobRecord & { finishedSteps?: Set<string> }>(out.Item);
    if (job) delete job.finishedSteps;
    return job;
  }

  async getStep(id: string, step: string): Promise<StepRecord | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: stepKey(id, step), ConsistentRead: true }));
    return strip<StepRecord>(out.Item);
  }

  async listSteps(id: string): Promise<StepRecord[]> {
    const steps: StepRecord[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :step)',
          ExpressionAttributeValues: { ':pk': `JOB#${id}`, ':step': 'STEP#' },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of page.Items ?? []) steps.push(strip<StepRecord>(item)!);
      start = page.LastEvaluatedKey;
    } while (start);
    return steps;
  }

  /** Creates the job (or replaces a refused one); false when a job with this id exists (a resubmission under the same key). */
  createJob(job: JobRecord): Promise<boolean> {
    // A refused submission's record (no steps) gives way to a real job under its id.
    return this.putIfAbsent({ ...jobKey(job.id), ...job }, { condition: 'refused = :refused', values: { ':refused': true } });
  }

  /** Creates a step as pending; false when it exists (a redelivered or repeated enqueue). */
  createStep(step: StepRecord): Promise<boolean> {
    return this.putIfAbsent({ ...stepKey(step.job, step.name), ...step });
  }

  /**
   * The step lease: the one caller whose write lands owns the step until `now + leaseMs`. It lands
   * on a pending step, or on a running one whose lease ran out (its owner died).
   */
  takeStep(id: string, step: string, owner: string, leaseMs: number, now: number): Promise<StepRecord | undefined> {
    return this.update<StepRecord>(stepKey(id, step), {
      UpdateExpression: 'SET #state = :running, #owner = :owner, #leaseUntil = :until, #updated = :updated ADD #attempts :one',
      ConditionExpression: 'attribute_exists(pk) AND #state IN (:pending, :running) AND #leaseUntil < :now',
      ExpressionAttributeNames: { '#state': 'state', '#owner': 'owner' },
      ExpressionAttributeValues: {
        ':running': 'running',
        ':pending': 'pending',
        ':owner': owner,
        ':until': now + leaseMs,
        ':now': now,
        ':one': 1,
        ':updated': new Date(now).toISOString(),
      },
    });
  }

  /** Extends a held lease; undefined when this owner no longer holds it. */
  renewLease(id: string, step: string, owner: string, leaseMs: number, now: number): Promise<StepRecord | undefined> {
    return this.update<StepRecord>(stepKey(id, step), {
      UpdateExpression: 'SET #leaseUntil = :until',
      ConditionExpression: '#owner = :owner AND #state = :running',
      ExpressionAttributeNames: { '#owner': 'owner', '#state': 'state' },
      ExpressionAttributeValues: { ':owner': owner, ':running': 'running', ':until': now + leaseMs },
    });
  }

  /**
   * Gives a held step back as pending: with a checkpoint (the step ran out of time: a new segment
   * whose attempts start again at 0), or with the error of a failed attempt (retried by redelivery).
   */
  releaseStep(id: string, step: string, owner: string, release: { checkpoint: Json } | { lastError: string }, now: number): Promise<StepRecord | undefined> {
    const checkpointed = 'checkpoint' in release;
    return this.update<StepRecord>(stepKey(id, step), {
      UpdateExpression: checkpointed
        ? 'SET #state = :pending, #leaseUntil = :zero, #checkpoint = :checkpoint, #attempts = :zero, #updated = :updated ADD #segments :one REMOVE #owner'
        : 'SET #state = :pending, #leaseUntil = :zero, #lastError = :error, #updated = :updated REMOVE #owner',
      ConditionExpression: '#owner = :owner AND #state = :running',
      ExpressionAttributeNames: { '#owner': 'owner', '#state': 'state' },
      ExpressionAttributeValues: {
        ':owner': owner,
        ':running': 'running',
        ':pending': 'pending',
        ':zero': 0,
        ':updated': new Date(now).toISOString(),
        ...(checkpointed ? { ':checkpoint': release.checkpoint, ':one': 1 } : { ':error': release.lastError }),
      },
    });
  }

  /** Ends a held step (succeeded, failed or cancelled); undefined when this owner lost it. */
  finishStep(
    id: string,
    step: string,
    owner: string,
    end: { state: Exclude<StepState, 'pending' | 'running'>; result?: Json; lastError?: string; next?: string[]; count?: Record<string, number> },
    now: number,
  ): Promise<StepRecord | undefined> {
    const names: Record<string, string> = { '#owner': 'owner', '#state': 'state' };
    const values: Record<string, unknown> = { ':owner': owner, ':running': 'running', ':end': end.state, ':zero': 0, ':updated': new Date(now).toISOString() };
    const sets = ['#state = :end', '#leaseUntil = :zero', '#updated = :updated'];
    for (const field of ['result', 'lastError', 'next', 'count'] as const) {
      if (end[field] === undefined) continue;
      names[`#${field}`] = field;
      values[`:${field}`] = end[field];
      sets.push(`#${field} = :${field}`);
    }
    return this.update<StepRecord>(stepKey(id, step), {
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: '#owner = :owner AND #state = :running',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  /**
   * Ends a step that is not finished, whoever holds it: for a step whose messages went to the
   * dead-letter queue. A holder that is still at work then loses its lease and its result is dropped.
   */
  failUnfinishedStep(id: string, step: string, lastError: string, now: number): Promise<StepRecord | undefined> {
    return this.update<StepRecord>(stepKey(id, step), {
      UpdateExpression: 'SET #state = :failed, #lastError = :error, #leaseUntil = :zero, #updated = :updated REMOVE #owner',
      ConditionExpression: '#state IN (:pending, :running)',
      ExpressionAttributeValues: { ':failed': 'failed', ':error': lastError, ':zero': 0, ':updated': new Date(now).toISOString(), ':pending': 'pending', ':running': 'running' },
    });
  }

  /** queued → running at a step's first take, counting the attempt; undefined when the job is terminal. */
  startAttempt(id: string, now: number): Promise<JobRecord | undefined> {
    return this.update<JobRecord>(jobKey(id), {
      UpdateExpression: 'SET #state = :running, #updated = :updated, #started = if_not_exists(#started, :updated) ADD #attempts :one',
      ConditionExpression: '#state IN (:queued, :running)',
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ':running': 'running', ':queued': 'queued', ':one': 1, ':updated': new Date(now).toISOString() },
    }).then((job) => job && omitFinished(job));
  }

  /** Writes progress while the job is running; undefined when it is not (cancelled, or ended). */
  setProgress(id: string, progress: JobProgress): Promise<JobRecord | undefined> {
    return this.update<JobRecord>(jobKey(id), {
      UpdateExpression: 'SET #progress = :progress, #updated = :updated',
      ConditionExpression: '#state = :running',
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ':progress': progress, ':running': 'running', ':updated': progress.updated },
    }).then((job) => job && omitFinished(job));
  }

  /**
   * Counts a finished step towards its job, once: the step's name joins the job's set of finished
   * steps in the same write that adds to the counters, and `added` steps it enqueued join the total.
   */
  async countStep(
    id: string,
    step: string,
    outcome: 'succeeded' | 'failed',
    added: number,
    now: number,
    count: Record<string, number> = {},
  ): Promise<{ counted: boolean; job: JobRecord }> {
    const counter = outcome === 'succeeded' ? 'stepsSucceeded' : 'stepsFailed';
    // The kind's counters are a map made at submission (ADD takes top-level attributes only, so SET adds).
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    const adds = Object.entries(count).map(([name, value], i) => {
      names[`#c${i}`] = name;
      values[`:c${i}`] = value;
      return `#counters.#c${i} = #counters.#c${i} + :c${i}`;
    });
    const job = await this.update<JobRecord>(jobKey(id), {
      UpdateExpression: `ADD #finishedSteps :set, #${counter} :one, #stepsTotal :added SET ${['#updated = :updated', ...adds].join(', ')}`,
      ConditionExpression: 'attribute_exists(pk) AND NOT contains(#finishedSteps, :step)',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: { ':set': new Set([step]), ':one': 1, ':added': added, ':step': step, ':updated': new Date(now).toISOString(), ...values },
    });
    if (job) return { counted: true, job: omitFinished(job) };
    const current = await this.getJob(id);
    if (!current) throw new Error(`job ${id} does not exist`);
    return { counted: false, job: current };
  }

  /** Moves a job from one of `from` to `to`; undefined when it was in none of them (someone else moved it). */
  transition(id: string, from: readonly JobState[], to: JobState, set: { result?: Json; error?: string; progress?: JobProgress } = {}, now = Date.now()): Promise<JobRecord | undefined> {
    const names: Record<string, string> = { '#state': 'state' };
    const stamp = new Date(now).toISOString();
    const values: Record<string, unknown> = { ':to': to, ':updated': stamp };
    const sets = ['#state = :to', '#updated = :updated'];
    if (to !== 'running' && to !== 'queued') {
      sets.push('#finished = :updated');
    }
    for (const [field, value] of Object.entries(set)) {
      if (value === undefined) continue;
      names[`#${field}`] = field;
      values[`:${field}`] = value;
      sets.push(`#${field} = :${field}`);
    }
    from.forEach((state, i) => (values[`:from${i}`] = state));
    return this.update<JobRecord>(jobKey(id), {
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: `#state IN (${from.map((_, i) => `:from${i}`).join(', ')})`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    }).then((job) => job && omitFinished(job));
  }
}

function omitFinished(job: JobRecord & { finishedSteps?: unknown }): JobRecord {
  const { finishedSteps: _finished, ...rest } = job;
  return rest;
}
