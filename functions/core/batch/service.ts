import { createHash, randomUUID } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import * as z from 'zod';
import { BadRequestError, ConflictError, HttpError, NotFoundError } from '../platform/errors.ts';
import type { InferenceService } from '../serving/inference-service.ts';
import { keys } from '../artifacts/keys.ts';
import { exactJsonText } from '../v2/json-numbers.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName } from '../artifacts/names.ts';
import type { JobTable } from '../jobs/job-table.ts';
import type { JobRecord, Json } from '../jobs/record.ts';
import type { JobRuntime } from '../jobs/runtime.ts';
import { EnqueueError } from '../jobs/step-queue.ts';
import { headInput, planShards, type InputObject } from './input.ts';
import { BATCH_KIND } from './kind.ts';
import { batchIncompatibility } from './rows.ts';
import { formatOfKey, isColumnarInput, planColumnarJob, planInputObject, savePlan, type ColumnarPlan } from './formats/plan.ts';
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_SHARD_BYTES,
  MAX_SHARDS,
  jobView,
  submitBatchRequestSchema,
  type BatchFormat,
  type BatchJobView,
  type BatchWorker,
  type PlannedBatch,
  type SubmitBatchRequest,
} from './schemas.ts';

/**
 * Submission and status, free of any transport: the API, the upload trigger and the submit queue
 * all call `submit`, which validates, plans shards by byte range and submits the job to the job
 * runtime, which writes its record and sends its shard steps. A resubmission (same idempotency key,
 * or the same upload) returns the job that exists.
 */
export interface BatchServiceOptions {
  s3: S3Client;
  /** The job runtime with the batch kind, and its table to read jobs from. */
  runtime: JobRuntime;
  table: JobTable;
  store: ModelRepository;
  /** Resolves versions and aliases the same way the inference API does. */
  inference: Pick<InferenceService, 'resolveVersion'>;
  bucket: string;
  /** Whether GPU containers consume the GPU queue; without them every job runs on Lambda. */
  gpuWorkers?: boolean;
  /** Inputs at least this large go to the GPU queue when the client leaves the choice to us. */
  gpuThresholdBytes?: number | undefined;
  now?: () => number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
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

  private async find(jobId: string): Promise<JobRecord | undefined> {
    const job = await this.options.table.getJob(jobId);
    return job?.kind === BATCH_KIND ? job : undefined;
  }

  async get(jobId: string): Promise<BatchJobView> {
    assertValidName(jobId, 'job id');
    const job = await this.find(jobId);
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
    const refused: PlannedBatch = {
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
      requestHash: '',
    };
    await this.options.runtime.refuse({ kind: BATCH_KIND, id: file, request: refused as Json, error: `the upload was refused: ${reason}` });
  }

  async submit(body: unknown, source: SubmissionSource = { kind: 'api' }): Promise<SubmitResult> {
    const request = parseSubmitRequest(body);
    const { store, inference, s3 } = this.options;
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
      inline = request.rows.map((r) => exactJsonText(r)).join('\n') + '\n';
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

    let existing = await this.options.table.getJob(jobId);
    if (existing && existing.kind !== BATCH_KIND) throw new ConflictError(`job '${jobId}' exists and is a ${existing.kind} job; use another ${source.kind === 'upload' ? 'file name' : 'idempotency key'}`);
    // A refused upload left a `failed` record under its name; uploading it again (fixed) replaces it.
    if (existing?.refused && source.kind === 'upload') existing = undefined;
    if (existing && !inline) {
      // Same job id: the same request again is the same job; anything else is a conflict.
      return this.resume(existing, source, await this.requestHash(request, version, inputKey, rowsHash, source));
    }
    if (inline) {
      if (existing) return this.resume(existing, source, await this.requestHash(request, version, inputKey, rowsHash, source));
      await s3.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: inputKey, Body: inline, ContentType: 'application/x-ndjson' }));
    }
    let layout: ColumnarPlan | undefined;
    if (columnar) {
      layout = await planColumnarJob({
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
      format = layout.format;
    } else if (request.columns || request.key_columns || request.output_format === 'parquet') {
      throw new BadRequestError('columns, key_columns and output_format "parquet" apply to Parquet, .npy and .npz input');
    }
    const input = layout ? planInputObject(layout, this.options.bucket, inputKey) : await headInput(s3, this.options.bucket, inputKey);
    const requestHash = await this.requestHash(request, version, inputKey, rowsHash, source, input);

    const worker = this.workerFor(request, manifest.tier, input);
    const shardBytes = Math.max(request.shard_bytes ?? DEFAULT_SHARD_BYTES, Math.ceil(input.size / MAX_SHARDS));
    const shards = layout?.shards ?? planShards(input.size, shardBytes);
    const plan: PlannedBatch = {
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
      requestHash,
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    };
    // The shard steps and the merge read a columnar job's shards and mapping from its saved plan (kind.ts).
    if (layout) await savePlan(s3, this.options.bucket, jobId, { ...layout, requestHash });
    let submitted: { job: JobRecord; created: boolean };
    try {
      submitted = await this.options.runtime.submit({ kind: BATCH_KIND, id: jobId, request: plan as Json });
    } catch (error) {
      if (error instanceof ConflictError) {
        // Lost a race with another submission under this id: answer as a resubmission.
        return this.resume((await this.find(jobId))!, source, requestHash);
      }
      if (!(error instanceof EnqueueError)) throw error;
      this.options.log?.('error', 'shards could not be enqueued', { job: jobId, error: error.message });
      await this.options.table.transition(jobId, ['queued'], 'failed', { error: `shards could not be enqueued: ${error.message}` }, this.now());
      throw new HttpError(503, `batch job '${jobId}' could not be started: ${error.message}; submit it again`, { cause: error });
    }
    if (!submitted.created) return this.resume(submitted.job, source, requestHash);
    this.options.log?.('info', 'batch job planned', { job: jobId, shards: shards.length, bytes: input.size, worker, model: request.model, version });
    return { job: jobView(submitted.job, this.now()), created: true };
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
    const gpu = this.options.gpuWorkers ?? false;
    const choice = request.worker ?? 'auto';
    if (choice === 'gpu' && !gpu) throw new BadRequestError('this deployment has no GPU workers; submit with worker "lambda" or "auto"');
    if (choice !== 'auto') return choice;
    if (!gpu) return 'lambda';
    return tier === 'gpu' || input.size >= (this.options.gpuThresholdBytes ?? Number.POSITIVE_INFINITY) ? 'gpu' : 'lambda';
  }

  private async resume(existing: JobRecord, source: SubmissionSource, requestHash: string): Promise<SubmitResult> {
    const plan = existing.request as unknown as PlannedBatch;
    if (plan.requestHash !== requestHash) {
      const what = source.kind === 'upload' ? `an upload named '${existing.id}'` : 'this idempotency key';
      throw new ConflictError(`batch job '${existing.id}' already exists for ${what} with a different request; use a new ${source.kind === 'upload' ? 'file name' : 'idempotency key'}`);
    }
    // A submission that died between its record and its shards is finished by whoever resubmits it
    // later: the runtime sends a job's steps again once it has been queued long enough.
    if (existing.state === 'queued') {
      const again = await this.options.runtime.submit({ kind: BATCH_KIND, id: existing.id, request: existing.request });
      return { job: jobView(again.job, this.now()), created: false };
    }
    return { job: jobView(existing, this.now()), created: false };
  }
}
