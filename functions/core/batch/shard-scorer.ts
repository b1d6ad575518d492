import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { keys } from '../artifacts/keys.ts';
import { PromiseCache } from '../platform/promise-cache.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { ModelSessions } from '../sessions/model-sessions.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { JobStepError } from '../jobs/kinds.ts';
import { readShardLineBytes } from './input.ts';
import { jsonlBody } from './output.ts';
import { ScratchArena } from './formats/scratch.ts';
import { scoreRows } from './scoring.ts';
import { isColumnarFormat } from './formats/plan.ts';
import { scoreColumnarShard, type ColumnarShardMessage } from './formats/score.ts';
import type { ShardMessage } from './schemas.ts';

/**
 * One shard's work, for either worker: read its byte range, score its rows, write its output and
 * error objects under fixed keys (a rerun overwrites them). The batch job kind's shard step calls
 * this (kind.ts); counting the shard and merging are the job runtime's and the merge step's. The
 * Lambda worker and the GPU container run it with their own sessions (CPU or CUDA).
 */
export interface ShardScorerOptions {
  s3: S3Client;
  bucket: string;
  store: ModelRepository;
  sessions: ModelSessions;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

export interface ShardOutcome {
  job: string;
  shard: number;
  rows: number;
  failed: number;
  ms: number;
}

/**
 * How long a worker keeps a model version's manifest. The manifest object of a version never
 * changes; what can is its registration, so a version deregistered while its job runs stops being
 * scored within this time instead of at the next shard.
 */
const MANIFEST_TTL_MS = 30_000;

export class ShardScorer {
  private readonly options: ShardScorerOptions;
  /** The manifests of 16 model versions at most. */
  private readonly manifests = new PromiseCache<ModelManifest>(16, MANIFEST_TTL_MS);

  constructor(options: ShardScorerOptions) {
    this.options = options;
  }

  /** The version's manifest, read at most once per MANIFEST_TTL_MS (each read also checks its registration). */
  private manifest(model: string, version: string): Promise<ModelManifest> {
    return this.manifests.get(`${model}@${version}`, () => this.options.store.getManifest(model, version));
  }

  async score(message: ShardMessage, options: { signal?: AbortSignal } = {}): Promise<ShardOutcome> {
    const { s3, bucket, sessions } = this.options;
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    try {
      const manifest = await this.manifest(message.model, message.version);
      const model = await sessions.get(manifest);
      const loaded = performance.now();
      let scored: { rows: number; failed: number; errorLines: string[]; output: { key: string; body: Uint8Array; contentType: string } };
      let read = loaded;
      if (isColumnarFormat(message.format)) {
        // Columnar shards read and score in one pass over their column buffers (formats/score.ts).
        const result = await scoreColumnarShard(s3, model, message as ColumnarShardMessage, options.signal);
        read = performance.now();
        scored = { ...result, output: { key: result.outputKey, body: result.body, contentType: result.contentType } };
      } else {
        // The range's bytes are borrowed for the shard; its lines are decoded one at a time as they are scored.
        const arena = new ScratchArena();
        try {
          let lines = await readShardLineBytes(s3, message, message.start, message.end, { arena });
          read = performance.now();
          if (message.format === 'csv' && message.csvHeader && message.start === 0) lines = lines.slice(1);
          const rows = await scoreRows(model, lines, { format: message.format, batchSize: message.batchSize, outputs: message.outputs, signal: options.signal });
          scored = { ...rows, output: { key: keys.batchShardOutput(message.job, message.shard), body: rows.body, contentType: 'application/x-ndjson' } };
        } finally {
          arena.release();
        }
      }
      const scoredAt = performance.now();
      // A shard without errors writes no errors object: the merge reads one only where the shard's
      // recorded result counts failed rows, so an object an earlier attempt left is never read.
      await Promise.all([
        s3.send(new PutObjectCommand({ Bucket: bucket, Key: scored.output.key, Body: scored.output.body, ContentType: scored.output.contentType })),
        scored.errorLines.length > 0 ? s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.batchShardErrors(message.job, message.shard), Body: jsonlBody(scored.errorLines), ContentType: 'application/x-ndjson' })) : undefined,
      ]);
      const ms = performance.now() - started;
      const phases = {
        setupMs: Math.round(loaded - started),
        readMs: Math.round(read - loaded),
        scoreMs: Math.round(scoredAt - read),
        writeMs: Math.round(ms - (scoredAt - started)),
      };
      // The process's CPU over the shard (with two shards in progress at once, both count).
      const cpu = process.cpuUsage(cpuStarted);
      this.options.log?.('info', 'shard scored', { job: message.job, shard: message.shard, rows: scored.rows, failed: scored.failed, ms, ...phases, cpuMs: Math.round((cpu.user + cpu.system) / 1000) });
      return { job: message.job, shard: message.shard, rows: scored.rows, failed: scored.failed, ms };
    } catch (error) {
      // A shard's failure is reported to its client as it happened (the job's reason, the merged
      // rows' errors); a shard aborted because its worker stops is handed back as it is.
      if (options.signal?.aborted) throw error;
      throw new JobStepError((error as Error).message, { cause: error });
    }
  }
}
