import type { S3Client } from '@aws-sdk/client-s3';
import * as z from 'zod';
import { BadRequestError } from '../platform/errors.ts';
import { PromiseCache } from '../platform/promise-cache.ts';
import { JobStepError, type JobKind, type TerminalRule } from '../jobs/kinds.ts';
import type { Json } from '../jobs/record.ts';
import { planShards } from './input.ts';
import { columnarMessageFields, isColumnarFormat, loadPlan, planKey, type ColumnarPlan } from './formats/plan.ts';
import { mergeJob, shardStepName } from './merge.ts';
import { BATCH_COUNTERS, plannedBatchSchema, type BatchCounters, type MergeResult, type PlannedBatch, type ShardMessage } from './schemas.ts';
import type { ShardOutcome, ShardScorer } from './shard-scorer.ts';

/**
 * Batch scoring as a kind of the job runtime (docs/jobs.md, docs/batch.md): one step per shard,
 * each scored exactly once as far as the job can tell (the runtime counts a step once, with its
 * rows), then the in-order merge as the final step once every shard has finished, scored or failed.
 * A job whose shards all scored succeeds; one with failed shards ends `partial` (or `failed` when
 * nothing scored), its reason listing them.
 */
export const BATCH_KIND = 'batch';
/** The GPU containers' queue; jobs with `worker: gpu` send their steps there (docs/jobs.md, job queues). */
export const BATCH_GPU_QUEUE = 'batch-gpu';
export const MERGE_STEP = 'merge';

const shardInputSchema = z.strictObject({ shard: z.number().int().nonnegative(), start: z.number().int().nonnegative(), end: z.number().int().positive() });
/** A columnar job's shard step names its shard alone: its file, units and mapping are in the saved plan. */
const columnarShardInputSchema = z.strictObject({ shard: z.number().int().nonnegative() });

export interface BatchKindDeps {
  s3: S3Client;
  /** Made on first use: only the workers load models. */
  scorer: () => ShardScorer;
  /** Each scored shard, for metrics. */
  onShardScored?: (outcome: ShardOutcome, model: string) => void;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

export const batchTerminalRule: TerminalRule = (job, steps) => {
  const merge = steps.find((s) => s.name === MERGE_STEP);
  if (merge?.state !== 'succeeded') return { state: 'failed', error: `the merge failed: ${merge?.lastError ?? 'no reason recorded'}` };
  const merged = merge.result as unknown as MergeResult;
  const scored = ((job.counters ?? {}) as Partial<BatchCounters>).rowsScored ?? 0;
  const state = merged.shardsFailed === 0 ? 'succeeded' : scored === 0 ? 'failed' : 'partial';
  return { state, result: merge.result!, ...(merged.reason !== undefined ? { error: merged.reason } : {}) };
};

export function createBatchKind(deps: BatchKindDeps): JobKind {
  // A worker scores many shards of one job in a row: its plan is read once. Keyed by the request's
  // hash too, since a refused upload's job id is reused by the fixed upload with a plan of its own.
  const plans = new PromiseCache<ColumnarPlan>(1);
  const columnarPlan = (jobId: string, plan: PlannedBatch): Promise<ColumnarPlan> =>
    plans.get(`${jobId}\n${plan.requestHash}`, () =>
      loadPlan(deps.s3, plan.inputBucket, jobId).then((saved) => {
        // Saved before the job record: a conflicting submission racing for the same id may have replaced it.
        if (saved.requestHash !== undefined && saved.requestHash !== plan.requestHash) {
          throw new JobStepError(`the job's plan (${planKey(jobId)}) was replaced by another submission under its id; submit the job again`);
        }
        return saved;
      }),
    );
  return {
    name: BATCH_KIND,
    parseRequest(body) {
      const parsed = plannedBatchSchema.safeParse(body);
      if (!parsed.success) throw new BadRequestError(`invalid batch plan: ${z.prettifyError(parsed.error)}`);
      return parsed.data as Json;
    },
    plan: (request) => {
      const plan = request as unknown as PlannedBatch;
      if (isColumnarFormat(plan.format)) {
        return Array.from({ length: plan.shardsTotal }, (_, shard) => ({ name: shardStepName(shard), handler: 'shard', input: { shard } }));
      }
      return planShards(plan.inputBytes, plan.shardBytes).map(({ shard, start, end }) => ({ name: shardStepName(shard), handler: 'shard', input: { shard, start, end } }));
    },
    finalStep: () => ({ name: MERGE_STEP, handler: 'merge' }),
    queue: (request) => ((request as unknown as PlannedBatch).worker === 'gpu' ? BATCH_GPU_QUEUE : BATCH_KIND),
    counters: BATCH_COUNTERS,
    // The queues' maxReceiveCount (batch.yml, batch-resources.ts) is above this.
    maxAttempts: 3,
    failFast: false,
    terminal: batchTerminalRule,
    steps: {
      async shard(ctx) {
        const plan = ctx.job.request as unknown as PlannedBatch;
        const columnar = isColumnarFormat(plan.format) ? await columnarPlan(ctx.job.id, plan) : undefined;
        const range = columnar ? { ...columnarShardInputSchema.parse(ctx.input), start: 0, end: 0 } : shardInputSchema.parse(ctx.input);
        const unit = columnar?.shards[range.shard];
        if (columnar && !unit) throw new Error(`shard ${range.shard} is not in the job's plan of ${columnar.shards.length} shard(s)`);
        deps.log?.('info', 'shard started', { job: ctx.job.id, shard: range.shard, attempt: ctx.step.attempts });
        const message: ShardMessage = {
          v: 1,
          job: ctx.job.id,
          shard: range.shard,
          shards: plan.shardsTotal,
          bucket: plan.inputBucket,
          key: plan.inputKey,
          etag: plan.inputEtag,
          size: plan.inputBytes,
          start: range.start,
          end: range.end,
          model: plan.model,
          version: plan.version,
          format: plan.format,
          csvHeader: plan.csvHeader,
          batchSize: plan.batchSize,
          ...(plan.outputs ? { outputs: plan.outputs } : {}),
          ...(columnar && unit ? columnarMessageFields(columnar, unit) : {}),
        };
        const outcome = await deps.scorer().score(message, { signal: ctx.signal });
        deps.onShardScored?.(outcome, plan.model);
        return {
          result: { rows: outcome.rows, failed: outcome.failed },
          count: { shardsDone: 1, rowsScored: outcome.rows - outcome.failed, rowsFailed: outcome.failed },
        };
      },
      async merge(ctx) {
        const plan = ctx.job.request as unknown as PlannedBatch;
        const columnar = isColumnarFormat(plan.format) ? await columnarPlan(ctx.job.id, plan) : undefined;
        const merged = await mergeJob({ s3: deps.s3, ...(deps.log ? { log: deps.log } : {}) }, ctx.job.id, plan, await ctx.steps(), columnar);
        deps.log?.('info', 'batch job merged', { job: ctx.job.id, shardsFailed: merged.shardsFailed, deadRows: merged.deadRows });
        // The failed shards' rows are counted here, once, as the merge lists them.
        return { result: merged as unknown as Json, count: { rowsFailed: merged.deadRows } };
      },
    },
  };
}
