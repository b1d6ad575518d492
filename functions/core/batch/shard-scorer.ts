import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import * as z from 'zod';
import { keys } from '../keys.ts';
import type { ModelSessions } from '../model-sessions.ts';
import type { ModelStore } from '../model-store.ts';
import { readShardLines } from './input.ts';
import type { BatchJobStore } from './job-store.ts';
import { finishIfComplete, type FinishDeps } from './merge.ts';
import { scoreRows } from './scoring.ts';
import { isColumnarFormat } from './formats/plan.ts';
import { scoreColumnarShard, type ColumnarShardMessage } from './formats/score.ts';
import { FINAL_STATES, shardMessageSchema, type JobState, type ShardMessage } from './schemas.ts';

/**
 * One shard, end to end, for either worker: read its byte range, score its rows, write its output
 * and error objects under fixed keys, count it once, and merge the job if it was the last. The
 * Lambda handler and the GPU container call this with their own sessions (CPU or CUDA).
 */
export interface ShardScorerOptions {
  s3: S3Client;
  bucket: string;
  jobs: BatchJobStore;
  store: ModelStore;
  sessions: ModelSessions;
  mergeLeaseMs?: number;
  log?: FinishDeps['log'];
}

export type ShardOutcome =
  | { status: 'scored'; job: string; shard: number; rows: number; failed: number; ms: number; counted: boolean; attempt: number; finished?: JobState }
  | { status: 'skipped'; job: string; shard: number; reason: string };

/** A message that can never be scored (not a shard message at all). */
export class InvalidShardMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidShardMessageError';
  }
}

export function parseShardMessage(body: string): ShardMessage {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new InvalidShardMessageError(`not a shard message: the body is not JSON (${body.slice(0, 80)})`);
  }
  const parsed = shardMessageSchema.safeParse(json);
  if (!parsed.success) throw new InvalidShardMessageError(`not a shard message: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export class ShardScorer {
  private readonly options: ShardScorerOptions;

  constructor(options: ShardScorerOptions) {
    this.options = options;
  }

  private get finishDeps(): FinishDeps {
    const { s3, bucket, jobs, mergeLeaseMs, log } = this.options;
    return { s3, bucket, jobs, ...(mergeLeaseMs !== undefined ? { mergeLeaseMs } : {}), ...(log ? { log } : {}) };
  }

  async score(message: ShardMessage, options: { signal?: AbortSignal } = {}): Promise<ShardOutcome> {
    const { s3, bucket, jobs, store, sessions } = this.options;
    const job = await jobs.get(message.job);
    if (!job) return { status: 'skipped', job: message.job, shard: message.shard, reason: 'the job does not exist' };
    if (FINAL_STATES.has(job.state)) return { status: 'skipped', job: message.job, shard: message.shard, reason: `the job is already ${job.state}` };
    const started = performance.now();
    const attempt = await jobs.shardStarted(message.job, message.shard);
    this.options.log?.('info', 'shard started', { job: message.job, shard: message.shard, attempt });
    try {
      const manifest = await store.getManifest(message.model, message.version);
      const model = await sessions.get(manifest);
      const loaded = performance.now();
      // Buffers, not strings: the SDK warns that an empty string is a stream of unknown length.
      const body = (lines: string[]) => Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8');
      let scored: { rows: number; failed: number; errorLines: string[]; output: { key: string; body: Uint8Array; contentType: string } };
      let read = loaded;
      if (isColumnarFormat(message.format)) {
        // Columnar shards read and score in one pass over their column buffers (formats/score.ts).
        const result = await scoreColumnarShard(s3, model, message as ColumnarShardMessage, options.signal);
        read = performance.now();
        scored = { ...result, output: { key: result.outputKey, body: result.body, contentType: result.contentType } };
      } else {
        let lines = await readShardLines(s3, message, message.start, message.end);
        read = performance.now();
        if (message.format === 'csv' && message.csvHeader && message.start === 0) lines = lines.slice(1);
        const rows = await scoreRows(model, lines, { format: message.format, batchSize: message.batchSize, outputs: message.outputs, signal: options.signal });
        scored = { ...rows, output: { key: keys.batchShardOutput(message.job, message.shard), body: body(rows.lines), contentType: 'application/x-ndjson' } };
      }
      const scoredAt = performance.now();
      await Promise.all([
        s3.send(new PutObjectCommand({ Bucket: bucket, Key: scored.output.key, Body: scored.output.body, ContentType: scored.output.contentType })),
        s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.batchShardErrors(message.job, message.shard), Body: body(scored.errorLines), ContentType: 'application/x-ndjson' })),
      ]);
      const written = performance.now();
      const completion = await jobs.completeShard(message.job, message.shard, scored.rows, scored.failed);
      const finished = await finishIfComplete(this.finishDeps, completion.job);
      const ms = performance.now() - started;
      const phases = {
        setupMs: Math.round(loaded - started),
        readMs: Math.round(read - loaded),
        scoreMs: Math.round(scoredAt - read),
        writeMs: Math.round(written - scoredAt),
        countAndMergeMs: Math.round(performance.now() - written),
      };
      this.options.log?.('info', 'shard scored', { job: message.job, shard: message.shard, rows: scored.rows, failed: scored.failed, ms, ...phases, counted: completion.counted, finished });
      return {
        status: 'scored',
        job: message.job,
        shard: message.shard,
        rows: scored.rows,
        failed: scored.failed,
        ms,
        counted: completion.counted,
        attempt,
        ...(finished ? { finished } : {}),
      };
    } catch (error) {
      await jobs.shardFailed(message.job, message.shard, (error as Error).message).catch(() => undefined);
      throw error;
    }
  }

  /**
   * A shard the dead-letter queue received: counted as dead (once), and the job merged and ended
   * `partial` (or `failed`) when it was the last one outstanding.
   */
  async deadLetter(message: ShardMessage): Promise<{ counted: boolean; finished?: JobState }> {
    if (!(await this.options.jobs.get(message.job))) {
      // Nothing to account for (the job record is gone); keeping the message would retry it for weeks.
      this.options.log?.('warn', 'dead shard of a job that does not exist; dropped', { job: message.job, shard: message.shard });
      return { counted: false };
    }
    const dead = await this.options.jobs.markShardDead(message.job, message.shard);
    this.options.log?.('warn', 'shard is dead', { job: message.job, shard: message.shard, counted: dead.counted, lastError: dead.lastError });
    const finished = await finishIfComplete(this.finishDeps, dead.job);
    return { counted: dead.counted, ...(finished ? { finished } : {}) };
  }
}
