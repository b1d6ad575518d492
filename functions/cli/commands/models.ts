import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { basename } from 'node:path';
import { assertValidName } from '../../core/artifacts/names.ts';
import { rejectionKey } from '../../core/registry/register-upload.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';
import { intervalOption, sleep, timeoutOption } from '../options.ts';

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
    .description('upload an ONNX model to incoming/ and wait until it is a registered version (or print why it was rejected)')
    .argument('<file>', 'path to a .onnx file')
    .requiredOption('--name <name>', 'model name')
    .option('--version <version>', 'version (default: the next number)')
    .option('--notes <text>', 'release notes, shown to users with the version')
    .addOption(timeoutOption('for the registration', 120))
    .addOption(intervalOption('for the registration', 0.5))
    .action(async (file: string, opts: { name: string; version?: string; notes?: string; timeout: number; interval: number }) => {
      const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => {
        throw new CliError(`cannot read model file ${file}: ${error.code ?? error.message}`);
      });
      const name = assertValidName(opts.name, 'model name');
      const store = cliContext(global()).store();
      const key = `incoming/${name}/${Date.now()}-${basename(file).replace(/[^A-Za-z0-9._-]/g, '_').replace(/(\.onnx)?$/, '.onnx')}`;
      const eTag = await store.putObjectBytes(key, bytes, 'application/octet-stream', {
        ...(opts.notes ? { notes: encodeURIComponent(opts.notes) } : {}),
        ...(opts.version ? { version: opts.version } : {}),
      });
      const uploadId = `${store.bucket}/${key}@${eTag}`;
      console.error(`uploaded ${key}; waiting for registration...`);
      const deadline = Date.now() + opts.timeout * 1000;
      while (Date.now() < deadline) {
        const claimed = await store.registry?.getUpload(uploadId);
        if (claimed?.state === 'registered') {
          const manifest = await store.getManifest(name, claimed.version);
          console.log(`registered ${manifest.name} version ${manifest.version} (${manifest.bytes} bytes, sha256 ${manifest.sha256})`);
          for (const t of manifest.inputs) console.log(`  input  ${t.name} ${t.datatype} [${t.shape.join(', ')}]`);
          for (const t of manifest.outputs) console.log(`  output ${t.name} ${t.datatype} [${t.shape.join(', ')}]`);
          return;
        }
        const rejected = await store.getObjectBytes(rejectionKey(key));
        if (rejected) {
          const record = JSON.parse(Buffer.from(rejected).toString('utf8')) as { reason: string };
          throw new CliError(`rejected: ${record.reason}`);
        }
        await sleep(opts.interval);
      }
      throw new CliError(`no registration within ${opts.timeout} s: is the register function (or \`npm start\`) running?`);
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
