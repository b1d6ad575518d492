import { randomUUID } from 'node:crypto';
import { CopyObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { keys } from '../keys.ts';
import { planShards, readShardLines } from './input.ts';
import type { BatchJobStore } from './job-store.ts';
import { S3ObjectWriter } from './output.ts';
import { errorLine } from './scoring.ts';
import { isColumnarFormat, loadPlan, type PlannedShard } from './formats/plan.ts';
import { parquetShardKey } from './formats/score.ts';
import { FINAL_STATES, type BatchJobRecord, type JobState } from './schemas.ts';

/**
 * The end of a job: once every shard is counted (scored or dead), one caller claims the merge and
 * writes `result.jsonl` (every input row once, in input order, scored or with its error) and
 * `errors.jsonl` (the error lines alone), renumbering each shard's rows from where the previous
 * shard's ended. Both keys are fixed, so a merge redone after a crash overwrites, never duplicates.
 */
export interface FinishDeps {
  s3: S3Client;
  bucket: string;
  jobs: BatchJobStore;
  /** How long a merger may hold the job before another may take over; longer than any merge. */
  mergeLeaseMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

export function isComplete(job: BatchJobRecord): boolean {
  return job.shardsDone + job.shardsDead >= job.shardsTotal;
}

async function getText(s3: S3Client, bucket: string, key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return out.Body!.transformToString('utf8');
}

function renumber(text: string, base: number): string {
  if (text === '') return '';
  let result = '';
  let from = 0;
  while (from < text.length) {
    let to = text.indexOf('\n', from);
    if (to === -1) to = text.length;
    if (to > from) {
      const comma = text.indexOf(',', from + 7);
      result += `{"row":${base + Number(text.slice(from + 7, comma))}${text.slice(comma, to)}\n`;
    }
    from = to + 1;
  }
  return result;
}

export interface MergeOutcome {
  /** Where the result is: result.jsonl, or for Parquet output the folder of its parts. */
  resultKey?: string;
  deadRows: number;
  deadShards: { shard: number; rows: number | undefined; error: string }[];
}

export async function mergeJob(deps: FinishDeps, job: BatchJobRecord): Promise<MergeOutcome> {
  const records = new Map((await deps.jobs.shards(job.jobId)).map((s) => [s.shard, s]));
  // Columnar jobs keep their shards in their plan; Parquet results are the shards' parts, in order.
  const plan = isColumnarFormat(job.format) ? await loadPlan(deps.s3, deps.bucket, job.jobId) : undefined;
  const parquetOut = plan?.outputFormat === 'parquet';
  const ranges = plan?.shards ?? planShards(job.inputBytes, job.shardBytes);
  const resultKey = parquetOut ? `${keys.batchPrefix(job.jobId)}result/` : keys.batchResult(job.jobId);
  const result = parquetOut ? undefined : new S3ObjectWriter({ s3: deps.s3, bucket: deps.bucket, key: resultKey });
  const errors = new S3ObjectWriter({ s3: deps.s3, bucket: deps.bucket, key: keys.batchErrors(job.jobId) });
  const outcome: MergeOutcome = { resultKey, deadRows: 0, deadShards: [] };
  // Shard outputs are fetched a few ahead of the one being written, in order, memory bounded.
  const AHEAD = 4;
  const fetches = new Map<number, Promise<[string, string]>>();
  const fetchShard = (shard: number) => {
    if (shard >= ranges.length || fetches.has(shard) || !job.doneShards?.has(shard)) return;
    const pending = Promise.all([
      parquetOut
        ? deps.s3
            .send(new CopyObjectCommand({ Bucket: deps.bucket, Key: `${resultKey}part-${String(shard).padStart(6, '0')}.parquet`, CopySource: `${deps.bucket}/${parquetShardKey(job.jobId, shard)}` }))
            .then(() => '')
        : getText(deps.s3, deps.bucket, keys.batchShardOutput(job.jobId, shard)),
      getText(deps.s3, deps.bucket, keys.batchShardErrors(job.jobId, shard)),
    ]);
    pending.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
    fetches.set(shard, pending);
  };
  let base = 0;
  for (const range of ranges) {
    const record = records.get(range.shard);
    for (let next = range.shard; next <= range.shard + AHEAD; next++) fetchShard(next);
    if (job.doneShards?.has(range.shard)) {
      const [lines, errs] = await fetches.get(range.shard)!;
      fetches.delete(range.shard);
      await result?.write(renumber(lines, base));
      await errors.write(renumber(errs, base));
      base += record?.rows ?? 0;
      continue;
    }
    // A dead shard: its rows are still listed, each with the reason, so numbering stays that of the input.
    const error = `shard ${range.shard} failed: ${record?.lastError ?? 'it exhausted its receives without recording an error'}`;
    // A columnar shard's rows were counted at planning; a line shard's are counted now.
    let rows: number | undefined = (range as Partial<PlannedShard>).rows;
    try {
      rows ??= (
        await readShardLines(deps.s3, { bucket: job.inputBucket, key: job.inputKey, etag: job.inputEtag, size: job.inputBytes }, range.start, range.end)
      ).length;
    } catch (cause) {
      deps.log?.('warn', 'rows of a dead shard could not be counted', { job: job.jobId, shard: range.shard, error: (cause as Error).message });
    }
    outcome.deadShards.push({ shard: range.shard, rows, error });
    if (rows === undefined) continue;
    let text = '';
    for (let i = 0; i < rows; i++) text += `${errorLine(base + i, error)}\n`;
    await result?.write(text);
    await errors.write(text);
    base += rows;
    outcome.deadRows += rows;
  }
  await result?.close();
  await errors.close();
  return outcome;
}

function deadReason(job: BatchJobRecord, outcome: MergeOutcome): string {
  const first = outcome.deadShards.slice(0, 3).map((d) => d.error).join('; ');
  const more = outcome.deadShards.length > 3 ? `; and ${outcome.deadShards.length - 3} more` : '';
  const uncounted = outcome.deadShards.some((d) => d.rows === undefined)
    ? ' (some of their rows could not be counted, so row numbers after them are shifted)'
    : '';
  return (
    `${outcome.deadShards.length} of ${job.shardsTotal} shard(s) went to the dead-letter queue after repeated failures; ` +
    `their ${outcome.deadRows} row(s) are listed in errors.jsonl${uncounted}: ${first}${more}`
  );
}

/**
 * Merges and finishes the job when every shard is counted and nobody else holds the merge. Returns
 * the state the job ended in, or undefined when this caller did not finish it.
 */
export async function finishIfComplete(deps: FinishDeps, job: BatchJobRecord): Promise<JobState | undefined> {
  if (FINAL_STATES.has(job.state) || job.state === 'planning' || !isComplete(job)) return undefined;
  const token = randomUUID();
  if (!(await deps.jobs.claimMerge(job.jobId, token, deps.mergeLeaseMs ?? 5 * 60_000))) return undefined;
  const current = (await deps.jobs.get(job.jobId))!;
  const outcome = await mergeJob(deps, current);
  const state: JobState =
    outcome.deadShards.length === 0 ? 'succeeded' : current.rowsScored === 0 ? 'failed' : 'partial';
  const finished = await deps.jobs.finish(job.jobId, token, state, {
    rowsFailed: current.rowsFailed + outcome.deadRows,
    resultKey: outcome.resultKey ?? keys.batchResult(job.jobId),
    errorsKey: keys.batchErrors(job.jobId),
    ...(outcome.deadShards.length > 0 ? { reason: deadReason(current, outcome) } : {}),
  });
  deps.log?.('info', 'batch job finished', { job: job.jobId, state, finished, deadShards: outcome.deadShards.length });
  return finished ? state : undefined;
}
