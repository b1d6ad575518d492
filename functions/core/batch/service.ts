import { createHash, randomUUID } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import { BadRequestError, ConflictError, HttpError, NotFoundError } from '../errors.ts';
import type { InferenceService } from '../inference-service.ts';
import { keys } from '../keys.ts';
import type { ModelStore } from '../model-store.ts';
import { assertValidName } from '../names.ts';
import { headInput, planShards, type InputObject } from './input.ts';
import type { BatchJobStore } from './job-store.ts';
import { finishIfComplete, type FinishDeps } from './merge.ts';
import { EnqueueError, sendAllMessages, type SendOptions } from './queue.ts';
import { batchIncompatibility } from './rows.ts';
import { columnarMessageFields, formatOfKey, isColumnarFormat, isColumnarInput, loadPlan, planColumnarJob, planInputObject, savePlan, type ColumnarPlan, type PlannedShard } from './formats/plan.ts';
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_SHARD_BYTES,
  MAX_SHARDS,
  jobView,
  submitBatchRequestSchema,
  type BatchFormat,
  type BatchJobRecord,
  type BatchJobView,
  type BatchWorker,
  type ShardMessage,
  type SubmitBatchRequest,
} from './schemas.ts';

/**
 * Submission and status, free of any transport: the API, the upload trigger and the submit queue
 * all call `submit`, which validates, plans shards by byte range, writes the job record and fans
 * the shards out on SQS. A resubmission (same idempotency key, or the same upload) returns the job
 * that exists.
 */
export interface BatchServiceOptions {
  s3: S3Client;
  sqs: SQSClient;
  jobs: BatchJobStore;
  store: ModelStore;
  /** Resolves versions and aliases the same way the inference API does. */
  inference: Pick<InferenceService, 'resolveVersion'>;
  bucket: string;
  shardQueueUrl: string;
  /** The GPU containers' queue; without it every job runs on Lambda. */
  gpuShardQueueUrl?: string | undefined;
  /** Inputs at least this large go to the GPU queue when the client leaves the choice to us. */
  gpuThresholdBytes?: number | undefined;
  send?: SendOptions;
  /** How long a job may stay `planning` before a resubmission takes the planning over. */
  planningLeaseMs?: number;
  now?: () => number;
  log?: FinishDeps['log'];
}

export type SubmissionSource =
  | { kind: 'api' }
  | { kind: 'queue'; messageId: string }
  | { kind: 'upload'; key: string };

export interface SubmitResult {
  job: BatchJobView;
  /** False when the submission named a job that already existed. */
  created: boolean;
}

const INPUT_PREFIXES = [keys.batchInputsPrefix, keys.batchIncomingPrefix];

export function parseSubmitRequest(body: unknown): SubmitBatchRequest {
  const parsed = submitBatchRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new BadRequestError(`invalid batch request${where}: ${issue?.message ?? z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export class BatchService {
  private readonly options: BatchServiceOptions;

  constructor(options: BatchServiceOptions) {
    this.options = options;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private get finishDeps(): FinishDeps {
    const { s3, bucket, jobs, log } = this.options;
    return { s3, bucket, jobs, ...(log ? { log } : {}) };
  }

  async get(jobId: string): Promise<BatchJobView> {
    assertValidName(jobId, 'job id');
    const job = await this.options.jobs.get(jobId);
    if (!job) throw new NotFoundError(`unknown batch job '${jobId}'`);
    return jobView(job, this.now());
  }

  private inputKey(input: string): string {
    let key = input;
    if (input.startsWith('s3://')) {
      const rest = input.slice('s3://'.length);
      const slash = rest.indexOf('/');
      const bucket = slash === -1 ? rest : rest.slice(0, slash);
      if (bucket !== this.options.bucket) {
        throw new BadRequestError(`input must be in this deployment's bucket '${this.options.bucket}', not '${bucket}'`);
      }
      key = slash === -1 ? '' : rest.slice(slash + 1);
    }
    if (!INPUT_PREFIXES.some((p) => key.startsWith(p) && key.length > p.length)) {
      throw new BadRequestError(`input key '${key.slice(0, 200)}' must be under ${INPUT_PREFIXES.join(' or ')}`);
    }
    return key;
  }

  private jobIdFor(source: SubmissionSource, idempotencyKey: string | undefined): string {
    if (source.kind === 'upload') {
      const file = source.key.slice(keys.batchIncomingPrefix.length).replace(/\.(jsonl|csv|parquet|npy|npz)$/, '');
      return assertValidName(file, 'job id');
    }
    if (idempotencyKey !== undefined) return `j-${sha256(`idempotency:${idempotencyKey}`).slice(0, 24)}`;
    return `j-${randomUUID().replaceAll('-', '').slice(0, 24)}`;
  }

  /**
   * An upload that cannot become a job (bad options, unknown model) has nobody to answer: its job id
   * gets a `failed` record with the reason, so `GET /v2/batches/<job>` says what was wrong.
   */
  async rejectUpload(key: string, reason: string): Promise<void> {
    const file = key.slice(keys.batchIncomingPrefix.length).replace(/\.(jsonl|csv|parquet|npy|npz)$/, '');
    try {
      assertValidName(file, 'job id');
    } catch {
      return;
    }
    await this.options.jobs.create({
      jobId: file,
      state: 'failed',
      model: '',
      version: '',
      format: formatOfKey(key) ?? 'jsonl',
      csvHeader: false,
      batchSize: 0,
      shardBytes: 0,
      worker: 'lambda',
      inputBucket: this.options.bucket,
      inputKey: key,
      inputEtag: '',
      inputBytes: 0,
      shardsTotal: 0,
      shardsDone: 0,
      shardsDead: 0,
      rowsScored: 0,
      rowsFailed: 0,
      requestHash: '',
      createdAt: this.now(),
      finishedAt: this.now(),
      reason: `the upload was refused: ${reason}`,
    });
  }

  async submit(body: unknown, source: SubmissionSource = { kind: 'api' }): Promise<SubmitResult> {
    const request = parseSubmitRequest(body);
    const { jobs, store, inference, s3 } = this.options;
    const idempotencyKey = request.idempotency_key ?? (source.kind === 'queue' ? `sqs:${source.messageId}` : undefined);

    const version = await inference.resolveVersion(request.model, request.version);
    const manifest = await store.getManifest(request.model, version).catch((error: unknown) => {
      if (error instanceof NotFoundError && request.version === undefined) throw new NotFoundError(`unknown model '${request.model}'`);
      throw error;
    });

    const jobId = this.jobIdFor(source, idempotencyKey);
    let inputKey: string;
    let rowsHash: string | undefined;
    let inline: string | undefined;
    if (request.rows) {
      inline = request.rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
      rowsHash = sha256(inline);
      inputKey = keys.batchInlineInput(jobId);
    } else {
      // A list of inputs is named in the record by its first; the plan holds them all.
      inputKey = source.kind === 'upload' ? source.key : this.inputKey(request.inputs?.[0] ?? request.input!);
    }
    const columnar = !inline && isColumnarInput(inputKey, request.inputs, request.format);
    let format: BatchFormat = request.format ?? formatOfKey(inputKey) ?? (columnar ? 'parquet' : 'jsonl');
    const incompatible = batchIncompatibility(manifest.inputs, format);
    if (incompatible) throw new BadRequestError(`model '${request.model}' version '${version}' cannot be scored in batch: ${incompatible}`);
    for (const name of request.outputs ?? []) {
      if (!manifest.outputs.some((o) => o.name === name)) {
        throw new BadRequestError(`unknown output '${name}'; model '${request.model}' has outputs: ${manifest.outputs.map((o) => o.name).join(', ')}`);
      }
    }

    let existing = await jobs.get(jobId);
    // A refused upload left a `failed` record under its name; uploading it again (fixed) replaces it.
    const refused = existing !== undefined && existing.state === 'failed' && existing.requestHash === '' && source.kind === 'upload';
    if (refused) existing = undefined;
    if (existing && !inline) {
      // Same job id: the same request again is the same job; anything else is a conflict.
      return this.resume(existing, source, await this.requestHash(request, version, inputKey, rowsHash, source));
    }
    if (inline) {
      if (existing) return this.resume(existing, source, await this.requestHash(request, version, inputKey, rowsHash, source));
      await s3.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: inputKey, Body: inline, ContentType: 'application/x-ndjson' }));
    }
    let plan: ColumnarPlan | undefined;
    if (columnar) {
      plan = await planColumnarJob({
        s3,
        bucket: this.options.bucket,
        input: request.inputs ? undefined : inputKey,
        inputs: request.inputs?.map((i) => this.inputKey(i)),
        format: request.format,
        modelInputs: manifest.inputs,
        modelOutputs: manifest.outputs.filter((o) => !request.outputs || request.outputs.includes(o.name)),
        columns: request.columns,
        keyColumns: request.key_columns,
        outputFormat: request.output_format,
        shardBytes: request.shard_bytes ?? DEFAULT_SHARD_BYTES,
      });
      format = plan.format;
    } else if (request.columns || request.key_columns || request.output_format === 'parquet') {
      throw new BadRequestError('columns, key_columns and output_format "parquet" apply to Parquet, .npy and .npz input');
    }
    const input = plan ? planInputObject(plan, this.options.bucket, inputKey) : await headInput(s3, this.options.bucket, inputKey);
    const requestHash = await this.requestHash(request, version, inputKey, rowsHash, source, input);

    const worker = this.workerFor(request, manifest.tier, input);
    const shardBytes = Math.max(request.shard_bytes ?? DEFAULT_SHARD_BYTES, Math.ceil(input.size / MAX_SHARDS));
    const shards = plan?.shards ?? planShards(input.size, shardBytes);
    const record: BatchJobRecord = {
      jobId,
      state: 'planning',
      model: request.model,
      version,
      ...(request.version !== undefined ? { requestedVersion: request.version } : {}),
      format,
      csvHeader: request.csv_header ?? false,
      batchSize: request.batch_size ?? DEFAULT_BATCH_SIZE,
      shardBytes,
      worker,
      ...(request.outputs ? { outputs: request.outputs } : {}),
      inputBucket: this.options.bucket,
      inputKey,
      inputEtag: input.etag,
      inputBytes: input.size,
      shardsTotal: shards.length,
      shardsDone: 0,
      shardsDead: 0,
      rowsScored: 0,
      rowsFailed: 0,
      requestHash,
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      createdAt: this.now(),
    };
    if (plan) await savePlan(s3, this.options.bucket, jobId, plan);
    if (!(refused ? await jobs.replaceRefused(record) : await jobs.create(record))) {
      // Lost a race with an identical submission: answer as a resubmission.
      return this.resume((await jobs.get(jobId))!, source, requestHash);
    }
    this.options.log?.('info', 'batch job planned', { job: jobId, shards: shards.length, bytes: input.size, worker, model: request.model, version });
    return { job: await this.enqueue(record), created: true };
  }

  private async requestHash(
    request: SubmitBatchRequest,
    version: string,
    inputKey: string,
    rowsHash: string | undefined,
    source: SubmissionSource,
    input?: InputObject,
  ): Promise<string> {
    // An upload is the same job only if it is the same object; an API input is named by its key.
    const etag = source.kind === 'upload' ? (input ?? (await headInput(this.options.s3, this.options.bucket, inputKey))).etag : undefined;
    return sha256(
      JSON.stringify({
        model: request.model,
        version: request.version ?? null,
        resolved: request.version === undefined ? null : version,
        input: inputKey,
        rows: rowsHash ?? null,
        etag: etag ?? null,
        format: request.format ?? null,
        csv_header: request.csv_header ?? false,
        batch_size: request.batch_size ?? null,
        shard_bytes: request.shard_bytes ?? null,
        worker: request.worker ?? null,
        outputs: request.outputs ?? null,
        ...(request.inputs || request.columns || request.key_columns || request.output_format
          ? { inputs: request.inputs ?? null, columns: request.columns ?? null, key_columns: request.key_columns ?? null, output_format: request.output_format ?? null }
          : {}),
      }),
    );
  }

  private workerFor(request: SubmitBatchRequest, tier: string | undefined, input: InputObject): BatchWorker {
    const gpu = this.options.gpuShardQueueUrl;
    const choice = request.worker ?? 'auto';
    if (choice === 'gpu' && !gpu) throw new BadRequestError('this deployment has no GPU workers; submit with worker "lambda" or "auto"');
    if (choice !== 'auto') return choice;
    if (!gpu) return 'lambda';
    return tier === 'gpu' || input.size >= (this.options.gpuThresholdBytes ?? Number.POSITIVE_INFINITY) ? 'gpu' : 'lambda';
  }

  private async resume(existing: BatchJobRecord, source: SubmissionSource, requestHash: string): Promise<SubmitResult> {
    if (existing.requestHash !== requestHash) {
      const what = source.kind === 'upload' ? `an upload named '${existing.jobId}'` : 'this idempotency key';
      throw new ConflictError(`batch job '${existing.jobId}' already exists for ${what} with a different request; use a new ${source.kind === 'upload' ? 'file name' : 'idempotency key'}`);
    }
    if (existing.state === 'planning') {
      // A submission that died while planning is finished by whoever resubmits it later; one that is
      // still planning (a concurrent duplicate) is left to finish its own work.
      if (this.now() - existing.createdAt > (this.options.planningLeaseMs ?? 120_000)) return { job: await this.enqueue(existing), created: false };
      return { job: jobView(existing, this.now()), created: false };
    }
    await finishIfComplete(this.finishDeps, existing);
    return { job: jobView((await this.options.jobs.get(existing.jobId)) ?? existing, this.now()), created: false };
  }

  /** Sends every shard (again, when resuming: a duplicate shard is scored once), then starts the job. */
  private async enqueue(job: BatchJobRecord): Promise<BatchJobView> {
    const { sqs, jobs } = this.options;
    const queueUrl = job.worker === 'gpu' ? this.options.gpuShardQueueUrl! : this.options.shardQueueUrl;
    const plan = isColumnarFormat(job.format) ? await loadPlan(this.options.s3, this.options.bucket, job.jobId) : undefined;
    const shards = plan?.shards ?? planShards(job.inputBytes, job.shardBytes);
    const messages = shards.map((range) => {
      const message: ShardMessage = {
        v: 1,
        job: job.jobId,
        shard: range.shard,
        shards: shards.length,
        bucket: job.inputBucket,
        key: job.inputKey,
        etag: job.inputEtag,
        size: job.inputBytes,
        start: range.start,
        end: range.end,
        model: job.model,
        version: job.version,
        format: job.format,
        csvHeader: job.csvHeader,
        batchSize: job.batchSize,
        ...(job.outputs ? { outputs: job.outputs } : {}),
        ...(plan ? columnarMessageFields(plan, range as PlannedShard) : {}),
      };
      return { id: `s${range.shard}`, body: JSON.stringify(message) };
    });
    try {
      await sendAllMessages(sqs, queueUrl, messages, this.options.send);
    } catch (error) {
      if (!(error instanceof EnqueueError)) throw error;
      this.options.log?.('error', 'shards could not be enqueued', { job: job.jobId, error: error.message });
      await jobs.transition(job.jobId, 'planning', 'failed', { reason: `shards could not be enqueued: ${error.message}`, finishedAt: this.now() });
      throw new HttpError(503, `batch job '${job.jobId}' could not be started: ${error.message}; submit it again`, { cause: error });
    }
    await jobs.transition(job.jobId, 'planning', 'running', { plannedAt: this.now() });
    const current = (await jobs.get(job.jobId))!;
    // An empty input, or shards that all finished before the job left `planning`.
    await finishIfComplete(this.finishDeps, current);
    return jobView((await jobs.get(job.jobId))!, this.now());
  }
}
