import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { pushDataset, readDatasetManifest, type DatasetUpload, type ImageLayout } from '../../core/evaluate/datasets.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';

async function readBytes(path: string, what: string): Promise<Uint8Array> {
  return readFile(path).catch((error: NodeJS.ErrnoException) => {
    throw new CliError(`cannot read ${what} ${path}: ${error.code ?? error.message}`);
  });
}

/** "28x28", "28x28x3" or "28x28x1:1" (height x width [x channels] [:value of full brightness]). */
export function parseImageLayout(text: string): ImageLayout {
  const match = /^(\d+)x(\d+)(?:x(\d+))?(?::(\d+(?:\.\d+)?))?$/.exec(text);
  if (!match) throw new CliError(`--image must look like 28x28, 28x28x3 or 28x28x1:255, got ${JSON.stringify(text)}`);
  return { height: Number(match[1]), width: Number(match[2]), channels: Number(match[3] ?? 1), maxValue: Number(match[4] ?? 255) };
}

function parseShape(text: string): number[] {
  const dims = text.split(',').map((d) => Number(d.trim()));
  if (dims.length === 0 || dims.some((d) => !Number.isInteger(d) || d < 0)) throw new CliError(`--shape must be comma-separated sizes like 1,784, got ${JSON.stringify(text)}`);
  return dims;
}

export function registerDatasetCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const dataset = program.command('dataset').description('evaluation data sets in the bucket (datasets/<name>/)');

  dataset
    .command('push')
    .description('validate and upload a data set: JSONL rows (V2 inputs plus label or target) or an IDX images + labels pair')
    .argument('<name>', 'data set name')
    .option('--jsonl <file>', 'one row per line: {"inputs": [V2 tensors], "label": <class>} or "target": <number or numbers>')
    .option('--unlabelled', 'JSONL rows without label or target (agreement with a baseline only)')
    .option('--image <layout>', 'the JSONL input is an image: HxW[xC][:max], enabling robustness')
    .option('--idx-images <file>', 'IDX images file [N, H, W] (uint8), e.g. t10k-images-idx3-ubyte')
    .option('--idx-labels <file>', 'IDX labels file [N] (uint8)')
    .option('--input-name <name>', 'IDX: the model input the images feed', 'input')
    .option('--shape <dims>', 'IDX: one row\'s shape, e.g. 1,784 (default) or 1,1,28,28')
    .option('--notes <text>', 'description kept in the manifest')
    .action(async (name: string, opts: { jsonl?: string; unlabelled?: boolean; image?: string; idxImages?: string; idxLabels?: string; inputName: string; shape?: string; notes?: string }) => {
      let upload: DatasetUpload;
      if (opts.jsonl && (opts.idxImages || opts.idxLabels)) throw new CliError('give either --jsonl or --idx-images with --idx-labels, not both');
      if (opts.jsonl) {
        upload = { format: 'jsonl', rows: await readBytes(opts.jsonl, 'JSONL file'), unlabelled: opts.unlabelled, image: opts.image ? parseImageLayout(opts.image) : undefined };
      } else if (opts.idxImages && opts.idxLabels) {
        upload = {
          format: 'idx',
          images: await readBytes(opts.idxImages, 'IDX images file'),
          labels: await readBytes(opts.idxLabels, 'IDX labels file'),
          inputName: opts.inputName,
          shape: opts.shape ? parseShape(opts.shape) : undefined,
        };
      } else {
        throw new CliError('give --jsonl <file>, or --idx-images <file> and --idx-labels <file>');
      }
      const manifest = await pushDataset(cliContext(global()).store(), { name, upload, notes: opts.notes });
      console.log(`pushed data set ${manifest.name}: ${manifest.rows} rows (${manifest.format}, ${manifest.labels}${manifest.classes ? `, ${manifest.classes} classes` : ''}), sha256 ${manifest.sha256}`);
      for (const i of manifest.inputs) console.log(`  input ${i.name} ${i.datatype} [${i.shape.join(', ')}] per row`);
      if (manifest.image) console.log(`  image ${manifest.image.height}x${manifest.image.width}x${manifest.image.channels}, full scale ${manifest.image.maxValue}`);
    });

  dataset
    .command('show')
    .description("print a data set's manifest")
    .argument('<name>', 'data set name')
    .action(async (name: string) => {
      console.log(JSON.stringify(await readDatasetManifest(cliContext(global()).store(), name), null, 2));
    });
}
