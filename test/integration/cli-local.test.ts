import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { freePort } from '../../infra/local/emulators.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// The CLI as a user runs it from a folder inside a project whose local stack wrote .local/stack.json:
// real emulators, the real CLI process, no configuration in the environment.
const run = promisify(execFile);
const MASS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'functions', 'cli', 'mass.ts');
let stack: RegistryStack;
let project: string;
let subfolder: string;

beforeAll(async () => {
  stack = await startRegistryStack('cli-local');
  await pushModel(stack.store, { name: 'scale', version: '1', bytes: scaleModel(2) });
  project = await mkdtemp(join(tmpdir(), 'cli-project-'));
  subfolder = join(project, 'docs', 'notes');
  await mkdir(subfolder, { recursive: true });
  await mkdir(join(project, '.local'));
  await writeFile(join(project, '.local', 'stack.json'), JSON.stringify({
    api: 'http://127.0.0.1:9',
    bucket: stack.store.bucket,
    awsEndpoint: stack.emulators.awsEndpoint,
    dynamoEndpoint: stack.emulators.dynamoEndpoint,
    registryTable: 'cli-local-registry',
  }));
});

afterAll(async () => {
  await stack?.stop();
});

/** Runs `mass` in `cwd` with none of the variables that would point it anywhere; resolves with its exit code and output. */
async function mass(cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  for (const name of ['AWS_ENDPOINT_URL', 'DYNAMODB_ENDPOINT_URL', 'MASS_BUCKET', 'MASS_API_URL', 'MASS_REGISTRY_TABLE', 'MASS_AUTH', 'MASS_TOKEN']) delete env[name];
  try {
    const { stdout, stderr } = await run(process.execPath, [MASS, ...args], { cwd, env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('mass from a subfolder of the project', () => {
  it('finds the local stack in the nearest .local/stack.json above it', async () => {
    expect(await mass(subfolder, 'models')).toEqual({ code: 0, stdout: 'scale\tversions: 1\n', stderr: '' });
  });

  it('says the local stack is not running when its emulators refuse the connection', async () => {
    const stopped = await mkdtemp(join(tmpdir(), 'stopped-project-'));
    const port = await freePort();
    await mkdir(join(stopped, '.local'));
    await writeFile(join(stopped, '.local', 'stack.json'), JSON.stringify({ api: `http://127.0.0.1:${port}`, bucket: 'b', awsEndpoint: `http://127.0.0.1:${port}`, dynamoEndpoint: `http://127.0.0.1:${port}` }));
    const result = await mass(stopped, 'models');
    expect([result.code, result.stderr]).toEqual([1, `error: connect ECONNREFUSED 127.0.0.1:${port} (the local stack in ${stopped} is not running: \`npm start\` there)\n`]);
  });

  it('says there is no bucket outside any project', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'no-project-'));
    const result = await mass(outside, 'models');
    expect([result.code, result.stderr]).toEqual([1, 'error: no bucket: pass --bucket, set MASS_BUCKET, or run `npm start` for the local stack\n']);
  });
});

describe('mass dataset push', () => {
  it('uploads a 20 MB data set in parts and keeps its bytes exactly', async () => {
    // Prepare: rows of 784 pixels with a label, about 20 MB in all.
    const row = (i: number) => JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from({ length: 784 }, (_, j) => (i * 7 + j) % 256) }], label: i % 10 });
    const lines: string[] = [];
    let size = 0;
    for (let i = 0; size < 20_000_000; i++) {
      lines.push(row(i));
      size += lines.at(-1)!.length + 1;
    }
    const file = join(project, 'rows.jsonl');
    const bytes = Buffer.from(lines.join('\n') + '\n');
    await writeFile(file, bytes);

    // Act
    const result = await mass(subfolder, 'dataset', 'push', 'big', '--jsonl', file);

    // Assert: the CLI's summary, the object's bytes, and an ETag of a multipart upload (3 parts of 8 MiB).
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split('\n')[0]).toBe(`pushed data set big: ${lines.length} rows (jsonl, label, 10 classes), sha256 ${createHash('sha256').update(bytes).digest('hex')}`);
    const s3 = stack.s3;
    const head = await s3.send(new HeadObjectCommand({ Bucket: stack.store.bucket, Key: keys.datasetRows('big') }));
    expect([head.ContentLength, head.ETag?.replace(/"/g, '').split('-')[1]]).toEqual([bytes.byteLength, '3']);
    const stored = await (await s3.send(new GetObjectCommand({ Bucket: stack.store.bucket, Key: keys.datasetRows('big') }))).Body!.transformToByteArray();
    expect(Buffer.compare(Buffer.from(stored), await readFile(file))).toBe(0);
  });
});

describe('option values', () => {
  const usage = (option: string, value: string, what = 'a positive number of seconds') => `error: ${option} must be ${what}, got ${JSON.stringify(value)}\n`;

  it('refuses a poll interval that is not a positive number of seconds, in every command that polls, with exit 2', async () => {
    const cases: [string[], string][] = [
      [['batch', 'status', 'j-1', '--watch', '--interval', 'fast'], 'fast'],
      [['batch', 'status', 'j-1', '--watch', '--interval', '0'], '0'],
      [['batch', 'submit', 'rows.jsonl', '--model', 'm', '--interval', '-1'], '-1'],
      [['quantize', 'scale', '--version', '1', '--method', 'int8-dynamic', '--interval', 'Infinity'], 'Infinity'],
      [['evaluate', 'scale', '--version', '1', '--dataset', 'big', '--watch', '--interval', ''], ''],
      [['push', 'model.onnx', '--name', 'scale', '--interval', '1e-400'], '1e-400'],
    ];
    const results = await Promise.all(cases.map(([args]) => mass(subfolder, ...args)));
    expect(results.map((r) => [r.code, r.stdout, r.stderr])).toEqual(cases.map(([, value]) => [2, '', usage('--interval', value)]));
  });

  it('refuses other bad values with exit 2 before doing anything', async () => {
    const results = await Promise.all([
      mass(subfolder, 'push', 'model.onnx', '--name', 'scale', '--timeout', 'soon'),
      mass(subfolder, 'quantize', 'scale', '--version', '1', '--method', 'int8-dynamic', '--timeout', '0'),
      mass(subfolder, 'batch', 'submit', 'rows.jsonl', '--model', 'm', '--batch-size', '0'),
      mass(subfolder, 'evaluate', 'scale', '--version', '1', '--dataset', 'big', '--scenarios', 'accuracy,speed'),
    ]);
    expect(results.map((r) => [r.code, r.stderr])).toEqual([
      [2, usage('--timeout', 'soon')],
      [2, usage('--timeout', '0')],
      [2, usage('--batch-size', '0', 'a positive integer')],
      [2, 'error: --scenarios takes a comma-separated list of accuracy, robustness, single-stream, offline, server, cold-start, got "accuracy,speed"\n'],
    ]);
  });

  it('refuses a value outside an option\'s choices with exit 2', async () => {
    const result = await mass(subfolder, 'batch', 'submit', 'rows.jsonl', '--model', 'm', '--worker', 'tpu');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("error: option '--worker <worker>' argument 'tpu' is invalid. Allowed choices are auto, lambda, gpu.");
  });
});
