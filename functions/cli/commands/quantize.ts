import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { pushModel } from '../../core/registry/model-push.ts';
import { datasetCalibration } from '../../core/quantize/jobs.ts';
import { QUANTIZE_METHODS, quantizeRequestSchema, type QuantizeRequest } from '../../core/quantize/options.ts';
import { quantizeModel } from '../../core/quantize/quantize-model.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';
import { ProgressDisplay } from '../progress.ts';
import { choiceOption, intervalOption, sleep, timeoutOption } from '../options.ts';

interface QuantizeFlags {
  version: string;
  method: string;
  options?: string;
  dataset?: string;
  calibration?: string;
  perTensor?: boolean;
  exclude?: string[];
  excludeOp?: string[];
  local?: boolean;
  output?: string;
  wait: boolean;
  interval: number;
  timeout: number;
}

interface JobView {
  job: string;
  state: string;
  stage?: string;
  resultVersion?: string;
  error?: string;
  report?: { inputBytes: number; outputBytes: number; quantizedCount: number; skipped: unknown[] };
  links: { self: string };
}

async function parseOptions(flags: QuantizeFlags): Promise<QuantizeRequest> {
  let options: Record<string, unknown> = {};
  if (flags.options) {
    const text = flags.options.trim().startsWith('{') ? flags.options : await readFile(flags.options, 'utf8').catch(() => {
      throw new CliError(`--options is neither JSON nor a readable file: ${flags.options}`);
    });
    try {
      options = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw new CliError(`--options is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (flags.dataset) options.dataset = flags.dataset;
  if (flags.calibration) options.calibration = flags.calibration;
  if (flags.perTensor) options.perChannel = false;
  if (flags.exclude?.length || flags.excludeOp?.length) options.exclude = { nodes: flags.exclude ?? [], opTypes: flags.excludeOp ?? [] };
  const parsed = quantizeRequestSchema.safeParse({ method: flags.method, options });
  if (!parsed.success) throw new CliError(`invalid quantize options: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ')}`, 2);
  return parsed.data;
}

function summary(job: JobView): string {
  const r = job.report;
  if (!r) return '';
  return ` (${r.inputBytes} → ${r.outputBytes} bytes, ${(r.inputBytes / r.outputBytes).toFixed(2)}x smaller; ${r.quantizedCount} nodes converted, ${r.skipped.length} left as they were)`;
}

export function registerQuantizeCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const collect = (value: string, previous: string[] = []) => [...previous, value];

  program
    .command('quantize')
    .description('make an int8 or fp16 variant of a version; it is registered as a new version with lineage and never routed automatically')
    .argument('<name>', 'model name')
    .requiredOption('--version <version>', 'the fp32 version to quantize')
    .addOption(choiceOption('--method <method>', QUANTIZE_METHODS.join(' | '), QUANTIZE_METHODS).makeOptionMandatory())
    .option('--options <json|file>', 'method options as JSON (see docs/quantization.md)')
    .option('--dataset <name>', 'int8-static: calibration data set in the bucket (datasets/<name>/)')
    .option('--calibration <method>', 'int8-static: minmax | percentile | entropy')
    .option('--per-tensor', 'one scale per weight tensor instead of per channel')
    .option('--exclude <node>', 'keep this node in fp32 (repeatable)', collect)
    .option('--exclude-op <opType>', 'keep every node of this op type in fp32 (repeatable)', collect)
    .option('--local', 'quantize in this process (the container path for models beyond the Lambda budget) and register the result')
    .option('--output <file>', 'with --local: also write the quantized model here')
    .option('--no-wait', 'print the job and return without waiting')
    .addOption(intervalOption('for the job', 1))
    .addOption(timeoutOption('for the job', 1800))
    .action(async (name: string, flags: QuantizeFlags) => {
      const request = await parseOptions(flags);
      const ctx = cliContext(global());
      if (flags.local) {
        const store = ctx.store();
        const manifest = await store.getManifest(name, flags.version);
        const { bytes } = await store.getModelBytes(manifest);
        process.stderr.write(`quantizing ${name} version ${flags.version} (${bytes.byteLength} bytes) with ${request.method} in this process...\n`);
        const calibration = request.method === 'int8-static' ? datasetCalibration(store, manifest, request.options.samples, request.options.batchSize) : undefined;
        const result = await quantizeModel(bytes, request, calibration);
        if (flags.output) await writeFile(flags.output, result.bytes);
        const pushed = await pushModel(store, {
          name,
          bytes: result.bytes,
          notes: `${request.method} of version ${flags.version} (mass quantize --local); not routed until evaluated and promoted`,
          lineage: { sourceVersion: flags.version, method: request.method, options: request.options as Record<string, unknown> },
        });
        console.log(`registered ${name} version ${pushed.version}: ${request.method} of version ${flags.version}, ${bytes.byteLength} → ${result.bytes.byteLength} bytes`);
        return;
      }
      const path = `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(flags.version)}/quantize`;
      const { bytes } = await ctx.request('POST', path, JSON.stringify(request));
      let job = JSON.parse(Buffer.from(bytes).toString('utf8')) as JobView;
      if (!flags.wait) {
        console.log(JSON.stringify(job, null, 2));
        return;
      }
      const started = Date.now();
      // The one progress display of every job command (functions/cli/progress.ts).
      const display = new ProgressDisplay();
      try {
        while (job.state === 'queued' || job.state === 'running') {
          display.update({ label: job.job, state: job.state, stage: job.stage });
          if (Date.now() - started > flags.timeout * 1000) throw new CliError(`gave up waiting after ${flags.timeout} s; the job goes on: GET ${job.links.self}`);
          await sleep(flags.interval);
          job = JSON.parse(Buffer.from((await ctx.request('GET', job.links.self)).bytes).toString('utf8')) as JobView;
        }
        display.update({ label: job.job, state: job.state, stage: job.stage });
      } finally {
        display.stop();
      }
      if (job.state === 'failed' || job.state === 'cancelled') throw new CliError(`quantization ${job.job} ${job.state}: ${job.error ?? 'no reason recorded'}`);
      console.log(`registered ${name} version ${job.resultVersion}: ${request.method} of version ${flags.version}${summary(job)}; not routed until you promote it`);
    });
}
