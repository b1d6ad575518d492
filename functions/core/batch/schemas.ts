import * as z from 'zod';
import { NAME_PATTERN } from '../artifacts/names.ts';
import type { JobRecord } from '../jobs/record.ts';

/**
 * The batch contracts: what a client submits, what a shard message carries, and how a job looks to
 * its clients. Wire names are snake_case like the rest of the V2 API; stored records are camelCase.
 */
export const BATCH_FORMATS = ['jsonl', 'csv', 'parquet', 'npy', 'npz'] as const;
export type BatchFormat = (typeof BATCH_FORMATS)[number];

export const BATCH_WORKERS = ['auto', 'lambda', 'gpu'] as const;
export type BatchWorkerChoice = (typeof BATCH_WORKERS)[number];
/** Where the shards of a job are scored: the Lambda shard queue or the GPU containers' queue. */
export type BatchWorker = Exclude<BatchWorkerChoice, 'auto'>;

/** A batch job's state as `GET /v2/batches/{id}` shows it: the runtime's, with `queued` (shards enqueued, none started yet) shown as running. */
export const JOB_STATES = ['running', 'succeeded', 'partial', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'partial', 'failed', 'cancelled']);

export const DEFAULT_BATCH_SIZE = 64;
export const MAX_BATCH_SIZE = 4096;
/** About a thousand MNIST rows: seconds of work on one vCPU, well inside a Lambda's timeout. */
export const DEFAULT_SHARD_BYTES = 4 * 1024 * 1024;
export const MIN_SHARD_BYTES = 1024;
/** Shard indices are kept in number sets on the job item, which must stay far below DynamoDB's 400 KB. */
export const MAX_SHARDS = 10_000;

const name = z.string().regex(NAME_PATTERN, 'must match [a-z0-9][a-z0-9._-]{0,63}');

export const submitBatchRequestSchema = z
  .object({
    model: name,
    /** A version or an alias; resolved once at submission, so every shard scores the same version. */
    version: name.optional(),
    /** `s3://<bucket>/<key>` or a key in the model bucket, under batches/inputs/ or batches/incoming/. */
    input: z.string().min(1).max(1024).optional(),
    /** Several input files planned as one job (Parquet, .npy or .npz), scored in this order. */
    inputs: z.array(z.string().min(1).max(1024)).min(1).max(10_000).optional(),
    /** Columnar input: model input → the column (or array) feeding it, or several flat columns for a tabular row. */
    columns: z.record(z.string().min(1), z.union([z.string().min(1), z.array(z.string().min(1)).min(1)])).optional(),
    /** Parquet input: flat columns copied to the result next to the outputs (default: `id` when there is one). */
    key_columns: z.array(z.string().min(1)).optional(),
    /** The result's format: Parquet (the default for Parquet input) or JSONL. */
    output_format: z.enum(['jsonl', 'parquet']).optional(),
    /** Rows sent inline, each what one JSONL line would hold. */
    rows: z.array(z.unknown()).min(1).optional(),
    format: z.enum(BATCH_FORMATS).optional(),
    /** CSV only: the first line names the columns and is not a row. */
    csv_header: z.boolean().optional(),
    batch_size: z.number().int().min(1).max(MAX_BATCH_SIZE).optional(),
    shard_bytes: z.number().int().min(MIN_SHARD_BYTES).optional(),
    idempotency_key: z.string().min(1).max(256).optional(),
    worker: z.enum(BATCH_WORKERS).optional(),
    /** Outputs to keep; every output of the model when absent. */
    outputs: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict()
  .refine((r) => [r.input, r.inputs, r.rows].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of input (an S3 location), inputs (a list of them) or rows (inline)',
  });
export type SubmitBatchRequest = z.infer<typeof submitBatchRequestSchema>;

/** One SQS message: everything a worker needs to score its byte range without reading the job first. */
export const shardMessageSchema = z.object({
  v: z.literal(1),
  job: name,
  shard: z.number().int().nonnegative(),
  shards: z.number().int().positive(),
  bucket: z.string().min(1),
  key: z.string().min(1),
  /** The input's ETag at planning; every ranged read is If-Match on it, so a replaced input fails loudly. */
  etag: z.string().min(1),
  size: z.number().int().nonnegative(),
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
  model: name,
  version: name,
  format: z.enum(BATCH_FORMATS),
  csvHeader: z.boolean(),
  batchSize: z.number().int().min(1).max(MAX_BATCH_SIZE),
  outputs: z.array(z.string()).optional(),
  /** Columnar shards (formats/plan.ts): start/end are row groups or rows, not bytes. */
  rows: z.number().int().nonnegative().optional(),
  columns: z.record(z.string(), z.array(z.string())).optional(),
  keyColumns: z.array(z.string()).optional(),
  outputFormat: z.enum(['jsonl', 'parquet']).optional(),
});
export type ShardMessage = z.infer<typeof shardMessageSchema>;

/**
 * The planned job, kept as its record's `request` in the job runtime (docs/jobs.md): everything a
 * shard step needs besides its byte range, fixed at submission.
 */
export const plannedBatchSchema = z.strictObject({
  model: z.string(),
  version: z.string(),
  /** What the client asked for (a version, an alias, or nothing for the latest). */
  requestedVersion: z.string().optional(),
  format: z.enum(BATCH_FORMATS),
  csvHeader: z.boolean(),
  batchSize: z.number().int().nonnegative(),
  shardBytes: z.number().int().nonnegative(),
  worker: z.enum(['lambda', 'gpu']),
  outputs: z.array(z.string()).optional(),
  inputBucket: z.string(),
  inputKey: z.string(),
  inputEtag: z.string(),
  inputBytes: z.number().int().nonnegative(),
  shardsTotal: z.number().int().nonnegative().max(MAX_SHARDS),
  /** sha256 of the submission as the client made it: the same job id with another request is a 409. */
  requestHash: z.string(),
  idempotencyKey: z.string().optional(),
});
export type PlannedBatch = z.infer<typeof plannedBatchSchema>;

/** The job's counters, each added once per step by the runtime. */
export const BATCH_COUNTERS = ['shardsDone', 'rowsScored', 'rowsFailed'] as const;
export type BatchCounters = Record<(typeof BATCH_COUNTERS)[number], number>;

/** What a shard step records: its rows, for the merge to number the next shard's from. */
export interface ShardResult {
  rows: number;
  failed: number;
}

/** What the merge step records, and the finished job's result. */
export interface MergeResult {
  resultKey: string;
  errorsKey: string;
  shardsFailed: number;
  deadRows: number;
  reason?: string;
}

/** `GET /v2/batches/{id}` */
export interface BatchJobView {
  id: string;
  state: JobState;
  model: string;
  version: string;
  input: string;
  format: BatchFormat;
  batch_size: number;
  worker: BatchWorker;
  shards: { total: number; done: number; failed: number };
  rows: { scored: number; failed: number };
  rows_per_s: number | null;
  created: string;
  started?: string;
  finished?: string;
  reason?: string;
  result?: string;
  errors?: string;
}

/** A batch job as its clients see it, from the runtime's record. */
export function jobView(job: JobRecord, now: number): BatchJobView {
  const plan = job.request as unknown as PlannedBatch;
  const counters = (job.counters ?? {}) as Partial<BatchCounters>;
  const merged = job.result as unknown as MergeResult | undefined;
  const rowsScored = counters.rowsScored ?? 0;
  const rowsFailed = counters.rowsFailed ?? 0;
  const started = job.started !== undefined ? Date.parse(job.started) : undefined;
  const finished = job.finished !== undefined ? Date.parse(job.finished) : undefined;
  const elapsedMs = started !== undefined ? (finished ?? now) - started : 0;
  return {
    id: job.id,
    state: job.state === 'queued' ? 'running' : job.state,
    model: plan.model,
    version: plan.version,
    input: `s3://${plan.inputBucket}/${plan.inputKey}`,
    format: plan.format,
    batch_size: plan.batchSize,
    worker: plan.worker,
    // Until the merge, every failed step is a shard.
    shards: { total: plan.shardsTotal, done: counters.shardsDone ?? 0, failed: merged?.shardsFailed ?? job.stepsFailed },
    rows: { scored: rowsScored, failed: rowsFailed },
    rows_per_s: elapsedMs > 0 ? Math.round(((rowsScored + rowsFailed) / elapsedMs) * 1000 * 10) / 10 : null,
    created: job.created,
    ...(job.started !== undefined ? { started: job.started } : {}),
    ...(job.finished !== undefined ? { finished: job.finished } : {}),
    ...(job.error !== undefined ? { reason: job.error } : {}),
    ...(merged?.resultKey !== undefined ? { result: `s3://${plan.inputBucket}/${merged.resultKey}` } : {}),
    ...(merged?.errorsKey !== undefined ? { errors: `s3://${plan.inputBucket}/${merged.errorsKey}` } : {}),
  };
}
