import { CopyObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { keys } from '../artifacts/keys.ts';
import type { StepRecord } from '../jobs/record.ts';
import { planShards, readShardLines } from './input.ts';
import { S3ObjectWriter } from './output.ts';
import { errorLine } from './scoring.ts';
import type { ColumnarPlan, PlannedShard } from './formats/plan.ts';
import { parquetShardKey } from './formats/score.ts';
import type { MergeResult, PlannedBatch, ShardResult } from './schemas.ts';

/**
 * The end of a job, its final step once every shard step has finished: writes `result.jsonl`
 * (every input row once, in input order, scored or with its error) and `errors.jsonl` (the error
 * lines alone), renumbering each shard's rows from where the previous shard's ended. Both keys are
 * fixed, so a merge redone after a crash overwrites, never duplicates.
 */
export interface MergeDeps {
  s3: S3Client;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

/** The step name of each shard, in input order. */
export const shardStepName = (shard: number) => `shard-${String(shard).padStart(6, '0')}`;

async function getBytes(s3: S3Client, bucket: string, key: string): Promise<Uint8Array> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return out.Body!.transformToByteArray();
}

const NEWLINE = 0x0a;
/** `{"row":`, which every line of a shard's output and errors starts with (scoring.ts writes them). */
const ROW_PREFIX = 7;

/**
 * A shard's lines with each row number moved up by `base`, done on the bytes: each line's digits are
 * read and rewritten and the rest of the line is copied as it is, so the text is never decoded and
 * encoded again (it is most of what a JSONL job's merge handles).
 */
export function renumber(bytes: Uint8Array, base: number): Buffer {
  if (bytes.length === 0) return Buffer.alloc(0);
  let lines = 0;
  for (let at = bytes.indexOf(NEWLINE); at !== -1; at = bytes.indexOf(NEWLINE, at + 1)) lines++;
  // A row number grows by at most the digits of `base`; one more line may lack its newline.
  const out = Buffer.allocUnsafe(bytes.length + (lines + 1) * (String(base).length + 2));
  let written = 0;
  let from = 0;
  while (from < bytes.length) {
    let to = bytes.indexOf(NEWLINE, from);
    if (to === -1) to = bytes.length;
    if (to > from) {
      let p = from + ROW_PREFIX;
      let row = 0;
      while (p < to && bytes[p]! >= 0x30 && bytes[p]! <= 0x39) row = row * 10 + (bytes[p++]! - 0x30);
      out.set(bytes.subarray(from, from + ROW_PREFIX), written);
      written += ROW_PREFIX;
      written += out.write(String(base + row), written, 'latin1');
      out.set(bytes.subarray(p, to), written);
      written += to - p;
      out[written++] = NEWLINE;
    }
    from = to + 1;
  }
  return out.subarray(0, written);
}

interface DeadShard {
  shard: number;
  rows: number | undefined;
  error: string;
}

/** The reason a failed step recorded, less the runtime's attempt count (the job's reason gives it). */
function shardError(step: StepRecord | undefined): string {
  return (step?.lastError ?? 'it ended without recording an error').replace(/ \(after \d+ attempts\)$/, '');
}

/**
 * `columnar` is the plan a columnar job saved at submission: its shards are the plan's, and with
 * Parquet output the result is the shards' parts, in order, under `result/` (the errors are merged as always).
 */
export async function mergeJob(deps: MergeDeps, jobId: string, plan: PlannedBatch, steps: readonly StepRecord[], columnar?: ColumnarPlan): Promise<MergeResult> {
  const bucket = plan.inputBucket;
  const records = new Map(steps.map((s) => [s.name, s]));
  const scored = (shard: number) => records.get(shardStepName(shard))?.state === 'succeeded';
  const parquetOut = columnar?.outputFormat === 'parquet';
  const ranges = columnar?.shards ?? planShards(plan.inputBytes, plan.shardBytes);
  const resultKey = parquetOut ? `${keys.batchPrefix(jobId)}result/` : keys.batchResult(jobId);
  const result = parquetOut ? undefined : new S3ObjectWriter({ s3: deps.s3, bucket, key: resultKey });
  const errors = new S3ObjectWriter({ s3: deps.s3, bucket, key: keys.batchErrors(jobId) });
  const dead: DeadShard[] = [];
  let deadRows = 0;
  // Shard outputs are fetched a few ahead of the one being written, in order, memory bounded.
  const AHEAD = 4;
  const fetches = new Map<number, Promise<[Uint8Array, Uint8Array]>>();
  const fetchShard = (shard: number) => {
    if (shard >= ranges.length || fetches.has(shard) || !scored(shard)) return;
    const failedRows = (records.get(shardStepName(shard))?.result as ShardResult | undefined)?.failed ?? 0;
    const pending = Promise.all([
      parquetOut
        ? deps.s3
            .send(new CopyObjectCommand({ Bucket: bucket, Key: `${resultKey}part-${String(shard).padStart(6, '0')}.parquet`, CopySource: `${bucket}/${parquetShardKey(jobId, shard)}` }))
            .then(() => new Uint8Array(0))
        : getBytes(deps.s3, bucket, keys.batchShardOutput(jobId, shard)),
      failedRows > 0 ? getBytes(deps.s3, bucket, keys.batchShardErrors(jobId, shard)) : Promise.resolve(new Uint8Array(0)),
    ]);
    pending.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
    fetches.set(shard, pending);
  };
  let base = 0;
  for (const range of ranges) {
    const record = records.get(shardStepName(range.shard));
    for (let next = range.shard; next <= range.shard + AHEAD; next++) fetchShard(next);
    if (scored(range.shard)) {
      const [lines, errs] = await fetches.get(range.shard)!;
      fetches.delete(range.shard);
      await result?.write(renumber(lines, base));
      await errors.write(renumber(errs, base));
      base += (record?.result as ShardResult | undefined)?.rows ?? 0;
      continue;
    }
    // A failed shard: its rows are still listed, each with the reason, so numbering stays that of the input.
    const error = `shard ${range.shard} failed: ${shardError(record)}`;
    // A columnar shard's rows were counted at planning; a line shard's are counted now.
    let rows: number | undefined = (range as Partial<PlannedShard>).rows;
    if (rows === undefined) {
      try {
        let lines = await readShardLines(deps.s3, { bucket, key: plan.inputKey, etag: plan.inputEtag, size: plan.inputBytes }, range.start, range.end);
        if (plan.format === 'csv' && plan.csvHeader && range.start === 0) lines = lines.slice(1);
        rows = lines.length;
      } catch (cause) {
        deps.log?.('warn', 'rows of a failed shard could not be counted', { job: jobId, shard: range.shard, error: (cause as Error).message });
      }
    }
    dead.push({ shard: range.shard, rows, error });
    if (rows === undefined) continue;
    let text = '';
    for (let i = 0; i < rows; i++) text += `${errorLine(base + i, error)}\n`;
    await result?.write(text);
    await errors.write(text);
    base += rows;
    deadRows += rows;
  }
  await result?.close();
  await errors.close();
  return {
    resultKey,
    errorsKey: keys.batchErrors(jobId),
    shardsFailed: dead.length,
    deadRows,
    ...(dead.length > 0 ? { reason: failedReason(plan, dead, deadRows) } : {}),
  };
}

function failedReason(plan: PlannedBatch, dead: readonly DeadShard[], deadRows: number): string {
  const first = dead.slice(0, 3).map((d) => d.error).join('; ');
  const more = dead.length > 3 ? `; and ${dead.length - 3} more` : '';
  const uncounted = dead.some((d) => d.rows === undefined) ? ' (some of their rows could not be counted, so row numbers after them are shifted)' : '';
  return `${dead.length} of ${plan.shardsTotal} shard(s) failed after repeated attempts; their ${deadRows} row(s) are listed in errors.jsonl${uncounted}: ${first}${more}`;
}
