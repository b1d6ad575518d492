import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { pushModel } from '../../core/model-push.ts';
import { warmupTensorSchema } from '../../core/manifest.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CliError(`${what} ${path} is not valid JSON: ${(error as Error).message}`);
  }
}

export function registerModelCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();

  program
    .command('push')
    .description('upload an ONNX model as a new version, with its manifest (sha256, signature)')
    .argument('<file>', 'path to a .onnx file')
    .requiredOption('--name <name>', 'model name')
    .option('--version <version>', 'version (default: one above the highest)')
    .option('--notes <text>', 'release notes')
    .option('--warmup <file>', 'JSON array of V2 input tensors used for the warm-up run')
    .action(async (file: string, opts: { name: string; version?: string; notes?: string; warmup?: string }) => {
      const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => {
        throw new CliError(`cannot read model file ${file}: ${error.code ?? error.message}`);
      });
      const warmup = opts.warmup ? z.array(warmupTensorSchema).parse(await readJson(opts.warmup, 'warm-up file')) : undefined;
      const manifest = await pushModel(cliContext(global()).store(), {
        name: opts.name,
        version: opts.version,
        bytes,
        notes: opts.notes,
        warmup,
      });
      console.log(`pushed ${manifest.name} version ${manifest.version} (${manifest.bytes} bytes, sha256 ${manifest.sha256})`);
      for (const t of manifest.inputs) console.log(`  input  ${t.name} ${t.datatype} [${t.shape.join(', ')}]`);
      for (const t of manifest.outputs) console.log(`  output ${t.name} ${t.datatype} [${t.shape.join(', ')}]`);
    });

  program
    .command('models')
    .description('list models and their versions')
    .action(async () => {
      const store = cliContext(global()).store();
      const models = await store.listModels();
      if (models.length === 0) console.log('no models');
      for (const name of models) {
        const versions = await store.listVersions(name);
        console.log(`${name}\tversions: ${versions.join(', ')}`);
      }
    });

  program
    .command('infer')
    .description('run one inference through the HTTP API; the input file is a V2 infer request (JSON)')
    .argument('<name>', 'model name')
    .option('--version <version>', 'version (default: the latest)')
    .requiredOption('--input <file>', 'V2 inference request JSON')
    .action(async (name: string, opts: { version?: string; input: string }) => {
      const request = await readJson(opts.input, 'input file');
      const ctx = cliContext(global());
      const path = `/v2/models/${encodeURIComponent(name)}${opts.version ? `/versions/${encodeURIComponent(opts.version)}` : ''}/infer`;
      const { bytes } = await ctx.request('POST', path, JSON.stringify(request));
      console.log(JSON.stringify(JSON.parse(Buffer.from(bytes).toString('utf8')), null, 2));
    });
}
