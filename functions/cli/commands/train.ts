import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { JobView } from '../../core/jobs/record.ts';
import { trainRequestSchema, type TrainRequestInput } from '../../core/train/options.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';
import { intervalOption, timeoutOption } from '../options.ts';
import { watchJob } from './jobs.ts';

interface CommonFlags {
  version: string;
  dataset: string;
  epochs?: string;
  batchSize?: string;
  learningRate?: string;
  optimizer?: string;
  trainablePrefix?: string;
  augment?: string;
  options?: string;
  key?: string;
  placement?: string;
  watch?: boolean;
  interval: number;
  timeout: number;
}

interface DistillFlags extends CommonFlags {
  student: string;
  temperature?: string;
  alpha?: string;
}

interface PruneFlags extends CommonFlags {
  structured?: string;
  sparsity?: string;
  scope?: string;
  rounds?: string;
}

const numberFlag = (value: string | undefined, flag: string): number | undefined => {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed)) throw new CliError(`${flag} must be a number, got ${JSON.stringify(value)}`, 2);
  return parsed;
};

/** `mlp:128,64`, `darknet:0.25`, `darknet:0.5:1,1` (width, residual blocks per stage) or `<model>:<version>` (a registered student). */
export function parseStudent(text: string): Record<string, unknown> {
  const [kind, rest] = [text.slice(0, text.indexOf(':')), text.slice(text.indexOf(':') + 1)];
  if (!text.includes(':') || !rest) throw new CliError(`--student ${JSON.stringify(text)}: use mlp:<widths>, darknet:<width multiplier> or <model>:<version>`, 2);
  if (kind === 'mlp') return { kind: 'mlp', hidden: rest.split(',').map((w) => numberFlag(w, '--student mlp widths')) };
  if (kind === 'darknet') {
    const [width, stages] = rest.split(':');
    return { kind: 'darknet', widthMultiplier: numberFlag(width, '--student darknet width multiplier'), ...(stages !== undefined ? { stages: stages.split(',').map((b) => numberFlag(b, '--student darknet stages')) } : {}) };
  }
  return { kind: 'registered', model: kind, version: rest };
}

async function trainingOptions(flags: CommonFlags): Promise<Record<string, unknown>> {
  let training: Record<string, unknown> = {};
  if (flags.options) {
    const text = flags.options.trim().startsWith('{') ? flags.options : await readFile(flags.options, 'utf8').catch(() => {
      throw new CliError(`--options is neither JSON nor a readable file: ${flags.options}`, 2);
    });
    try {
      training = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw new CliError(`--options is not valid JSON: ${(error as Error).message}`, 2);
    }
  }
  const set = (key: string, value: unknown) => value !== undefined && (training[key] = value);
  set('epochs', numberFlag(flags.epochs, '--epochs'));
  set('batchSize', numberFlag(flags.batchSize, '--batch-size'));
  set('learningRate', numberFlag(flags.learningRate, '--learning-rate'));
  if (flags.optimizer) training.optimizer = { kind: flags.optimizer };
  if (flags.trainablePrefix) training.trainable = { prefix: flags.trainablePrefix };
  if (flags.augment) training.augmentation = { kinds: flags.augment.split(',') };
  return training;
}

/** Checked here with the API's own schema, so a typo exits 2 before anything is sent. */
function checked(request: TrainRequestInput): TrainRequestInput {
  const parsed = trainRequestSchema.safeParse(request);
  if (!parsed.success) throw new CliError(`invalid ${request.method} request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ')}`, 2);
  return request;
}

export function registerTrainCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();

  async function submit(name: string, flags: CommonFlags, request: TrainRequestInput): Promise<void> {
    const ctx = cliContext(global());
    const path = `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(flags.version)}/train`;
    const placed = flags.placement !== undefined ? { ...request, placement: flags.placement as 'lambda' } : request;
    const { bytes } = await ctx.request('POST', path, JSON.stringify(checked(placed)), flags.key ? { 'idempotency-key': flags.key } : {});
    const job = JSON.parse(Buffer.from(bytes).toString('utf8')) as JobView;
    if (!flags.watch) {
      console.log(JSON.stringify(job, null, 2));
      return;
    }
    const read = async () => JSON.parse(Buffer.from((await ctx.request('GET', `/v2/jobs/${job.id}`)).bytes).toString('utf8')) as JobView;
    const done = await watchJob(read, job, flags);
    const result = done.result as { version?: string; finalLoss?: number; validationAccuracy?: number } | undefined;
    const accuracy = result?.validationAccuracy === undefined ? '' : `, validation accuracy ${result.validationAccuracy}`;
    console.log(`registered ${name} version ${result?.version}: ${request.method} of version ${flags.version}, final loss ${result?.finalLoss}${accuracy}; not routed until you promote it`);
  }

  const common = (command: Command) =>
    command
      .argument('<name>', 'model name')
      .requiredOption('--version <version>', 'the version to start from (the teacher, for distill)')
      .requiredOption('--dataset <name>', 'data set in the bucket (datasets/<name>/: IDX or JSONL, as evaluate reads them)')
      .option('--epochs <n>', 'epochs (per round, for prune)')
      .option('--batch-size <n>', 'rows per step')
      .option('--learning-rate <x>', 'peak learning rate')
      .option('--optimizer <kind>', 'sgd | adam | adamw')
      .option('--trainable-prefix <prefix>', 'train only parameters whose names start with this (e.g. the head)')
      .option('--augment <kinds>', 'comma-separated augmentations from the evaluation (shift, rotation, flip, noise, blur, brightness, contrast)')
      .option('--options <json|file>', 'the training options as JSON (see docs/training.md); flags override them')
      .option('--key <idempotency-key>', 'a retried submission with the same key finds the same job')
      .option('--placement <where>', 'lambda | container (default: by the job\'s estimated size; docs/training.md)')
      .option('--watch', 'follow the job with a progress line until it ends; exit 0 only if it succeeded')
      .addOption(intervalOption('with --watch', 1))
      .addOption(timeoutOption('with --watch', 86_400));

  common(program.command('train').description('fine-tune a version on a data set; the result is a new version with lineage, never routed until promoted')).action(
    async (name: string, flags: CommonFlags) => submit(name, flags, { method: 'finetune', dataset: flags.dataset, training: await trainingOptions(flags) }),
  );

  common(program.command('distill').description('distill a version (the teacher) into a smaller student; the result is a new version of the same model'))
    .requiredOption('--student <spec>', 'mlp:<hidden widths, comma-separated> | darknet:<width multiplier>[:<blocks per stage, comma-separated>] | <model>:<version>')
    .option('--temperature <t>', 'softmax temperature of the KL term (default 4)')
    .option('--alpha <a>', 'weight of the KL term; 1 - alpha weighs cross-entropy on labels (default 0.7)')
    .action(async (name: string, flags: DistillFlags) =>
      submit(name, flags, {
        method: 'distill',
        dataset: flags.dataset,
        student: parseStudent(flags.student) as never,
        ...(flags.temperature !== undefined ? { temperature: numberFlag(flags.temperature, '--temperature')! } : {}),
        ...(flags.alpha !== undefined ? { alpha: numberFlag(flags.alpha, '--alpha')! } : {}),
        training: await trainingOptions(flags),
      }),
    );

  common(program.command('prune').description('prune a version (hidden units, or the smallest weights) and recover its accuracy by fine-tuning'))
    .option('--structured <fraction>', 'remove this fraction of the hidden units of every MatMul/Gemm chain and Conv')
    .option('--sparsity <fraction>', 'zero this fraction of the weights (magnitude pruning)')
    .option('--scope <scope>', 'with --sparsity: layer | global (default layer)')
    .option('--rounds <n>', 'prune and fine-tune in this many rounds (default 1)')
    .action(async (name: string, flags: PruneFlags) => {
      if ((flags.structured === undefined) === (flags.sparsity === undefined)) throw new CliError('give exactly one of --structured <fraction> and --sparsity <fraction>', 2);
      const rounds = numberFlag(flags.rounds, '--rounds');
      const pruning =
        flags.structured !== undefined
          ? { kind: 'structured' as const, fraction: numberFlag(flags.structured, '--structured')!, ...(rounds !== undefined ? { rounds } : {}) }
          : { kind: 'magnitude' as const, sparsity: numberFlag(flags.sparsity, '--sparsity')!, ...(flags.scope ? { scope: flags.scope as 'layer' } : {}), ...(rounds !== undefined ? { rounds } : {}) };
      await submit(name, flags, { method: 'prune', dataset: flags.dataset, pruning, training: await trainingOptions(flags) });
    });
}
