import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { cliContext, CliError, type CliOptions } from '../context.ts';

interface Registered {
  name: string;
  version: string;
  inputs: { name: string; datatype: string; shape: number[] }[];
  outputs: { name: string; datatype: string; shape: number[] }[];
  resolved: Record<string, { model: string; version: string }[]>;
}

const signature = (t: { name: string; datatype: string; shape: number[] }) => `${t.name} ${t.datatype} [${t.shape.join(',')}]`;

/** `mass pipeline push|show`: register a pipeline spec (PUT /v2/pipelines/{name}) and read one back. */
export function registerPipelineCommands(program: Command): void {
  const ctx = () => cliContext(program.opts<CliOptions>());
  const pipeline = program.command('pipeline').description('models composed into one served model (docs/pipelines.md)');

  pipeline
    .command('push')
    .description('register a pipeline spec as the next version of <name>; served at /v2/models/<name>')
    .argument('<file>', 'pipeline spec (JSON)')
    .option('--name <name>', 'pipeline name (default: the folder of a file named pipeline.json, else the file name without .json)')
    .action(async (file: string, opts: { name?: string }) => {
      const text = await readFile(file, 'utf8');
      try {
        JSON.parse(text);
      } catch (error) {
        throw new CliError(`${file} is not valid JSON: ${(error as Error).message}`, 2);
      }
      const name = opts.name ?? (basename(file) === 'pipeline.json' ? basename(dirname(file)) : basename(file).replace(/\.json$/, ''));
      const { bytes } = await ctx().request('PUT', `/v2/pipelines/${encodeURIComponent(name)}`, text);
      const out = JSON.parse(Buffer.from(bytes).toString('utf8')) as Registered;
      console.log(`registered pipeline ${out.name} version ${out.version}`);
      console.log(`  inputs   ${out.inputs.map(signature).join('; ')}`);
      console.log(`  outputs  ${out.outputs.map(signature).join('; ')}`);
      for (const [step, runs] of Object.entries(out.resolved)) console.log(`  step ${step}: ${runs.map((r) => `${r.model}:${r.version}`).join(', ')}`);
    });

  pipeline
    .command('show')
    .description('print a pipeline version: its spec, inputs and outputs (default: the latest pipeline version)')
    .argument('<name>', 'pipeline name')
    .option('--version <version>', 'a pipeline version')
    .action(async (name: string, opts: { version?: string }) => {
      const path = `/v2/pipelines/${encodeURIComponent(name)}${opts.version ? `/versions/${encodeURIComponent(opts.version)}` : ''}`;
      const { bytes } = await ctx().request('GET', path);
      console.log(JSON.stringify(JSON.parse(Buffer.from(bytes).toString('utf8')), null, 2));
    });
}
