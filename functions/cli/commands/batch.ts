import { createReadStream } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createHash } from 'node:crypto';
import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import type { Command } from 'commander';
import { createSqsClient } from '../../core/aws/clients.ts';
import { keys } from '../../core/artifacts/keys.ts';
import { FINAL_STATES, type BatchJobView } from '../../core/batch/schemas.ts';
import { cliContext, CliError, localStackFile, type CliContext, type CliOptions } from '../context.ts';
import { choiceOption, intervalOption, positiveInteger, sleep } from '../options.ts';

/** `mass batch submit | status | fetch` and `mass worker`. */

async function getJob(ctx: CliContext, id: string): Promise<BatchJobView> {
  const { bytes } = await ctx.request('GET', `/v2/batches/${encodeURIComponent(id)}`);
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as BatchJobView;
}

export function progressLine(job: BatchJobView, width = 30): string {
  const { total, done, failed } = job.shards;
  const fraction = total === 0 ? (FINAL_STATES.has(job.state) ? 1 : 0) : (done + failed) / total;
  const filled = Math.round(fraction * width);
  const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
  const rate = job.rows_per_s === null ? '' : `  ${Math.round(job.rows_per_s).toLocaleString('en-US')} rows/s`;
  const dead = failed > 0 ? ` (${failed} dead)` : '';
  return `[${bar}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${done + failed}/${total} shards${dead}  ${job.rows.scored.toLocaleString('en-US')} rows scored, ${job.rows.failed.toLocaleString('en-US')} failed${rate}  ${job.state}`;
}

function summary(job: BatchJobView): string {
  return [
    `job      ${job.id}`,
    `state    ${job.state}${job.reason ? ` — ${job.reason}` : ''}`,
    `model    ${job.model} version ${job.version}`,
    `input    ${job.input} (${job.format}, batch size ${job.batch_size}, ${job.worker} worker)`,
    `progress ${progressLine(job)}`,
    ...(job.result ? [`result   ${job.result}`, `errors   ${job.errors}`] : []),
  ].join('\n');
}

async function watch(ctx: CliContext, id: string, intervalSeconds: number): Promise<BatchJobView> {
  const tty = process.stderr.isTTY;
  let last = '';
  for (;;) {
    const job = await getJob(ctx, id);
    const line = progressLine(job);
    if (line !== last) {
      process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
      last = line;
    }
    if (FINAL_STATES.has(job.state)) {
      if (tty) process.stderr.write('\n');
      return job;
    }
    await sleep(intervalSeconds);
  }
}

function contentTypeOf(file: string): string {
  if (file.endsWith('.csv')) return 'text/csv';
  if (file.endsWith('.parquet')) return 'application/vnd.apache.parquet';
  if (file.endsWith('.npy') || file.endsWith('.npz')) return 'application/octet-stream';
  return 'application/x-ndjson';
}

/** `--columns image=pixels,features=a+b+c` → {image: ['pixels'], features: ['a', 'b', 'c']}. */
export function parseColumns(value: string): Record<string, string[]> {
  const mapping: Record<string, string[]> = {};
  for (const part of value.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) throw new CliError(`--columns: '${part}' is not input=column`);
    mapping[part.slice(0, eq)] = part.slice(eq + 1).split('+').map((c) => c.trim());
  }
  return mapping;
}

function splitS3(uri: string): { bucket: string; key: string } {
  const rest = uri.slice('s3://'.length);
  const slash = rest.indexOf('/');
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

export function registerBatchCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const batch = program.command('batch').description('score a file of rows in batch: submit, watch, fetch');

  batch
    .command('submit')
    .description('upload a JSONL (V2 tensors per line), CSV, Parquet, .npy or .npz file and submit it as a batch job')
    .argument('[file]', 'local file, or s3://<bucket>/batches/inputs/... already uploaded')
    .option('--input <location>', 'an uploaded input instead of <file>: a key, a folder ending in /, or a pattern like part-*.parquet; repeat for a list', (v: string, all: string[] = []) => [...all, v])
    .option('--columns <mapping>', 'columnar input: input=column, or input=col1+col2+... for a tabular row; comma-separated', parseColumns)
    .option('--key-columns <names>', 'Parquet input: columns copied to the result beside the outputs (comma-separated)')
    .addOption(choiceOption('--output-format <format>', 'result as parquet or jsonl (default: parquet for Parquet input, else jsonl)', ['parquet', 'jsonl']))
    .requiredOption('--model <name>', 'model name')
    .option('--version <version>', 'version or alias (default: the latest)')
    .option('--batch-size <n>', 'rows per tensor', positiveInteger('--batch-size'))
    .option('--shard-bytes <n>', 'bytes of input per shard', positiveInteger('--shard-bytes'))
    .addOption(choiceOption('--format <format>', 'jsonl, csv, parquet, npy or npz (default: from the file name)', ['jsonl', 'csv', 'parquet', 'npy', 'npz']))
    .option('--csv-header', 'the CSV file starts with a header line')
    .addOption(choiceOption('--worker <worker>', 'auto, lambda or gpu', ['auto', 'lambda', 'gpu']).default('auto'))
    .option('--idempotency-key <key>', 'resubmitting with the same key returns the same job')
    .option('--watch', 'show progress until the job ends')
    .addOption(intervalOption('with --watch', 1))
    .action(async (file: string | undefined, opts: { model: string; version?: string; batchSize?: number; shardBytes?: number; format?: string; csvHeader?: boolean; worker: string; idempotencyKey?: string; watch?: boolean; interval: number; input?: string[]; columns?: Record<string, string[]>; keyColumns?: string; outputFormat?: string }) => {
      const ctx = cliContext(global());
      if ((file === undefined) === (opts.input === undefined)) throw new CliError('give the input either as <file> or with --input, not both');
      let input = file ?? opts.input![0]!;
      if (file !== undefined && !file.startsWith('s3://')) {
        const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
          throw new CliError(`cannot read input file ${file}: ${error.code ?? error.message}`);
        });
        const store = ctx.store();
        // Content-addressed key: uploading the same file twice writes the same object.
        const hash = createHash('sha256');
        for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
        const key = `${keys.batchInputsPrefix}${hash.digest('hex').slice(0, 16)}/${basename(file).replace(/[^A-Za-z0-9._-]/g, '_')}`;
        // Streamed, in parts above 8 MiB (object-store.ts).
        await store.putObjectFile(key, file, contentTypeOf(file));
        input = `s3://${store.bucket}/${key}`;
        process.stderr.write(`uploaded ${file} (${info.size} bytes) to ${input}\n`);
      }
      const body = {
        model: opts.model,
        ...(opts.input && opts.input.length > 1 ? { inputs: opts.input } : { input }),
        ...(opts.columns ? { columns: opts.columns } : {}),
        ...(opts.keyColumns ? { key_columns: opts.keyColumns.split(',').map((c) => c.trim()).filter(Boolean) } : {}),
        ...(opts.outputFormat ? { output_format: opts.outputFormat } : {}),
        ...(opts.version ? { version: opts.version } : {}),
        ...(opts.batchSize !== undefined ? { batch_size: opts.batchSize } : {}),
        ...(opts.shardBytes !== undefined ? { shard_bytes: opts.shardBytes } : {}),
        ...(opts.format ? { format: opts.format } : {}),
        ...(opts.csvHeader ? { csv_header: true } : {}),
        worker: opts.worker,
        ...(opts.idempotencyKey ? { idempotency_key: opts.idempotencyKey } : {}),
      };
      const { response, bytes } = await ctx.request('POST', '/v2/batches', JSON.stringify(body));
      const job = JSON.parse(Buffer.from(bytes).toString('utf8')) as BatchJobView;
      console.log(response.status === 200 ? `job ${job.id} already existed` : `submitted job ${job.id}: ${job.shards.total} shard(s) on the ${job.worker} worker`);
      if (opts.watch) console.log(summary(await watch(ctx, job.id, opts.interval)));
    });

  batch
    .command('status')
    .description("show a job's state, shards done of total, rows scored and failed, rows/s")
    .argument('<id>', 'job id')
    .option('--watch', 'redraw a progress bar until the job ends')
    .addOption(intervalOption('with --watch', 1))
    .option('--json', 'print the job as JSON')
    .action(async (id: string, opts: { watch?: boolean; interval: number; json?: boolean }) => {
      const ctx = cliContext(global());
      const job = opts.watch ? await watch(ctx, id, opts.interval) : await getJob(ctx, id);
      console.log(opts.json ? JSON.stringify(job, null, 2) : summary(job));
      if (opts.watch && job.state !== 'succeeded') process.exitCode = 3;
    });

  batch
    .command('fetch')
    .description('download the merged result (one line per input row, in input order) or the errors file')
    .argument('<id>', 'job id')
    .option('-o, --output <file>', 'write here instead of standard output')
    .option('--errors', 'fetch errors.jsonl instead of result.jsonl')
    .action(async (id: string, opts: { output?: string; errors?: boolean }) => {
      const ctx = cliContext(global());
      const job = await getJob(ctx, id);
      const uri = opts.errors ? job.errors : job.result;
      if (!uri) throw new CliError(`job ${id} is ${job.state}: it has no ${opts.errors ? 'errors file' : 'result'} yet`);
      const { bucket, key } = splitS3(uri);
      const objects = ctx.objects(bucket);
      const missing = () => new CliError(`job ${id}'s ${uri} is gone from the bucket`);
      if (key.endsWith('/')) {
        // A Parquet result is a folder of parts, one per shard: fetched into a local folder.
        if (!opts.output) throw new CliError(`job ${id}'s result is a folder of Parquet parts (${uri}); give --output <folder>`);
        await mkdir(opts.output, { recursive: true });
        let parts = 0;
        for (const partKey of await objects.list(key)) {
          const part = await objects.get(partKey);
          if (!part) throw missing();
          await writeFile(join(opts.output, basename(partKey)), part);
          parts++;
        }
        console.error(`wrote ${parts} Parquet part(s) to ${opts.output}`);
        return;
      }
      const bytes = await objects.get(key);
      if (!bytes) throw missing();
      if (opts.output) {
        await writeFile(opts.output, bytes);
        console.error(`wrote ${bytes.length} bytes to ${opts.output}`);
      } else {
        process.stdout.write(bytes);
      }
    });

  program
    .command('worker')
    .description('run container batch workers on this machine against the local stack (the GPU image, on CPU)')
    .option('--count <n>', 'worker processes', positiveInteger('--count'), 1)
    .addOption(choiceOption('--queue <queue>', 'gpu (the container queue) or lambda (the score function queue)', ['gpu', 'lambda']).default('gpu'))
    .option('--threads <n>', 'onnxruntime intra-op threads per worker', positiveInteger('--threads'))
    .action(async (opts: { count: number; queue: string; threads?: number }) => {
      const local = localStackFile();
      if (!local) throw new CliError('no local stack: run `npm start` first (it writes .local/stack.json)');
      if (!local.batchWorkerEnv) throw new CliError('the local stack runs without its batch part: restart it with `npm start`');
      const { startWorkerProcesses, stopWorkerProcesses } = await import('../../../infra/gpu-worker/processes.ts');
      const name = opts.queue === 'lambda' ? 'ai-mass-local-batch-shards' : 'ai-mass-local-batch-gpu-shards';
      const sqs = createSqsClient({ endpoint: local.awsEndpoint });
      const queueUrl = (await sqs.send(new GetQueueUrlCommand({ QueueName: name })).catch(() => {
        throw new CliError(`the local stack has no queue ${name}: is its batch part running?`);
      })).QueueUrl!;
      const env = {
        ...local.batchWorkerEnv,
        WORKER_QUEUE_URL: queueUrl,
        // Short polls locally, so Ctrl-C stops the workers within a couple of seconds.
        WAIT_TIME_SECONDS: '2',
        MODEL_CACHE_DIR: join(local.root, '.local', 'cache'),
        ...(opts.threads ? { INTRA_OP_THREADS: String(opts.threads) } : {}),
      };
      const workers = startWorkerProcesses(opts.count, env, (line) => console.log(JSON.stringify(line)));
      console.error(`started ${workers.length} worker(s) on ${queueUrl}; Ctrl-C stops them (each finishes or releases its shard)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await stopWorkerProcesses(workers);
    });
}
