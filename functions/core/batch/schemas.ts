import * as z from 'zod';
import { NAME_PATTERN } from '../names.ts';

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

export const JOB_STATES = ['planning', 'running', 'merging', 'succeeded', 'partial', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'partial', 'failed']);

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

/** The job item in DynamoDB (pk `JOB#<id>`, sk `JOB`). */
export interface BatchJobRecord {
  jobId: string;
  state: JobState;
  model: string;
  version: string;
  /** What the client asked for (a version, an alias, or nothing for the latest). */
  requestedVersion?: string;
  format: BatchFormat;
  csvHeader: boolean;
  batchSize: number;
  shardBytes: number;
  worker: BatchWorker;
  outputs?: string[];
  inputBucket: string;
  inputKey: string;
  inputEtag: string;
  inputBytes: number;
  shardsTotal: number;
  shardsDone: number;
  shardsDead: number;
  doneShards?: Set<number>;
  deadShards?: Set<number>;
  rowsScored: number;
  rowsFailed: number;
  requestHash: string;
  idempotencyKey?: string;
  createdAt: number;
  plannedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  reason?: string;
  resultKey?: string;
  errorsKey?: string;
  mergeToken?: string;
  mergeLeaseUntil?: number;
}

/** The shard item (pk `JOB#<id>`, sk `SHARD#<index>`), written by workers as they go. */
export interface BatchShardRecord {
  shard: number;
  state: 'running' | 'done' | 'dead';
  attempts: number;
  rows?: number;
  rowsFailed?: number;
  lastError?: string;
  startedAt?: number;
  finishedAt?: number;
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

export function jobView(job: BatchJobRecord, now: number): BatchJobView {
  const rows = job.rowsScored + job.rowsFailed;
  const elapsedMs = job.startedAt !== undefined ? (job.finishedAt ?? now) - job.startedAt : 0;
  return {
    id: job.jobId,
    state: job.state,
    model: job.model,
    version: job.version,
    input: `s3://${job.inputBucket}/${job.inputKey}`,
    format: job.format,
    batch_size: job.batchSize,
    worker: job.worker,
    shards: { total: job.shardsTotal, done: job.shardsDone, failed: job.shardsDead },
    rows: { scored: job.rowsScored, failed: job.rowsFailed },
    rows_per_s: elapsedMs > 0 ? Math.round((rows / elapsedMs) * 1000 * 10) / 10 : null,
    created: new Date(job.createdAt).toISOString(),
    ...(job.startedAt !== undefined ? { started: new Date(job.startedAt).toISOString() } : {}),
    ...(job.finishedAt !== undefined ? { finished: new Date(job.finishedAt).toISOString() } : {}),
    ...(job.reason !== undefined ? { reason: job.reason } : {}),
    ...(job.resultKey !== undefined ? { result: `s3://${job.inputBucket}/${job.resultKey}` } : {}),
    ...(job.errorsKey !== undefined ? { errors: `s3://${job.inputBucket}/${job.errorsKey}` } : {}),
  };
}
