import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { freePort } from '../../infra/local/emulators.ts';
import { scaleModel } from '../helpers/registry-stack.ts';

// `npm start` as a user runs it, in a child process: state pushed through the CLI must be there
// after the stack is stopped with Ctrl-C, and after it is killed outright with an upload in flight.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);
const BUCKET = 'ai-mass-local-models';
let project: string;
let localDir: string;
let subfolder: string;
let env: NodeJS.ProcessEnv;
let api: string;
let awsEndpoint: string;
const running = new Set<ChildProcess>();

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'local-state-'));
  localDir = join(project, '.local');
  subfolder = join(project, 'work');
  await mkdir(subfolder);
  const [apiPort, awsPort, dynamoPort, lambdaPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  api = `http://127.0.0.1:${apiPort}`;
  awsEndpoint = `http://127.0.0.1:${awsPort}`;
  env = { ...process.env, API_PORT: String(apiPort), AWS_PORT: String(awsPort), DYNAMO_PORT: String(dynamoPort), LAMBDA_PORT: String(lambdaPort), AI_MASS_LOCAL_DIR: localDir };
  for (const name of ['AWS_ENDPOINT_URL', 'DYNAMODB_ENDPOINT_URL', 'MASS_BUCKET', 'MASS_API_URL', 'MASS_REGISTRY_TABLE', 'VERBOSE']) delete env[name];
  await writeFile(join(project, 'scale2.onnx'), scaleModel(2));
  await writeFile(join(project, 'rows.jsonl'), [1, 2, 3].map((i) => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [i, i] }], target: [2 * i, 2 * i] })).join('\n') + '\n');
});

afterAll(async () => {
  for (const child of running) child.kill('SIGKILL');
  // A stack that keeps state keeps its caches under the repository's .local; this one is a test's.
  await rm(join(ROOT, '.local', `tmp-${env.API_PORT}`), { recursive: true, force: true });
});

/** Starts `infra/local/start.ts` and resolves once it says it is running. */
async function startStack(...args: string[]): Promise<{ child: ChildProcess; output: string[]; exited: Promise<[number | null, string | null]> }> {
  const child = spawn(process.execPath, [join(ROOT, 'infra', 'local', 'start.ts'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const output: string[] = [];
  const exited = once(child, 'exit').then(([code, signal]) => {
    running.delete(child);
    return [code, signal] as [number | null, string | null];
  });
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString());
      if (output.join('').includes('AI Mass is running.')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then(([code, signal]) => reject(new Error(`the stack exited (${code ?? signal}) before it was running:\n${output.join('')}`)));
  });
  return { child, output, exited };
}

async function mass(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(ROOT, 'functions', 'cli', 'mass.ts'), ...args], { cwd: subfolder, env, timeout: 120_000 });
  return stdout;
}

async function get(path: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(api + path);
  return { status: response.status, body: await response.json() };
}

async function infer(path: string, value: number): Promise<unknown> {
  const response = await fetch(`${api}${path}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [value, value] }] }),
  });
  const body = (await response.json()) as { model_version?: string; outputs?: { data: number[] }[]; error?: string };
  return [response.status, body.model_version, body.outputs?.[0]?.data ?? body.error];
}

describe('the local stack keeps its state on disk', () => {
  it('finds models, aliases and data sets again after Ctrl-C, and registers an upload that was in flight when it was killed', async () => {
    // A fresh stack: a model, its alias and a data set, through the CLI from a subfolder.
    const first = await startStack('--fresh');
    expect(await mass('push', join(project, 'scale2.onnx'), '--name', 'kept')).toMatch(/^registered kept version 1 /);
    expect(await mass('promote', 'kept', '1')).toBe('kept prod (revision 1): 1=100%\n');
    expect(await mass('dataset', 'push', 'kept-rows', '--jsonl', join(project, 'rows.jsonl'))).toMatch(/^pushed data set kept-rows: 3 rows \(jsonl, target\)/);
    first.child.kill('SIGINT');
    expect(await first.exited).toEqual([0, null]);

    // After Ctrl-C: everything is there and serves.
    const second = await startStack();
    expect(await get('/v2/models/kept')).toMatchObject({ status: 200, body: { name: 'kept', versions: ['1'] } });
    expect(await get('/v2/models/kept/aliases/prod')).toMatchObject({ status: 200, body: { alias: 'prod', routes: [{ version: '1', weight: 100 }] } });
    expect(JSON.parse(await mass('dataset', 'show', 'kept-rows'))).toMatchObject({ name: 'kept-rows', rows: 3, labels: 'target' });
    expect(await infer('/v2/models/kept', 5)).toEqual([200, '1', [10, 10]]);

    // An upload lands and the stack is killed outright before it can be registered.
    const s3 = createS3Client({ endpoint: awsEndpoint });
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/kept/late.onnx', Body: scaleModel(3) }));
    second.child.kill('SIGKILL');
    expect(await second.exited).toEqual([null, 'SIGKILL']);
    s3.destroy();
    expect(existsSync(join(localDir, 'state', 's3', 'buckets', BUCKET, 'objects', 'incoming', 'kept', 'late.onnx.data'))).toBe(true);

    // After kill -9: the same state, and the upload registered as version 2 (served by version, not routed by the alias).
    const third = await startStack();
    const deadline = Date.now() + 120_000;
    while (((await get('/v2/models/kept')).body as { versions?: string[] }).versions?.length !== 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await get('/v2/models/kept')).toMatchObject({ status: 200, body: { versions: ['1', '2'] } });
    expect(await infer('/v2/models/kept/versions/2', 5)).toEqual([200, '2', [15, 15]]);
    expect(await infer('/v2/models/kept', 5)).toEqual([200, '1', [10, 10]]);
    expect(await get('/v2/models/kept/aliases/prod')).toMatchObject({ status: 200, body: { routes: [{ version: '1', weight: 100 }] } });
    expect(JSON.parse(await mass('dataset', 'show', 'kept-rows'))).toMatchObject({ name: 'kept-rows', rows: 3 });
    third.child.kill('SIGINT');
    expect(await third.exited).toEqual([0, null]);
  }, 1_200_000);

  it('starts empty with --fresh: the state folder is removed before anything starts', async () => {
    expect(existsSync(join(localDir, 'state', 'sqs'))).toBe(true);
    // A port in use stops the start right after --fresh has done its part, without a full start.
    const holder = createServer().listen(Number(env.API_PORT), '127.0.0.1');
    await once(holder, 'listening');
    try {
      const child = spawn(process.execPath, [join(ROOT, 'infra', 'local', 'start.ts'), '--fresh'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code] = await once(child, 'exit');
      expect([code, stderr]).toEqual([1, `error: port ${env.API_PORT} (HTTP API) is already in use: stop whatever holds it, or choose another port\nset API_PORT, AWS_PORT, DYNAMO_PORT or LAMBDA_PORT to use other ports\n`]);
      expect(existsSync(join(localDir, 'state'))).toBe(false);
    } finally {
      holder.close();
    }
  });

  it('refuses an unknown argument with a usage line and exit 2', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'infra', 'local', 'start.ts'), '--frsh'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = await once(child, 'exit');
    expect([code, stderr]).toEqual([2, "error: Unknown option '--frsh'\nusage: npm start [-- --fresh]\n"]);
  });
});
